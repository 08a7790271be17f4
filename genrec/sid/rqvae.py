"""RQ-VAE (TIGER): an MLP autoencoder whose latent is quantized by a residual codebook stack.

Training choices that make it converge in minutes on a CPU instead of hours:
the whole item matrix sits in memory and batches are large; codebooks start from residual
k-means on the initial latents (not random); codes left unused for an epoch are reset to live
residuals ("dead-code reset"), which keeps utilization high without a long schedule.
Loss = reconstruction + sum over levels of codebook loss + beta * commitment loss, with a
straight-through estimator from the decoder to the encoder. Every ``eval_every`` epochs the whole
catalog is encoded and the checkpoint with the lowest collision rate is kept (as LC-Rec does).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from genrec.sid.collisions import group_codes
from genrec.sid.kmeans import kmeans, nearest
from genrec.sid.quantizer import ResidualQuantizer, expand_sizes
from genrec.utils.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)


@dataclass
class RQVAEConfig:
    levels: int = 3
    codebook_size: int | list[int] = 256
    latent_dim: int = 32
    hidden_dims: list[int] = field(default_factory=lambda: [512, 256, 128])
    beta: float = 0.25  # commitment weight
    epochs: int = 50  # with k-means init + dead-code reset the collision rate bottoms out in ~25-50 epochs
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.0
    kmeans_init: bool = True
    dead_code_reset: bool = True
    eval_every: int = 5  # epochs between collision-rate checks; the best checkpoint is kept (0: keep last)
    seed: int = 0
    checkpoint_dir: str | None = None  # training state saved here after every epoch; a rerun resumes


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class RQVAEModel(nn.Module):
    def __init__(self, input_dim: int, config: RQVAEConfig):
        super().__init__()
        self.config = config
        sizes = expand_sizes(config.levels, config.codebook_size)
        dims = [input_dim, *config.hidden_dims, config.latent_dim]
        self.encoder = _mlp(dims)
        self.decoder = _mlp(dims[::-1])
        self.codebooks = nn.ParameterList(
            [nn.Parameter(torch.randn(k, config.latent_dim) / config.latent_dim**0.5) for k in sizes]
        )

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Residual quantization of ``z``: (quantized, codes, codebook + commitment loss)."""
        residual = z
        quantized = torch.zeros_like(z)
        loss = z.new_zeros(())
        codes = []
        for codebook in self.codebooks:
            idx = torch.cdist(residual.detach(), codebook.detach()).argmin(1)
            e = codebook[idx]
            loss = loss + ((e - residual.detach()) ** 2).sum(-1).mean()
            loss = loss + self.config.beta * ((residual - e.detach()) ** 2).sum(-1).mean()
            quantized = quantized + e
            residual = residual - e.detach()
            codes.append(idx)
        return quantized, torch.stack(codes, 1), loss

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction loss, codebook + commitment loss, codes) for a batch."""
        z = self.encoder(x)
        quantized, codes, q_loss = self.quantize(z)
        x_hat = self.decoder(z + (quantized - z).detach())  # straight-through
        recon = ((x_hat - x) ** 2).sum(-1).mean()
        return recon, q_loss, codes


class RQVAE(ResidualQuantizer):
    """A trained RQ-VAE as a quantizer: ``project`` runs the encoder, codebooks live in the latent."""

    method = "rqvae"

    def __init__(
        self,
        model: RQVAEModel,
        input_dim: int,
        history: list[dict[str, float]] | None = None,
        kept_epoch: int | None = None,
    ):
        self.model = model.eval()
        self._input_dim = input_dim
        self.codebooks = [c.detach().cpu().numpy().astype(np.float32) for c in model.codebooks]
        self.history = history or []
        self.kept_epoch = kept_epoch  # the epoch whose weights were kept (lowest collision rate)

    @property
    def input_dim(self) -> int:
        return self._input_dim

    @torch.no_grad()
    def project(self, x: np.ndarray) -> np.ndarray:
        out = [
            self.model.encoder(torch.from_numpy(np.ascontiguousarray(x[s : s + 8192], dtype=np.float32)))
            for s in range(0, len(x), 8192)
        ]
        return torch.cat(out).numpy()

    @torch.no_grad()
    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        codes = self.encode(x)
        z_q = sum(torch.from_numpy(c[codes[:, i]]) for i, c in enumerate(self.codebooks))
        return self.model.decoder(z_q).numpy()

    @classmethod
    def fit(cls, x: np.ndarray, config: RQVAEConfig, show_progress: bool = True) -> RQVAE:
        data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        n = len(data)
        sizes = expand_sizes(config.levels, config.codebook_size)
        if n < max(sizes):
            raise ValueError(
                f"RQ-VAE with codebook size {max(sizes)} needs at least that many items, got {n}"
            )
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            model = RQVAEModel(data.shape[1], config)
        gen = torch.Generator().manual_seed(config.seed)
        if config.kmeans_init:
            _kmeans_init(model, data, config.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        history: list[dict[str, float]] = []
        best: tuple[float, int, dict[str, torch.Tensor]] | None = None
        start = 0
        resume_key = {k: v for k, v in asdict(config).items() if k not in ("epochs", "checkpoint_dir")}
        found = latest_checkpoint(config.checkpoint_dir) if config.checkpoint_dir else None
        if found is not None:
            ckpt = load_checkpoint(
                found,
                modules={"model": model},
                optimizers={"optimizer": opt},
                generators={"shuffle": gen},
                resume_key=resume_key,
            )
            start, history = ckpt.step, ckpt.state["history"]
            if ckpt.state["best"] is not None:
                best = (ckpt.state["best"]["rate"], ckpt.state["best"]["epoch"], ckpt.tensors("best"))
        bar = tqdm(range(start, config.epochs), desc="rq-vae epochs", disable=not show_progress)
        for epoch in bar:
            model.train()
            usage = [torch.zeros(k, dtype=torch.long) for k in sizes]
            totals = {"recon": 0.0, "quant": 0.0}
            perm = torch.randperm(n, generator=gen)
            for s in range(0, n, config.batch_size):
                batch = data[perm[s : s + config.batch_size]]
                recon, q_loss, codes = model(batch)
                opt.zero_grad(set_to_none=True)
                (recon + q_loss).backward()
                opt.step()
                totals["recon"] += recon.item() * len(batch) / n
                totals["quant"] += q_loss.item() * len(batch) / n
                for level in range(len(sizes)):
                    usage[level] += torch.bincount(codes[:, level], minlength=sizes[level])
            dead = [int((u == 0).sum()) for u in usage]
            if config.dead_code_reset and epoch < config.epochs - 1 and any(dead):
                _reset_dead_codes(model, data, usage, gen)
            record = {"epoch": epoch, **totals, "dead_codes": sum(dead)}
            last_epoch = epoch == config.epochs - 1
            if config.eval_every and ((epoch + 1) % config.eval_every == 0 or last_epoch):
                record["collision_rate"] = _collision_rate(model, data)
                if best is None or record["collision_rate"] < best[0]:
                    best = (record["collision_rate"], epoch, copy.deepcopy(model.state_dict()))
            history.append(record)
            if config.checkpoint_dir:
                save_checkpoint(
                    config.checkpoint_dir,
                    epoch + 1,
                    modules={"model": model},
                    tensors={} if best is None else {"best": best[2]},
                    optimizers={"optimizer": opt},
                    generators={"shuffle": gen},
                    resume_key=resume_key,
                    state={"history": history, "best": best and {"rate": best[0], "epoch": best[1]}},
                    keep=1,
                )
            bar.set_postfix(recon=f"{totals['recon']:.4f}", quant=f"{totals['quant']:.4f}", dead=sum(dead))
        if best is not None:
            model.load_state_dict(best[2])
            logger.info("rq-vae: kept epoch %d (collision rate %.4f)", best[1], best[0])
        return cls(model, data.shape[1], history, kept_epoch=best[1] if best else config.epochs - 1)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = {"input_dim": self.input_dim, "config": asdict(self.model.config)}
        tensors = {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}
        return config, tensors

    @classmethod
    def from_state(cls, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> RQVAE:
        model = RQVAEModel(int(config["input_dim"]), RQVAEConfig(**config["config"]))
        model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in tensors.items()})
        return cls(model, int(config["input_dim"]))


@torch.no_grad()
def _kmeans_init(model: RQVAEModel, data: torch.Tensor, seed: int) -> None:
    """Residual k-means on the untrained encoder's latents gives every code a live starting point."""
    residual = model.encoder(data).numpy()
    for level, codebook in enumerate(model.codebooks):
        centroids = kmeans(residual, len(codebook), niter=10, seed=seed + level, nredo=3)
        codebook.copy_(torch.from_numpy(centroids))
        idx, _ = nearest(residual, centroids)
        residual = residual - centroids[idx]


@torch.no_grad()
def _reset_dead_codes(
    model: RQVAEModel, data: torch.Tensor, usage: list[torch.Tensor], gen: torch.Generator
) -> None:
    """Move each unused codeword onto a random item's residual at that level."""
    model.eval()
    z = model.encoder(data)
    residual = z
    for level, codebook in enumerate(model.codebooks):
        dead = (usage[level] == 0).nonzero().flatten()
        if len(dead):
            pick = torch.randint(len(residual), (len(dead),), generator=gen)
            codebook[dead] = residual[pick]
        idx = torch.cdist(residual, codebook).argmin(1)
        residual = residual - codebook[idx]


@torch.no_grad()
def _collision_rate(model: RQVAEModel, data: torch.Tensor) -> float:
    """Fraction of items whose full code is shared with another item (the quantity de-dup pays for)."""
    model.eval()
    _, codes, _ = model.quantize(model.encoder(data))
    inverse, counts = group_codes(codes.numpy())
    return float((counts[inverse] > 1).mean())
