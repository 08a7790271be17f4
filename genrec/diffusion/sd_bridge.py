"""Personalizing a local Stable Diffusion checkpoint with user soft prompts (PMG-style).

The user's vector (any :class:`genrec.users.UserEncoder`) is projected into ``num_tokens`` soft
tokens in the text encoder's output space and appended to the prompt's hidden states, so the frozen
UNet's cross-attention reads "prompt + this user". Only the projector trains (standard SD
noise-prediction loss); the negative branch of classifier-free guidance gets learned null tokens,
so guidance pushes towards the user as well as the prompt.

:func:`train_soft_prompt` trains the projector with :class:`SoftPromptTrainingConfig` (``accelerate`` for the
device and mixed precision, one resumable checkpoint folder); ``recipes/train_sd_thumbnails.py`` runs it on
an SD 1.5-class checkpoint and ``docs/thumbnails.md`` says what a user supplies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from diffusers import ConfigMixin, ModelMixin, StableDiffusionPipeline
from diffusers.configuration_utils import register_to_config
from torch import nn
from tqdm.auto import tqdm

from genrec.errors import CheckpointMismatchError
from genrec.utils.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from genrec.utils.io import atomic_directory
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)


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

    def to(self, *args: Any, **kwargs: Any) -> PersonalizedStableDiffusion:
        """``pipe.to(...)`` (device and/or dtype); the soft prompt follows to the device and stays fp32."""
        self.pipe.to(*args, **kwargs)
        self.soft_prompt.to(self.pipe.device)
        return self

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


# -- training -------------------------------------------------------------------------------------
MIXED_PRECISION = ("no", "fp16", "bf16")
_ARCHITECTURE = ("user_dim", "text_hidden_dim", "num_tokens", "hidden_dim")


@dataclass
class SoftPromptTrainingConfig:
    """Training a :class:`UserSoftPrompt` on a frozen SD; a recipe's ``training:`` section maps onto it."""

    output_dir: str = "runs/sd_soft_prompt"
    seed: int = 0
    steps: int = 2000
    batch_size: int = 4  # per process
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    p_drop_user: float = 0.1  # user tokens -> learned null tokens, for guidance towards the user
    save_every: int = 250
    # "fp16"/"bf16": the frozen UNet, VAE and text encoder are cast to it; the soft prompt trains in fp32
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False  # the UNet recomputes activations in backward: less memory, slower
    # data and soft-prompt shape (read by the recipe; images must be resolution x resolution)
    resolution: int = 512
    prompt_template: str = "a movie poster of {{ title }}, {{ genres | join(', ') }}"
    num_tokens: int = 4
    hidden_dim: int = 512

    def __post_init__(self) -> None:
        if self.mixed_precision is False:  # YAML reads a bare `no` as false
            self.mixed_precision = "no"
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}"
            )
        for name in ("steps", "batch_size", "save_every", "resolution", "num_tokens", "hidden_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SoftPromptTrainingConfig:
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown soft-prompt training field(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train_soft_prompt(
    bridge: PersonalizedStableDiffusion,
    images: torch.Tensor,
    prompts: Sequence[str],
    user_vectors: torch.Tensor | np.ndarray,
    config: SoftPromptTrainingConfig,
    pairs: torch.Tensor | np.ndarray | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[float]:
    """Train ``bridge.soft_prompt`` (UNet, VAE and text encoder frozen); returns this call's step losses.

    ``images`` are ``(N, 3, resolution, resolution)``, uint8 or floats in [-1, 1], ``prompts`` one per
    image. Without ``pairs`` example ``k`` is image ``k`` with user vector ``k``; ``pairs`` is an
    ``(M, 2)`` array of ``(user row, image row)`` examples. Each step draws ``batch_size`` examples with
    replacement. All randomness of step ``s`` (rows, VAE sample, user dropout, noise, timesteps) comes from
    a generator seeded by ``(seed, process, s)``, so ``<output_dir>/checkpoint-<step>`` (the soft prompt,
    the optimizer state, the step) is all ``resume=True`` needs to continue the run exactly. The trained soft
    prompt is saved to ``<output_dir>/soft_prompt`` (``UserSoftPrompt.from_pretrained`` loads it). The
    wrapped pipeline is moved to the accelerator's device, and cast to the mixed-precision dtype, in place.
    """
    cfg = config
    acc = Accelerator(mixed_precision=cfg.mixed_precision)
    images = torch.as_tensor(images)
    users = torch.as_tensor(np.asarray(user_vectors, dtype=np.float32))
    n = images.shape[0]
    pairs = torch.arange(n).repeat(2, 1).T if pairs is None else torch.as_tensor(np.asarray(pairs)).long()
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, cfg.resolution, cfg.resolution):
        raise ValueError(
            f"images must be (N, 3, {cfg.resolution}, {cfg.resolution}), got {tuple(images.shape)}"
        )
    if len(prompts) != n:
        raise ValueError(f"{len(prompts)} prompts for {n} images")
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
        raise ValueError(f"pairs must be a non-empty (M, 2) array, got shape {tuple(pairs.shape)}")
    if pairs[:, 0].max() >= len(users) or pairs[:, 1].max() >= n or pairs.min() < 0:
        raise ValueError(f"pairs index outside the {len(users)} user vectors or {n} images")

    pipe = bridge.pipe
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(acc.mixed_precision, torch.float32)
    pipe.to(acc.device)
    if pipe.unet.dtype != weight_dtype:
        pipe.to(weight_dtype)
    if cfg.gradient_checkpointing:
        pipe.unet.enable_gradient_checkpointing()
        pipe.unet.train()  # diffusers checkpoints only in training mode; SD's UNet has no dropout
    soft_prompt = bridge.soft_prompt.to(acc.device)
    if soft_prompt.dtype != torch.float32:
        soft_prompt.float()
    opt = torch.optim.AdamW(soft_prompt.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    out = Path(cfg.output_dir)
    start = 0
    optimizers = {"optimizer": opt} | ({"scaler": acc.scaler} if acc.scaler is not None else {})
    resume_key = {key: soft_prompt.config[key] for key in _ARCHITECTURE}
    found = latest_checkpoint(out) if resume else None
    if found is not None:
        ckpt = load_checkpoint(
            found, modules={"soft_prompt": soft_prompt}, optimizers=optimizers, resume_key=resume_key
        )
        start = ckpt.step
        logger.info("resuming soft-prompt training from step %d of %d", start, cfg.steps)
    elif resume:
        logger.info("no checkpoint in %s; training from step 0", out)
    model, opt = acc.prepare(soft_prompt, opt)
    bridge.soft_prompt = model
    losses: list[float] = []
    bar = tqdm(
        range(start, cfg.steps),
        desc="soft prompt",
        initial=start,
        total=cfg.steps,
        disable=not progress or not acc.is_local_main_process,
    )
    try:
        for step in bar:
            seed = np.random.SeedSequence([cfg.seed, acc.process_index, step]).generate_state(1, np.uint64)[0]
            gen = torch.Generator().manual_seed(int(seed))
            rows = pairs[torch.randint(0, len(pairs), (cfg.batch_size,), generator=gen)]
            batch = images[rows[:, 1]]
            batch = batch.float().div(127.5).sub(1.0) if batch.dtype == torch.uint8 else batch.float()
            with acc.autocast():
                loss = bridge.training_loss(
                    batch, [prompts[j] for j in rows[:, 1].tolist()], users[rows[:, 0]], cfg.p_drop_user, gen
                )
            acc.backward(loss)
            if cfg.max_grad_norm:
                acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            done = step + 1
            if done % cfg.save_every == 0 or done == cfg.steps:
                if acc.is_main_process:
                    save_checkpoint(
                        out,
                        done,
                        modules={"soft_prompt": acc.unwrap_model(model)},
                        optimizers=optimizers,
                        resume_key=resume_key,
                        state={"config": cfg.to_dict()},
                        keep=1,
                    )
                acc.wait_for_everyone()
    finally:
        bridge.soft_prompt = acc.unwrap_model(model, keep_fp32_wrapper=False)
    if acc.is_main_process:
        with atomic_directory(out / "soft_prompt") as folder:
            bridge.soft_prompt.save_pretrained(folder)
        logger.info("soft prompt saved to %s (step %d)", out / "soft_prompt", max(start, cfg.steps))
    acc.wait_for_everyone()
    return losses
