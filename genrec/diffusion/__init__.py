"""Personalized thumbnails: diffusion conditioned on a user (and optionally an item).

``models`` builds the small VAE/UNet, ``conditioning`` the condition tokens, ``pipeline`` the
diffusers pipeline, ``trainer`` the two-stage training, ``evaluator`` the poster-feature metrics,
``recipe`` the YAML recipes, and ``sd_bridge`` (+ ``sd_recipe``) soft-prompt personalization of a local
Stable Diffusion checkpoint.
"""

from genrec.diffusion.conditioning import ThumbnailConditioner
from genrec.diffusion.data import ItemImages, PairSampler, load_item_images
from genrec.diffusion.models import build_unet, build_vae
from genrec.diffusion.pipeline import PersonalizedThumbnailPipeline
from genrec.diffusion.trainer import ThumbnailTrainer, ThumbnailTrainingConfig

__all__ = [
    "ThumbnailConditioner",
    "PersonalizedThumbnailPipeline",
    "ThumbnailTrainer",
    "ThumbnailTrainingConfig",
    "ItemImages",
    "PairSampler",
    "load_item_images",
    "build_unet",
    "build_vae",
]
