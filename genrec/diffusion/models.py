"""Small diffusers models for CPU-sized thumbnails: a latent VAE and a cross-attention UNet.

Stable Diffusion in miniature: 64x64 images -> 16x16x4 latents (two downsamplings), and a UNet
whose cross-attention reads a handful of condition tokens instead of CLIP text states.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel


def build_vae(
    block_out_channels: Sequence[int] = (32, 64, 128),
    latent_channels: int = 4,
    layers_per_block: int = 1,
    sample_size: int = 64,
    norm_num_groups: int = 16,
) -> AutoencoderKL:
    """An ``AutoencoderKL`` downsampling by ``2 ** (len(block_out_channels) - 1)``.

    GroupNorm groups shrink to divide every width, so tiny test models build too.
    """
    n = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        latent_channels=latent_channels,
        norm_num_groups=math.gcd(norm_num_groups, *block_out_channels),
        sample_size=sample_size,
        # No attention in the mid block: at 16x16 it costs more than it buys on a CPU.
        mid_block_add_attention=False,
    )


def build_unet(
    sample_size: int = 16,
    in_channels: int = 4,
    block_out_channels: Sequence[int] = (64, 128, 128),
    layers_per_block: int = 1,
    cross_attention_dim: int = 128,
    attention_head_dim: int = 32,
    norm_num_groups: int = 16,
    first_attention_level: int = 0,
    global_condition: bool = True,
) -> UNet2DConditionModel:
    """A UNet with (self- and cross-) attention blocks at levels ``first_attention_level .. n-2``.

    The lowest-resolution level has plain ResNet blocks; the mid block always cross-attends.

    ``global_condition`` also adds the mean condition token to the timestep embedding (diffusers'
    ``class_embed_type="projection"``), so every ResNet block sees the user/item condition directly, as
    class-conditional diffusion models do, not only the cross-attention layers.

    ``first_attention_level=1`` skips attention at full resolution (as SDXL does): self-attention
    over 32x32 pixels dominates CPU cost in pixel space. ``attention_head_dim`` is the width of one
    head (diffusers' historical name; heads = channels / width).
    """
    n = len(block_out_channels)
    if not 0 <= first_attention_level < n - 1:
        raise ValueError(f"first_attention_level must be in [0, {n - 2}], got {first_attention_level}")
    attn = [first_attention_level <= level < n - 1 for level in range(n)]
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn))
    heads = tuple(max(1, c // attention_head_dim) for c in block_out_channels)
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=heads,
        norm_num_groups=math.gcd(norm_num_groups, *block_out_channels),
        class_embed_type="projection" if global_condition else None,
        projection_class_embeddings_input_dim=cross_attention_dim if global_condition else None,
    )


def predict_noise(
    unet: UNet2DConditionModel, sample: torch.Tensor, timestep: torch.Tensor | int, cond: torch.Tensor
) -> torch.Tensor:
    """The UNet's output for condition tokens ``cond`` ``(B, n, d)``; a globally conditioned UNet also
    gets their mean as its ``class_labels``."""
    class_labels = cond.mean(1) if unet.config.class_embed_type == "projection" else None
    return unet(sample, timestep, encoder_hidden_states=cond, class_labels=class_labels).sample
