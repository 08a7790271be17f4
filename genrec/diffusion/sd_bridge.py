"""Personalizing a local Stable Diffusion checkpoint with user soft prompts (PMG-style).

The user's vector (any :class:`genrec.users.UserEncoder`) is projected into ``num_tokens`` soft
tokens in the text encoder's output space and appended to the prompt's hidden states, so the frozen
UNet's cross-attention reads "prompt + this user". Only the projector trains (standard SD
noise-prediction loss); the negative branch of classifier-free guidance gets learned null tokens,
so guidance pushes towards the user as well as the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin, StableDiffusionPipeline
from diffusers.configuration_utils import register_to_config
from torch import nn

from genrec.errors import CheckpointMismatchError


class UserSoftPrompt(ModelMixin, ConfigMixin):
    """User vector -> ``num_tokens`` tokens of width ``text_hidden_dim`` (plus learned null tokens)."""

    @register_to_config
    def __init__(self, user_dim: int, text_hidden_dim: int, num_tokens: int = 4, hidden_dim: int = 512):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Linear(user_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, num_tokens * text_hidden_dim)
        )
        self.null = nn.Parameter(torch.zeros(num_tokens, text_hidden_dim))
        self.norm = nn.LayerNorm(text_hidden_dim)

    def forward(
        self, user: torch.Tensor | None, batch_size: int | None = None, drop: torch.Tensor | None = None
    ):
        cfg = self.config
        b = user.shape[0] if user is not None else batch_size
        null = self.null.unsqueeze(0).expand(b, -1, -1)
        if user is None:
            return null
        if user.shape[-1] != cfg.user_dim:
            raise CheckpointMismatchError(
                f"user embedding has size {user.shape[-1]}, the soft prompt was trained on {cfg.user_dim}"
            )
        tokens = self.norm(self.proj(user.to(self.dtype)).view(b, cfg.num_tokens, -1))
        return torch.where(drop.view(b, 1, 1), null, tokens) if drop is not None else tokens


class PersonalizedStableDiffusion:
    """A :class:`StableDiffusionPipeline` whose prompt states are extended with user soft tokens."""

    def __init__(self, pipe: StableDiffusionPipeline, soft_prompt: UserSoftPrompt):
        width = pipe.text_encoder.config.hidden_size
        if soft_prompt.config.text_hidden_dim != width:
            raise CheckpointMismatchError(
                f"soft prompt produces {soft_prompt.config.text_hidden_dim}-wide tokens, "
                f"the text encoder's states are {width}-wide"
            )
        self.pipe = pipe
        self.soft_prompt = soft_prompt
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            module.requires_grad_(False)

    @classmethod
    def from_pretrained(
        cls, stable_diffusion: str | Path | StableDiffusionPipeline, soft_prompt: str | Path, **kwargs: Any
    ) -> PersonalizedStableDiffusion:
        pipe = (
            stable_diffusion
            if isinstance(stable_diffusion, StableDiffusionPipeline)
            else StableDiffusionPipeline.from_pretrained(stable_diffusion, **kwargs)
        )
        return cls(pipe, UserSoftPrompt.from_pretrained(soft_prompt))

    def save_pretrained(self, path: str | Path) -> None:
        """Saves the projector only; the SD checkpoint stays where the user keeps it."""
        self.soft_prompt.save_pretrained(path)

    def encode(
        self,
        prompt: str | list[str],
        user_embedding: torch.Tensor | np.ndarray | None,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prompt states with soft tokens appended: ``(B, L + num_tokens, D)`` (and the negative side)."""
        device = self.pipe._execution_device
        pos, neg = self.pipe.encode_prompt(
            prompt, device, num_images_per_prompt, do_classifier_free_guidance, negative_prompt
        )
        b = pos.shape[0]
        user = None
        if user_embedding is not None:
            user = torch.as_tensor(np.asarray(user_embedding, dtype=np.float32)).to(device)
            user = user.unsqueeze(0) if user.ndim == 1 else user
            if user.shape[0] not in (1, b // num_images_per_prompt):
                raise ValueError(f"{user.shape[0]} user embeddings for {b // num_images_per_prompt} prompts")
            user = user.expand(b // num_images_per_prompt, -1).repeat_interleave(num_images_per_prompt, 0)
        pos = torch.cat([pos, self.soft_prompt(user, batch_size=b).to(pos.dtype)], dim=1)
        if neg is not None:
            neg = torch.cat([neg, self.soft_prompt(None, batch_size=b).to(neg.dtype)], dim=1)
        return pos, neg

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        user_embedding: torch.Tensor | np.ndarray | None,
        negative_prompt: str | list[str] | None = None,
        guidance_scale: float = 7.5,
        num_images_per_prompt: int = 1,
        **kwargs: Any,
    ):
        """Same outputs as the wrapped pipeline (``.images``); extra kwargs go to it unchanged."""
        pos, neg = self.encode(
            prompt, user_embedding, negative_prompt, num_images_per_prompt, guidance_scale > 1
        )
        return self.pipe(
            prompt_embeds=pos,
            negative_prompt_embeds=neg,
            guidance_scale=guidance_scale,
            num_images_per_prompt=1,  # already repeated in encode()
            **kwargs,
        )

    def training_loss(
        self,
        images: torch.Tensor,
        prompts: Sequence[str],
        user_embedding: torch.Tensor,
        p_drop_user: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Noise-prediction MSE for a batch of images in [-1, 1]; gradients reach only the soft prompt."""
        pipe = self.pipe
        device = pipe._execution_device
        with torch.no_grad():
            latents = pipe.vae.encode(images.to(device, pipe.vae.dtype)).latent_dist.sample(generator)
            latents = latents * pipe.vae.config.scaling_factor
            text, _ = pipe.encode_prompt(list(prompts), device, 1, False)
        b = latents.shape[0]
        drop = torch.rand(b, generator=generator) < p_drop_user
        tokens = self.soft_prompt(user_embedding.to(device), drop=drop.to(device))
        noise = torch.randn(latents.shape, generator=generator).to(device, latents.dtype)
        n_steps = pipe.scheduler.config.num_train_timesteps
        t = torch.randint(0, n_steps, (b,), generator=generator).to(device)
        noisy = pipe.scheduler.add_noise(latents, noise, t)
        cond = torch.cat([text, tokens.to(text.dtype)], dim=1)
        pred = pipe.unet(noisy, t, encoder_hidden_states=cond).sample
        target = (
            noise
            if pipe.scheduler.config.prediction_type == "epsilon"
            else pipe.scheduler.get_velocity(latents, noise, t)
        )
        return nn.functional.mse_loss(pred.float(), target.float())
