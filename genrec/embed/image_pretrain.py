"""An item image encoder pretrained here, CLIP-style, because no pretrained image weights are reachable.

A small vision backbone built from a transformers config (ResNet by default; ConvNeXt, ViT or any
``model_type`` ``AutoModel`` builds) plus a learned linear projection is trained with symmetric InfoNCE
so that an item's image lands near the item's (frozen) MiniLM text embedding. Optionally items that
co-occur in training sequences are pulled together too (behaviour positives). Training checkpoints
every ``checkpoint_every`` steps and a rerun resumes; the result saves with ``save_pretrained``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import nn
from tqdm.auto import tqdm

from genrec.data.dataset import Catalog
from genrec.embed.contrastive import cooccurrence_pairs, info_nce
from genrec.embed.encoder import l2_normalize
from genrec.embed.image import torch_device, weights_digest
from genrec.embed.pixels import load_image, load_item_images
from genrec.errors import CheckpointMismatchError, DataFormatError
from genrec.utils.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from genrec.utils.io import atomic_write, atomic_write_json, read_json
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "genrec-image-encoder"
FORMAT_VERSION = 1
_RESUME_FREE = ("steps", "checkpoint_every")  # may change between a run and its resumption

# Small backbones that train in CPU-minutes on 64x64 posters; ``backbone_kwargs`` override them.
DEFAULT_BACKBONES: dict[str, dict[str, Any]] = {
    "resnet": {"embedding_size": 32, "hidden_sizes": [32, 64, 128, 256], "depths": [1, 1, 1, 1]},
    "convnext": {"hidden_sizes": [32, 64, 128, 256], "depths": [1, 1, 2, 1]},
    "vit": {"hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 3, "intermediate_size": 384},
}


@dataclass
class ImagePretrainConfig:
    backbone: str = "resnet"  # a transformers model_type: resnet, convnext, vit, ...
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)  # config fields over DEFAULT_BACKBONES
    image_size: int = 64
    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    temperature: float = 0.07  # initial; the logit scale is learned (capped at 100, as in CLIP)
    behaviour_weight: float = 0.0  # > 0 adds InfoNCE between the images of co-occurring items
    behaviour_window: int = 1  # positions apart in a training sequence that still count as co-occurring
    augment: bool = True  # random flip and shift: a few thousand posters overfit otherwise
    checkpoint_every: int = 200
    seed: int = 0
    device: str | None = None  # None: cuda when available

    def __post_init__(self) -> None:
        for name in ("image_size", "steps", "batch_size", "checkpoint_every", "behaviour_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"ImagePretrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0 or self.lr <= 0 or self.behaviour_weight < 0:
            raise ValueError("ImagePretrainConfig: temperature and lr must be > 0, behaviour_weight >= 0")

    def backbone_config(self) -> Any:
        """The transformers config of the backbone (3-channel input at ``image_size``)."""
        from transformers import AutoConfig

        kwargs = {**DEFAULT_BACKBONES.get(self.backbone, {}), **self.backbone_kwargs}
        if self.backbone == "vit":
            kwargs.setdefault("image_size", self.image_size)
            kwargs.setdefault("patch_size", 8)
        try:
            return AutoConfig.for_model(self.backbone, num_channels=3, **kwargs)
        except ValueError as exc:
            raise ValueError(f"ImagePretrainConfig.backbone: {exc}") from None


class ItemImageEncoder(nn.Module):
    """Backbone + projection into the text-embedding space; ``encode(paths)`` makes it an image encoder."""

    def __init__(
        self,
        backbone_config: Any,
        embed_dim: int,
        image_size: int,
        temperature: float = 0.07,
        device: str | None = None,
        batch_size: int = 64,
    ):
        from transformers import AutoModel

        super().__init__()
        self.backbone = AutoModel.from_config(backbone_config)
        self.image_size = image_size
        self.batch_size = batch_size
        with torch.no_grad():
            feature_dim = self.features(torch.zeros(1, 3, image_size, image_size, dtype=torch.uint8)).shape[1]
        self.projection = nn.Linear(feature_dim, embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))
        self.to(torch_device(device))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def identity(self) -> str:
        """Names these weights for the image-embedding cache (changes whenever training changes them)."""
        return f"{type(self).__name__}|{self.image_size}|{weights_digest(self)}"

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of uint8 ``(n, 3, H, W)`` images."""
        out = self.backbone(pixel_values=pixels.to(self.device).float().div(127.5).sub(1.0))
        pooled = out.pooler_output if out.pooler_output is not None else out.last_hidden_state.mean(1)
        return pooled.flatten(1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.projection(self.features(pixels))

    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=100.0)

    def encode(self, paths: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings of image files; an unreadable one is a :class:`DataFormatError`."""
        self.eval()
        out = []
        for start in range(0, len(paths), self.batch_size):
            batch = []
            for path in paths[start : start + self.batch_size]:
                try:
                    batch.append(torch.from_numpy(load_image(path, self.image_size)))
                except (OSError, ValueError, SyntaxError) as exc:
                    raise DataFormatError(f"cannot read image: {exc}", path) from None
            with torch.inference_mode():
                out.append(self(torch.stack(batch)).float().cpu().numpy())
        return l2_normalize(np.concatenate(out))

    def save_pretrained(
        self, directory: str | Path, pretrain_config: ImagePretrainConfig | None = None
    ) -> Path:
        """``config.json`` (backbone config, sizes, training config) + ``model.safetensors``, atomically."""
        directory = Path(directory)
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "backbone": self.backbone.config.to_dict(),
            "embed_dim": self.projection.out_features,
            "image_size": self.image_size,
            "pretrain": asdict(pretrain_config) if pretrain_config else None,
        }
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_write(directory / WEIGHTS_NAME, mode="wb") as fh:
            fh.write(save(tensors, metadata={"format": "pt"}))
        atomic_write_json(directory / CONFIG_NAME, meta)
        return directory

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, device: str | None = None, batch_size: int = 64
    ) -> ItemImageEncoder:
        from transformers import AutoConfig

        directory = Path(directory)
        if not is_item_image_encoder(directory):
            raise FileNotFoundError(f"{directory / CONFIG_NAME}: not a saved genrec image encoder")
        meta = read_json(directory / CONFIG_NAME)
        if meta.get("version") != FORMAT_VERSION:
            raise CheckpointMismatchError(
                f"{directory / CONFIG_NAME}: unknown version {meta.get('version')!r} (reads {FORMAT_VERSION})"
            )
        try:
            backbone = dict(meta["backbone"])
            backbone_config = AutoConfig.for_model(backbone.pop("model_type"), **backbone)
            model = cls(backbone_config, int(meta["embed_dim"]), int(meta["image_size"]), device="cpu")
        except KeyError as exc:
            raise DataFormatError(f"missing field {exc.args[0]!r}", directory / CONFIG_NAME) from None
        try:
            model.load_state_dict(load_file(directory / WEIGHTS_NAME))
        except RuntimeError as exc:
            raise CheckpointMismatchError(
                f"{directory / WEIGHTS_NAME}: weights do not match config: {exc}"
            ) from exc
        model.batch_size = batch_size
        return model.to(torch_device(device)).eval()


def is_item_image_encoder(directory: str | Path) -> bool:
    """Whether ``directory`` holds an encoder saved by :meth:`ItemImageEncoder.save_pretrained`."""
    path = Path(directory) / CONFIG_NAME
    return path.is_file() and read_json(path).get("format") == FORMAT


def _augment(pixels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 1/8 of the side (reflect-padded crop)."""
    n, _, h, w = pixels.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], pixels.flip(3), pixels).float()
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=gen).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)]).to(torch.uint8)


def pretrain_image_encoder(
    catalog: Catalog,
    text_embeddings: np.ndarray,
    config: ImagePretrainConfig | None = None,
    output_dir: str | Path | None = None,
    train_sequences: Sequence[np.ndarray] | None = None,
    exclude_items: np.ndarray | None = None,
    show_progress: bool = True,
) -> ItemImageEncoder:
    """Train an :class:`ItemImageEncoder` on the catalog's images against ``text_embeddings`` (frozen).

    Items without a readable image are skipped and counted; ``exclude_items`` (a boolean mask, e.g.
    held-out cold items) never enter training. ``train_sequences`` supply behaviour positives when
    ``config.behaviour_weight > 0``. With ``output_dir`` the training state is checkpointed there (a
    rerun resumes; a different config fails clearly) and the final encoder is saved there.
    """
    config = config or ImagePretrainConfig()
    text = torch.from_numpy(l2_normalize(text_embeddings))
    if len(text) != len(catalog):
        raise ValueError(f"{len(text)} text embeddings for {len(catalog)} catalog items")
    images = load_item_images(catalog, config.image_size, progress=show_progress)
    allowed = images.has_image.copy()
    if exclude_items is not None:
        allowed &= ~np.asarray(exclude_items, dtype=bool)
    items = torch.from_numpy(np.flatnonzero(allowed))
    if len(items) < 2:
        raise ValueError(f"{len(items)} items with a readable, non-excluded image; training needs at least 2")
    row_of = torch.from_numpy(images.row_of)
    pairs = None
    if config.behaviour_weight > 0:
        if train_sequences is None:
            raise ValueError("ImagePretrainConfig.behaviour_weight > 0 needs train_sequences")
        pairs = torch.from_numpy(
            cooccurrence_pairs(train_sequences, config.behaviour_window, exclude=~allowed)
        )
        if len(pairs) == 0:
            raise ValueError("no co-occurring pairs of items with images in train_sequences")
    torch.manual_seed(config.seed)
    model = ItemImageEncoder(
        config.backbone_config(), text.shape[1], config.image_size, config.temperature, device=config.device
    )
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    resume_key = {k: v for k, v in asdict(config).items() if k not in _RESUME_FREE}
    parts = {"modules": {"model": model}, "optimizers": {"optimizer": opt}, "generators": {"data": gen}}
    found = latest_checkpoint(output_dir) if output_dir is not None else None
    start = load_checkpoint(found, **parts, resume_key=resume_key).step if found is not None else 0
    batch = min(config.batch_size, len(items))

    def embed(item_idx: torch.Tensor) -> torch.Tensor:
        pixels = images.pixels[row_of[item_idx]]
        return model(_augment(pixels, gen) if config.augment else pixels)

    model.train()
    bar = tqdm(
        range(start, config.steps),
        initial=start,
        total=config.steps,
        desc="image pretraining",
        disable=not show_progress,
    )
    for step in bar:
        idx = items[torch.randperm(len(items), generator=gen)[:batch]]  # no repeats: no false negatives
        loss = info_nce(embed(idx), text[idx].to(model.device), model.logit_scale())
        if pairs is not None:
            pick = pairs[torch.randint(len(pairs), (batch,), generator=gen)]
            behaviour = info_nce(embed(pick[:, 0]), embed(pick[:, 1]), model.logit_scale())
            loss = loss + config.behaviour_weight * behaviour
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}", scale=f"{model.logit_scale().item():.1f}")
        if output_dir is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            save_checkpoint(output_dir, step + 1, **parts, resume_key=resume_key, keep=1)
    model.eval()
    if output_dir is not None:
        model.save_pretrained(output_dir, config)
        logger.info("image encoder saved to %s", output_dir)
    return model
