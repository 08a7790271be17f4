"""``PersonalizedThumbnailPipeline``: user history (+ optional item) -> thumbnails.

Guidance composes two conditions with separate scales (DiFashion-style, nested):

    eps = eps(null, null)
        + s_u * (eps(user, null) - eps(null, null))
        + s_i * (eps(user, item) - eps(user, null))

so ``s_u`` controls how strongly the image follows the user and ``s_i`` how strongly it follows the
item on top of that. With no item only the first two terms remain; with no user the item term is
taken against the unconditional branch. ``s = 1`` for both is plain conditional sampling.

``image=`` with ``strength`` < 1 starts from a real image (the item's own thumbnail) noised to an
intermediate step, SDEdit-style as diffusers' img2img pipelines do, so the item stays recognisable while
the user's condition moves it; ``strength=1`` is plain sampling from noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, ImagePipelineOutput, UNet2DConditionModel
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor

from genrec.diffusion.conditioning import ThumbnailConditioner
from genrec.diffusion.models import predict_noise
from genrec.errors import CheckpointMismatchError, EmptyHistoryError


def _as_histories(user_history: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    if len(user_history) and isinstance(user_history[0], str):
        histories = [list(user_history)]  # one user
    else:
        histories = [list(h) for h in user_history]
    if not histories or any(len(h) == 0 for h in histories):
        raise EmptyHistoryError("user_history is empty; pass item ids (oldest first) or user_history=None")
    return histories


@dataclass
class UserCondition:
    """A batch of users as the conditioner reads them: a vector per user and/or history-set indices."""

    vector: torch.Tensor | None = None
    history: torch.Tensor | None = None  # (B, history_tokens) item indices, -1 where empty

    @property
    def rows(self) -> int:
        return next(x.shape[0] for x in (self.vector, self.history) if x is not None)

    def apply(self, fn) -> UserCondition:
        return UserCondition(*(None if x is None else fn(x) for x in (self.vector, self.history)))


def check_compatible(
    unet: UNet2DConditionModel, conditioner: ThumbnailConditioner, vae: AutoencoderKL | None
) -> None:
    """Raise :class:`CheckpointMismatchError` when saved components cannot work together."""
    if unet.config.cross_attention_dim != conditioner.config.cross_attention_dim:
        raise CheckpointMismatchError(
            f"unet cross_attention_dim={unet.config.cross_attention_dim} but conditioner produces "
            f"{conditioner.config.cross_attention_dim}-wide condition tokens"
        )
    channels = vae.config.latent_channels if vae is not None else 3
    if unet.config.in_channels != channels:
        raise CheckpointMismatchError(
            f"unet has in_channels={unet.config.in_channels} but the "
            f"{'vae latents have' if vae is not None else 'pixel images have'} {channels} channels"
        )


class PersonalizedThumbnailPipeline(DiffusionPipeline):
    """Latent (or pixel, when ``vae`` is None) diffusion conditioned on a user and optionally an item."""

    model_cpu_offload_seq = "conditioner->unet->vae"
    _optional_components = ["vae"]

    def __init__(
        self,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
        conditioner: ThumbnailConditioner,
        vae: AutoencoderKL | None = None,
    ):
        super().__init__()
        check_compatible(unet, conditioner, vae)
        self.register_modules(unet=unet, scheduler=scheduler, conditioner=conditioner, vae=vae)

    # -- conditions ------------------------------------------------------------------------------
    def encode_user(
        self,
        user_history: Sequence[str] | Sequence[Sequence[str]] | None = None,
        user_embedding: torch.Tensor | np.ndarray | None = None,
        user_encoder: Any = None,
    ) -> UserCondition | None:
        """The users' condition from item-id histories (stored table or ``user_encoder``) or vectors."""
        cond = self.conditioner
        histories = None
        if user_history is not None:
            histories = [cond.indices_of(h) for h in _as_histories(user_history)]
        if histories is None and user_embedding is None:
            return None
        vector = None
        if cond.uses_user_vector:
            if user_embedding is not None:
                vector = torch.as_tensor(np.asarray(user_embedding, dtype=np.float32))
                vector = vector.unsqueeze(0) if vector.ndim == 1 else vector
            elif user_encoder is not None:
                vector = user_encoder.encode([h.numpy() for h in histories]).float()
            else:
                vector = cond.mean_user_embedding(histories)
        history = None
        if cond.uses_history:
            if histories is None:
                raise ValueError("this pipeline reads the user's history items: pass user_history=")
            history = cond.history_index(histories)
        return UserCondition(vector, history)

    def encode_item(
        self, item: str | Sequence[str] | None, item_embedding: Any = None
    ) -> torch.Tensor | None:
        if item_embedding is not None:
            emb = torch.as_tensor(np.asarray(item_embedding, dtype=np.float32))
            return emb.unsqueeze(0) if emb.ndim == 1 else emb
        if item is None:
            return None
        if not self.conditioner.uses_item:
            raise ValueError("this pipeline was trained without an item condition; pass item=None")
        if self.conditioner.config.table_dim != self.conditioner.config.item_dim:
            raise ValueError("the stored item table does not match the item condition; pass item_embedding=")
        ids = [item] if isinstance(item, str) else list(item)
        return self.conditioner.item_embeddings[self.conditioner.indices_of(ids)]

    # -- sampling --------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        user_history: Sequence[str] | Sequence[Sequence[str]] | None = None,
        user_embedding: torch.Tensor | np.ndarray | None = None,
        item: str | Sequence[str] | None = None,
        item_embedding: torch.Tensor | np.ndarray | None = None,
        user_guidance_scale: float = 3.0,
        item_guidance_scale: float = 2.0,
        num_inference_steps: int = 25,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_images: int = 1,
        output_type: str = "pil",
        user_encoder: Any = None,
        image: PipelineImageInput | None = None,
        strength: float = 1.0,
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Sample ``num_images`` thumbnails per user (users x items broadcast when one side has one row).

        ``user_history`` is one user's item ids (oldest first) or a list of such histories;
        ``image`` (PIL, array in [0, 1] or tensor in [-1, 1]; one, or one per row) is the start of
        img2img at ``strength`` in (0, 1]; ``output_type`` is ``"pil"``, ``"np"`` (N,H,W,3 in [0,1]),
        ``"pt"`` (N,3,H,W) or ``"latent"``.
        """
        if not 0 < strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        device = self._execution_device
        user = self.encode_user(user_history, user_embedding, user_encoder)
        item_vec = self.encode_item(item, item_embedding)
        start = None if image is None else self.encode_image(image)
        sizes = [x.shape[0] for x in (item_vec, start) if x is not None] + ([user.rows] if user else [])
        rows = max(sizes, default=1)
        user = None if user is None else user.apply(lambda x: _broadcast(x, rows, "user"))
        item_vec = _broadcast(item_vec, rows, "item")
        start = _broadcast(start, rows, "image")
        n = rows * num_images
        if user is not None:
            user = user.apply(lambda x: x.to(device).repeat_interleave(num_images, 0))
        if item_vec is not None:
            item_vec = item_vec.to(device).repeat_interleave(num_images, 0)

        branches, weights = self._guidance_branches(user, item_vec, user_guidance_scale, item_guidance_scale)
        # A zero-weight branch (e.g. the unconditional one at scale 1) changes nothing: skip its UNet pass.
        branches, weights = zip(*[(b, w) for b, w in zip(branches, weights) if w != 0])
        cond = torch.cat(
            [
                self.conditioner(
                    None if u is None else u.vector, i, batch_size=n, history=None if u is None else u.history
                )
                for u, i in branches
            ]
        ).to(self.unet.dtype)

        cfg = self.unet.config
        shape = (n, cfg.in_channels, *_hw(cfg.sample_size))
        latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        if start is None:
            latents = latents * self.scheduler.init_noise_sigma
        else:  # img2img: skip the first (1 - strength) of the schedule, noise the image to where it starts
            skip = num_inference_steps - max(1, int(round(num_inference_steps * strength)))
            timesteps = timesteps[skip * self.scheduler.order :]
            if hasattr(self.scheduler, "set_begin_index"):
                self.scheduler.set_begin_index(skip * self.scheduler.order)
            start = start.to(device, self.unet.dtype).repeat_interleave(num_images, 0)
            latents = self.scheduler.add_noise(start, latents, timesteps[:1].repeat(n))
        for t in self.progress_bar(timesteps):
            model_in = self.scheduler.scale_model_input(torch.cat([latents] * len(branches)), t)
            eps = predict_noise(self.unet, model_in, t, cond).chunk(len(branches))
            guided = sum(w * e for w, e in zip(weights, eps))
            latents = self.scheduler.step(guided, t, latents, generator=generator).prev_sample

        if output_type == "latent":
            images = latents
        else:
            images = self.decode(latents)
            if output_type == "np":
                images = images.permute(0, 2, 3, 1).float().cpu().numpy()
            elif output_type == "pil":
                images = self.numpy_to_pil(images.permute(0, 2, 3, 1).float().cpu().numpy())
            elif output_type != "pt":
                raise ValueError(f"output_type must be 'pil', 'np', 'pt' or 'latent', got {output_type!r}")
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    @torch.no_grad()
    def encode_image(self, image: PipelineImageInput) -> torch.Tensor:
        """Images -> the UNet's input space (VAE latent means, scaled; or pixels in [-1, 1])."""
        size = _hw(self.unet.config.sample_size)
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1
        processor = VaeImageProcessor(vae_scale_factor=factor)
        pixels = processor.preprocess(image, height=size[0] * factor, width=size[1] * factor)
        if self.vae is None:
            return pixels
        latents = self.vae.encode(pixels.to(self.vae.device, self.vae.dtype)).latent_dist.mean
        return latents * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (or pixels) -> images in [0, 1], ``(N, 3, H, W)``."""
        if self.vae is not None:
            latents = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return (latents / 2 + 0.5).clamp(0, 1)

    @staticmethod
    def _guidance_branches(
        user: UserCondition | None, item: torch.Tensor | None, s_u: float, s_i: float
    ) -> tuple[list[tuple[UserCondition | None, torch.Tensor | None]], list[float]]:
        """Condition branches and the linear weights that combine their noise predictions."""
        if user is None and item is None:
            return [(None, None)], [1.0]
        if item is None:  # eps_0 + s_u (eps_u - eps_0)
            return [(None, None), (user, None)], [1.0 - s_u, s_u]
        if user is None:  # eps_0 + s_i (eps_i - eps_0)
            return [(None, None), (None, item)], [1.0 - s_i, s_i]
        # eps_0 + s_u (eps_u - eps_0) + s_i (eps_ui - eps_u)
        return [(None, None), (user, None), (user, item)], [1.0 - s_u, s_u - s_i, s_i]


def _hw(sample_size: int | Sequence[int]) -> tuple[int, int]:
    return (sample_size, sample_size) if isinstance(sample_size, int) else tuple(sample_size)


def _broadcast(x: torch.Tensor | None, rows: int, name: str) -> torch.Tensor | None:
    if x is None or x.shape[0] == rows:
        return x
    if x.shape[0] == 1:
        return x.expand(rows, *x.shape[1:])
    raise ValueError(f"{x.shape[0]} {name} conditions for {rows} rows; give one or the same number")
