"""Personalized-thumbnail training: a small VAE on item images, then a conditional UNet on cached latents.

Stage 1 (latent mode, unless ``vae_path`` names a pretrained VAE) trains an ``AutoencoderKL`` on the
training items' images, then encodes every image once; the latents never change during stage 2.
Stage 2 trains the UNet and the condition projector with a DDPM noise-prediction loss, condition
dropout for classifier-free guidance, and an EMA of both. Checkpoints hold safetensors weights, the
optimizer (``torch.load(weights_only=True)``), the LR schedule and the pair sampler's RNG, so
``resume=True`` continues the same run. Runs under ``accelerate launch`` and plain ``python``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UNet2DConditionModel,
)
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from genrec.data.dataset import SequenceDataset
from genrec.diffusion.conditioning import ThumbnailConditioner
from genrec.diffusion.data import PAIR_TARGETS, HoldOut, ItemImages, PairSampler, hold_out, load_item_images
from genrec.diffusion.grid import save_grid
from genrec.diffusion.models import build_unet, build_vae, predict_noise
from genrec.diffusion.pipeline import PersonalizedThumbnailPipeline
from genrec.errors import CheckpointMismatchError
from genrec.users import MeanItemEncoder, UserEncoder
from genrec.utils.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from genrec.utils.io import atomic_write_json
from genrec.utils.runtime import get_logger, seed_everything

logger = get_logger(__name__)


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
# a resumed UNet run must condition the same way as the saved one
_CONDITIONER_KEY = (
    "user_dim",
    "item_dim",
    "cross_attention_dim",
    "num_user_tokens",
    "num_item_tokens",
    "history_tokens",
    "catalog_fingerprint",
)


@dataclass
class ThumbnailTrainingConfig:
    """Everything a thumbnail run needs; the YAML recipes map onto these fields one to one."""

    output_dir: str = "runs/thumbnails"
    seed: int = 0
    image_size: int = 64
    # hold-out for evaluation
    test_user_fraction: float = 0.1
    test_item_fraction: float = 0.05
    history_max_len: int = 50
    pair_target: str = "next"  # "next": history before t -> item t; "history": other history items -> item t
    target_in_history: float = 0.0  # share of pairs whose target re-enters its history (see PairSampler)
    # conditions
    item_condition: bool = True
    unconditional: bool = False  # control model: every condition replaced by null tokens
    num_user_tokens: int = 2  # tokens projected from the user vector (0: the history set alone)
    num_item_tokens: int = 1
    history_tokens: int = 0  # one token per recent history item, IP-Adapter style (0: the vector alone)
    condition_hidden_dim: int = 256
    p_drop_user: float = 0.1
    p_drop_item: float = 0.1
    # VAE (latent mode); latent=False trains the UNet on pixels (for tiny images)
    latent: bool = True
    vae_path: str | None = None
    vae_block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    vae_latent_channels: int = 4
    vae_steps: int = 600
    vae_batch_size: int = 32
    vae_crop_size: int | None = 32  # the VAE is fully convolutional: train on random crops, 4x cheaper
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-6
    # UNet
    unet_block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    layers_per_block: int = 1
    cross_attention_dim: int = 128
    attention_head_dim: int = 32
    unet_first_attention_level: int = 0  # 1 = no attention at full resolution (cheaper pixel-space runs)
    global_condition: bool = True  # the mean condition token also joins the timestep embedding
    train_steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 3e-4
    lr_warmup_steps: int = 100
    weight_decay: float = 1e-2
    ema_decay: float = 0.999
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    # "epsilon", "v_prediction" or "sample" (x0: a briefly trained model then draws blurred but recognisable
    # images where an epsilon model draws noise; the demo's thumbnail stage measured 92% vs 8% readable)
    prediction_type: str = "epsilon"
    # sampling
    # "ddim", "ddpm" (ancestral; cleaner than DDIM for briefly trained models, measured on the
    # synthetic catalog) or "dpmsolver" (DPM-Solver++; needs a non-cosine beta_schedule)
    sample_scheduler: str = "ddim"
    sample_steps: int = 20
    user_guidance_scale: float = 3.0
    item_guidance_scale: float = 2.0
    # bookkeeping
    save_every: int = 500
    sample_every: int = 500
    num_sample_users: int = 4
    keep_checkpoints: int = 2
    mixed_precision: str = "no"

    def __post_init__(self) -> None:
        for name, allowed in (("prediction_type", PREDICTION_TYPES), ("pair_target", PAIR_TARGETS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0.0 <= self.target_in_history <= 1.0:
            raise ValueError(f"target_in_history is a share in [0, 1], got {self.target_in_history}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ThumbnailTrainingConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown thumbnail config field(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_sample_scheduler(train_scheduler: DDPMScheduler, kind: str):
    """DDIM, DDPM (ancestral) or DPM-Solver++ sharing the training noise schedule.

    DPM-Solver++ diverges on the cosine schedule (its terminal alpha is ~1e-9, so data predictions
    at the first steps are amplified thousands of times; measured here), so that pair is refused.
    """
    if kind == "dpmsolver":
        if train_scheduler.config.beta_schedule == "squaredcos_cap_v2":
            raise ValueError(
                "sample_scheduler='dpmsolver' is unstable with beta_schedule='squaredcos_cap_v2'; "
                "use sample_scheduler='ddim' or train with beta_schedule='scaled_linear'"
            )
        return DPMSolverMultistepScheduler.from_config(train_scheduler.config)
    if kind == "ddim":
        return DDIMScheduler.from_config(train_scheduler.config)
    if kind == "ddpm":
        return DDPMScheduler.from_config(train_scheduler.config)
    raise ValueError(f"sample_scheduler must be 'ddim', 'ddpm' or 'dpmsolver', got {kind!r}")


class ThumbnailTrainer:
    """Trains ``PersonalizedThumbnailPipeline`` on a dataset whose items have images.

    ``item_embeddings`` are the items' content embeddings (``genrec.embed.encode_items``): the item
    condition and, with the default user encoder, the user vector (their history mean).
    """

    def __init__(
        self,
        config: ThumbnailTrainingConfig,
        dataset: SequenceDataset,
        item_embeddings: np.ndarray,
        user_encoder: UserEncoder | None = None,
        images: ItemImages | None = None,
        progress: bool = True,
    ):
        self.config = config
        self.dataset = dataset
        self.item_embeddings = np.asarray(item_embeddings, dtype=np.float32)
        if self.item_embeddings.shape[0] != dataset.num_items:
            raise ValueError(
                f"item_embeddings has {self.item_embeddings.shape[0]} rows for {dataset.num_items} items"
            )
        self.external_encoder = user_encoder is not None
        self.user_encoder = user_encoder or MeanItemEncoder(
            self.item_embeddings, max_len=config.history_max_len
        )
        self.output_dir = Path(config.output_dir)
        self.progress = progress
        self.accelerator = Accelerator(mixed_precision=config.mixed_precision)
        seed_everything(config.seed)
        self.images = images or load_item_images(dataset.catalog, config.image_size, progress=progress)
        self.holdout: HoldOut = hold_out(
            dataset, config.test_user_fraction, config.test_item_fraction, config.seed
        )
        self.train_item_rows = np.flatnonzero(~np.isin(self.images.indices, self.holdout.test_items))
        self.vae: AutoencoderKL | None = None
        self.step_times: list[float] = []

    # -- public entry point ----------------------------------------------------------------------
    def train(self, resume: bool = False) -> PersonalizedThumbnailPipeline:
        """Run both stages (skipping what a resumed run already finished); returns the EMA pipeline."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.output_dir / "config.json", self.config.to_dict())
        if self.config.latent:
            self.vae = self._vae_stage(resume)
            latents = self._latents()
        else:
            latents = None
        pipe = self._unet_stage(latents, resume)
        if self.accelerator.is_main_process:
            pipe.save_pretrained(self.output_dir / "pipeline")
        return pipe

    # -- stage 1: VAE ----------------------------------------------------------------------------
    def _vae_stage(self, resume: bool) -> AutoencoderKL:
        cfg = self.config
        if cfg.vae_path:
            vae = AutoencoderKL.from_pretrained(cfg.vae_path)
            return vae.eval().requires_grad_(False)
        final = self.output_dir / "vae"
        if resume and (final / "config.json").is_file():
            return AutoencoderKL.from_pretrained(final).eval().requires_grad_(False)
        vae = build_vae(cfg.vae_block_out_channels, cfg.vae_latent_channels, sample_size=cfg.image_size)
        opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
        ckpt_dir = self.output_dir / "vae-checkpoints"
        parts = {"modules": {"vae": vae}, "optimizers": {"optimizer": opt}}
        resume_key = {
            k: getattr(cfg, k) for k in ("vae_block_out_channels", "vae_latent_channels", "image_size")
        }
        start = 0
        rng = np.random.default_rng(cfg.seed + 1)
        found = latest_checkpoint(ckpt_dir) if resume else None
        if found is not None:
            ckpt = load_checkpoint(found, **parts, resume_key=resume_key)
            start, rng.bit_generator.state = ckpt.step, ckpt.state["rng"]
        vae_loss, opt = self.accelerator.prepare(_VAELoss(vae, cfg.vae_kl_weight), opt)
        rows = self.train_item_rows
        bar = tqdm(
            range(start, cfg.vae_steps),
            desc="vae",
            disable=not self.progress,
            initial=start,
            total=cfg.vae_steps,
        )
        for step in bar:
            batch = self.images.to_float(torch.from_numpy(rng.choice(rows, cfg.vae_batch_size)))
            loss = vae_loss(_random_crops(batch, cfg.vae_crop_size, rng).to(self.accelerator.device))
            self.accelerator.backward(loss)
            opt.step()
            opt.zero_grad(set_to_none=True)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if (step + 1) % cfg.save_every == 0 and self.accelerator.is_main_process:
                state = {"rng": rng.bit_generator.state}
                save_checkpoint(ckpt_dir, step + 1, **parts, resume_key=resume_key, state=state, keep=1)
        vae = vae.eval().requires_grad_(False)
        vae.register_to_config(scaling_factor=self._latent_scale(vae))
        if self.accelerator.is_main_process:
            vae.save_pretrained(final)
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        return vae

    @torch.no_grad()
    def _latent_scale(self, vae: AutoencoderKL) -> float:
        """1 / std of the latents (as Stable Diffusion's 0.18215), so the UNet sees unit-variance inputs."""
        rows = self.train_item_rows[:512]
        z = vae.encode(self.images.to_float(torch.from_numpy(rows))).latent_dist.mean
        return float(1.0 / z.std().clamp_min(1e-6))

    @torch.no_grad()
    def _latents(self) -> dict[str, torch.Tensor]:
        """Posterior mean and std of every image, cached beside the VAE (keyed by image rows)."""
        path = self.output_dir / "latents.safetensors"
        if path.is_file():
            cached = load_file(path)
            if cached["items"].shape[0] == len(self.images.indices) and torch.equal(
                cached["items"], torch.from_numpy(self.images.indices)
            ):
                return cached
        means, stds = [], []
        for start in tqdm(
            range(0, len(self.images.indices), 64), desc="encode latents", disable=not self.progress
        ):
            dist = self.vae.encode(self.images.to_float(slice(start, start + 64))).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
        cached = {
            "items": torch.from_numpy(self.images.indices),
            "mean": torch.cat(means),
            "std": torch.cat(stds),
        }
        if self.accelerator.is_main_process:
            save_file(cached, str(path))
        return cached

    # -- stage 2: UNet + conditioner ------------------------------------------------------------
    def build_models(self) -> tuple[UNet2DConditionModel, ThumbnailConditioner, DDPMScheduler]:
        cfg = self.config
        channels = self.vae.config.latent_channels if self.vae is not None else 3
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1
        unet = build_unet(
            sample_size=cfg.image_size // factor,
            in_channels=channels,
            block_out_channels=cfg.unet_block_out_channels,
            layers_per_block=cfg.layers_per_block,
            cross_attention_dim=cfg.cross_attention_dim,
            attention_head_dim=cfg.attention_head_dim,
            first_attention_level=cfg.unet_first_attention_level,
            global_condition=cfg.global_condition,
        )
        d_item = self.item_embeddings.shape[1]
        conditioner = ThumbnailConditioner(
            user_dim=self.user_encoder.dim,
            cross_attention_dim=cfg.cross_attention_dim,
            item_dim=d_item if cfg.item_condition else 0,
            num_user_tokens=cfg.num_user_tokens,
            num_item_tokens=cfg.num_item_tokens,
            history_tokens=cfg.history_tokens,
            hidden_dim=cfg.condition_hidden_dim,
            user_encoder="external" if self.external_encoder else "mean",
            history_max_len=cfg.history_max_len,
            num_items=self.dataset.num_items,
            table_dim=d_item,
            catalog_ids=self.dataset.catalog.ids,
            catalog_fingerprint=self.dataset.catalog.fingerprint(),
        )
        conditioner.set_item_embeddings(self.item_embeddings)
        scheduler = DDPMScheduler(
            num_train_timesteps=cfg.num_train_timesteps,
            beta_schedule=cfg.beta_schedule,
            prediction_type=cfg.prediction_type,
            clip_sample=not cfg.latent,  # [-1, 1] holds for pixels, not for unit-variance latents
        )
        return unet, conditioner, scheduler

    def _unet_stage(
        self, latents: dict[str, torch.Tensor] | None, resume: bool
    ) -> PersonalizedThumbnailPipeline:
        cfg, acc = self.config, self.accelerator
        unet, conditioner, noise_scheduler = self.build_models()
        # Each process draws its own batches (under `accelerate launch`), reproducibly.
        rank_seed = cfg.seed + 1000 * acc.process_index
        sampler = PairSampler(
            self.dataset,
            self.images,
            self.holdout,
            cfg.history_max_len,
            rank_seed + 2,
            cfg.pair_target,
            target_in_history=cfg.target_in_history,
            recent_slots=max(cfg.history_tokens, 1),
        )
        params = list(unet.parameters()) + list(conditioner.parameters())
        opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        lr_sched = get_scheduler("constant_with_warmup", opt, num_warmup_steps=cfg.lr_warmup_steps)
        ema_unet = EMAModel(
            unet.parameters(), decay=cfg.ema_decay, model_cls=UNet2DConditionModel, model_config=unet.config
        )
        ema_cond = EMAModel(
            conditioner.parameters(),
            decay=cfg.ema_decay,
            model_cls=ThumbnailConditioner,
            model_config=conditioner.config,
        )
        start = 0
        gen = torch.Generator().manual_seed(rank_seed + 3)  # noise, timesteps and condition dropout
        parts = {
            "modules": {"unet": unet, "conditioner": conditioner},
            "optimizers": {"optimizer": opt, "lr_scheduler": lr_sched},
            "generators": {"noise": gen},
            "resume_key": {k: conditioner.config[k] for k in _CONDITIONER_KEY},
        }
        emas = {"ema_unet": ema_unet, "ema_conditioner": ema_cond}
        found = latest_checkpoint(self.output_dir) if resume else None
        if found is not None:
            ckpt = load_checkpoint(found, **parts)
            for name, ema in emas.items():
                _load_ema(ema, ckpt.tensors(name), ckpt.state[name], found)
            sampler.load_state_dict(ckpt.state["sampler"])
            start = ckpt.step
        unet, conditioner, opt, lr_sched = acc.prepare(unet, conditioner, opt, lr_sched)
        parts["modules"] = {"unet": _unwrap(unet), "conditioner": _unwrap(conditioner)}
        ema_unet.to(acc.device)
        ema_cond.to(acc.device)

        row_of = torch.from_numpy(self.images.row_of)
        bar = tqdm(
            range(start, cfg.train_steps),
            desc="unet",
            disable=not self.progress,
            initial=start,
            total=cfg.train_steps,
        )
        for step in bar:
            t0 = time.perf_counter()
            histories, targets = sampler.sample(cfg.batch_size)
            rows = row_of[torch.from_numpy(targets)]
            if latents is not None:
                x0 = latents["mean"][rows] + latents["std"][rows] * torch.randn(
                    len(rows), *latents["mean"].shape[1:], generator=gen
                )
                x0 = x0 * self.vae.config.scaling_factor
            else:
                x0 = self.images.to_float(rows)
            x0 = x0.to(acc.device)
            b = x0.shape[0]
            user = self.user_encoder.encode(histories).to(acc.device) if cfg.num_user_tokens else None
            history = _unwrap(conditioner).history_index(histories) if cfg.history_tokens else None
            item = (
                torch.from_numpy(self.item_embeddings[targets]).to(acc.device) if cfg.item_condition else None
            )
            if cfg.unconditional:
                drop_user = drop_item = torch.ones(b, dtype=torch.bool, device=acc.device)
            else:
                drop_user = (torch.rand(b, generator=gen) < cfg.p_drop_user).to(acc.device)
                drop_item = (torch.rand(b, generator=gen) < cfg.p_drop_item).to(acc.device)
            noise = torch.randn(x0.shape, generator=gen).to(acc.device)
            t = torch.randint(0, cfg.num_train_timesteps, (b,), generator=gen).to(acc.device)
            noisy = noise_scheduler.add_noise(x0, noise, t)
            target = _training_target(cfg.prediction_type, noise_scheduler, x0, noise, t)
            with acc.autocast():
                cond = conditioner(
                    user, item, drop_user=drop_user, drop_item=drop_item, batch_size=b, history=history
                )
                pred = predict_noise(unet, noisy, t, cond)
                loss = torch.nn.functional.mse_loss(pred.float(), target.float())
            acc.backward(loss)
            acc.clip_grad_norm_(params, 1.0)
            opt.step()
            lr_sched.step()
            opt.zero_grad(set_to_none=True)
            ema_unet.step(_unwrap(unet).parameters())
            ema_cond.step(_unwrap(conditioner).parameters())
            self.step_times.append(time.perf_counter() - t0)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            done = step + 1
            if acc.is_main_process and (done % cfg.save_every == 0 or done == cfg.train_steps):
                ema_parts = {name: _ema_parts(ema) for name, ema in emas.items()}
                save_checkpoint(
                    self.output_dir,
                    done,
                    **parts,
                    tensors={name: shadow for name, (shadow, _) in ema_parts.items()},
                    state={"sampler": sampler.state_dict(), **{n: c for n, (_, c) in ema_parts.items()}},
                    keep=cfg.keep_checkpoints,
                )
            if acc.is_main_process and cfg.sample_every and done % cfg.sample_every == 0:
                pipe = self._ema_pipeline(unet, conditioner, ema_unet, ema_cond, noise_scheduler)
                self.save_sample_grid(pipe, self.output_dir / "samples" / f"step-{done:06d}.png")
        return self._ema_pipeline(unet, conditioner, ema_unet, ema_cond, noise_scheduler)

    def _ema_pipeline(self, unet, conditioner, ema_unet: EMAModel, ema_cond: EMAModel, noise_scheduler):
        """A standalone pipeline holding copies of the EMA weights (the live weights are untouched)."""
        unet_copy = copy.deepcopy(_unwrap(unet)).eval()
        cond_copy = copy.deepcopy(_unwrap(conditioner)).eval()
        ema_unet.copy_to(unet_copy.parameters())
        ema_cond.copy_to(cond_copy.parameters())
        return PersonalizedThumbnailPipeline(
            unet=unet_copy,
            scheduler=make_sample_scheduler(noise_scheduler, self.config.sample_scheduler),
            conditioner=cond_copy,
            vae=self.vae,
        )

    # -- samples ---------------------------------------------------------------------------------
    def sample_users(self) -> list[int]:
        """Held-out users shown in sample grids (fixed across the run so grids are comparable)."""
        return [int(u) for u in self.holdout.test_users[: self.config.num_sample_users]]

    @torch.no_grad()
    def save_sample_grid(
        self, pipe: PersonalizedThumbnailPipeline, path: Path, num_history: int = 4, num_images: int = 4
    ) -> Path:
        """One row per held-out user: their latest history images, then generated thumbnails."""
        cfg = self.config
        users = self.sample_users()
        histories = [self.dataset.sequences[u][:-1] for u in users]
        gen = torch.Generator().manual_seed(cfg.seed)
        images = pipe(
            user_history=[[self.dataset.catalog.ids[i] for i in h] for h in histories],
            user_encoder=self.user_encoder if self.external_encoder else None,
            user_guidance_scale=cfg.user_guidance_scale,
            num_inference_steps=cfg.sample_steps,
            generator=gen,
            num_images=num_images,
            output_type="np",
        ).images
        rows = []
        for k, h in enumerate(histories):
            shown = [i for i in h[::-1] if self.images.row_of[i] >= 0][:num_history][::-1]
            real = [self.images.pixels[self.images.row_of[i]].permute(1, 2, 0).numpy() for i in shown]
            fake = [
                (img * 255).round().astype(np.uint8) for img in images[k * num_images : (k + 1) * num_images]
            ]
            rows.append((real, fake))
        return save_grid(rows, path, titles=("recent history", "generated"))


def _training_target(
    prediction_type: str, scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """What the UNet learns to output for ``noisy = add_noise(x0, noise, t)``."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    return x0  # "sample", the one left (ThumbnailTrainingConfig checks the name)


class _VAELoss(torch.nn.Module):
    """Reconstruction MSE + weighted KL as one forward, so DDP sees (and syncs) the whole graph."""

    def __init__(self, vae: AutoencoderKL, kl_weight: float):
        super().__init__()
        self.vae = vae
        self.kl_weight = kl_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        posterior = self.vae.encode(x).latent_dist
        recon = self.vae.decode(posterior.sample()).sample
        return torch.nn.functional.mse_loss(recon, x) + self.kl_weight * posterior.kl().mean()


def _random_crops(x: torch.Tensor, size: int | None, rng: np.random.Generator) -> torch.Tensor:
    """One random ``size`` x ``size`` crop per image (whole images when ``size`` is None or too big)."""
    h, w = x.shape[-2:]
    if size is None or (size >= h and size >= w):
        return x
    tops = rng.integers(0, h - size + 1, len(x))
    lefts = rng.integers(0, w - size + 1, len(x))
    return torch.stack([img[:, t : t + size, s : s + size] for img, t, s in zip(x, tops, lefts)])


def _ema_parts(ema: EMAModel) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An EMA's shadow weights as named tensors and its counters (JSON): no pickles in checkpoints."""
    counters = ema.state_dict()
    shadow = counters.pop("shadow_params")
    return {f"{i:05d}": p for i, p in enumerate(shadow)}, counters


def _load_ema(ema: EMAModel, shadow: dict[str, torch.Tensor], counters: dict[str, Any], path: Path) -> None:
    if len(shadow) != len(ema.shadow_params):
        raise CheckpointMismatchError(
            f"{path}: {len(shadow)} EMA tensors, model has {len(ema.shadow_params)}"
        )
    ema.load_state_dict({**counters, "shadow_params": [shadow[k] for k in sorted(shadow)]})


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def step_time_summary(times: Sequence[float], skip: int = 5) -> float:
    """Median seconds per step, ignoring the first (warm-up) steps."""
    t = list(times)[skip:] or list(times)
    return float(np.median(t)) if t else math.nan
