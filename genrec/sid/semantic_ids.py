"""Semantic IDs: each item's tuple of codes, its tokens, lookups both ways, and save/load.

``codes`` always includes the final de-duplication level, so every row is unique and a code tuple
names exactly one item. Tokens are ``<{prefix}_{value}>`` with one letter per level
(``<a_12><b_201><c_7><d_0>``); a level's tokens are distinct from every other level's, which is
what lets a constrained decoder know which level it is generating.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genrec.data.dataset import Catalog, Item
from genrec.errors import CheckpointMismatchError, DataFormatError
from genrec.sid.collisions import dedup_index, group_codes
from genrec.sid.diagnostics import dedup_distribution
from genrec.sid.quantizer import Quantizer
from genrec.utils.io import atomic_write, atomic_write_json
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)

CONFIG_NAME = "sid_config.json"
WEIGHTS_NAME = "sid.safetensors"
FORMAT_VERSION = 1
_TOKEN = re.compile(r"<([a-z])_(\d+)>")


def quantizer_classes() -> dict[str, type[Quantizer]]:
    """Quantizer class of each saved ``method`` name."""
    from genrec.sid.multimodal import MultimodalQuantizer
    from genrec.sid.rqkmeans import ResidualKMeans
    from genrec.sid.rqvae import RQVAE

    return {cls.method: cls for cls in (ResidualKMeans, RQVAE, MultimodalQuantizer)}


def catalog_fingerprint(item_ids: Sequence[str]) -> str:
    return Catalog([Item(i) for i in item_ids]).fingerprint()


class SemanticIDs:
    """Unique per-item code tuples over ``len(codebook_sizes)`` levels (the last one is de-dup)."""

    def __init__(
        self,
        codes: np.ndarray,
        codebook_sizes: Sequence[int],
        item_ids: Sequence[str] | None = None,
        method: str = "custom",
        quantizer: Quantizer | None = None,
        diagnostics: dict[str, Any] | None = None,
        build_config: dict[str, Any] | None = None,
    ):
        codes = np.asarray(codes)
        if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be a 2-D integer array, got {codes.dtype} {codes.shape}")
        self.codes = codes.astype(np.int64)
        self.codebook_sizes = [int(s) for s in codebook_sizes]
        if len(self.codebook_sizes) != codes.shape[1]:
            raise ValueError(f"{len(self.codebook_sizes)} codebook sizes for {codes.shape[1]} code levels")
        if len(self.codebook_sizes) > 26:
            raise ValueError("at most 26 levels (one token prefix letter per level)")
        if len(codes) and ((codes < 0).any() or (codes >= np.asarray(self.codebook_sizes)).any()):
            raise ValueError("codes must lie in [0, codebook_size) at every level")
        if item_ids is not None and len(item_ids) != len(codes):
            raise ValueError(f"{len(item_ids)} item ids for {len(codes)} code rows")
        self.item_ids = list(item_ids) if item_ids is not None else None
        self.method = method
        self.quantizer = quantizer
        self.diagnostics = diagnostics or {}
        self.build_config = build_config or {}
        self._keys = self._pack(self.codes)
        self._order = np.argsort(self._keys, kind="stable")
        if len(codes) > 1 and (np.diff(self._keys[self._order]) == 0).any():
            raise ValueError("codes are not unique: append a de-dup level (build_semantic_ids does)")

    # -- shape -----------------------------------------------------------------------------------
    @property
    def num_items(self) -> int:
        return len(self.codes)

    @property
    def num_levels(self) -> int:
        return self.codes.shape[1]

    def __len__(self) -> int:
        return self.num_items

    def __repr__(self) -> str:
        return f"SemanticIDs({self.method}: {self.num_items} items, codebook sizes {self.codebook_sizes})"

    # -- tokens ----------------------------------------------------------------------------------
    @property
    def level_prefixes(self) -> list[str]:
        return [chr(ord("a") + level) for level in range(self.num_levels)]

    def token(self, level: int, value: int) -> str:
        return f"<{self.level_prefixes[level]}_{int(value)}>"

    def item_tokens(self, index: int) -> list[str]:
        return [self.token(level, v) for level, v in enumerate(self.codes[index])]

    def all_tokens(self) -> list[str]:
        """Every token of every level (whole codebooks, used or not), level by level."""
        return [self.token(level, v) for level, size in enumerate(self.codebook_sizes) for v in range(size)]

    def parse_tokens(self, tokens: str | Sequence[str]) -> np.ndarray:
        """``"<a_1><b_2><c_3><d_0>"`` or a token list -> codes ``(num_levels,)``; strict about order/range."""
        text = tokens if isinstance(tokens, str) else "".join(tokens)
        found = _TOKEN.findall(text)
        if _TOKEN.sub("", text).strip() or len(found) != self.num_levels:
            example = "".join(self.token(level, 0) for level in range(self.num_levels))
            raise ValueError(f"expected {self.num_levels} semantic-ID tokens like {example}, got {text!r}")
        codes = np.empty(self.num_levels, dtype=np.int64)
        for level, (prefix, value) in enumerate(found):
            if prefix != self.level_prefixes[level]:
                expected = self.level_prefixes[level]
                raise ValueError(f"token {level} of {text!r} has prefix {prefix!r}, expected {expected!r}")
            if int(value) >= self.codebook_sizes[level]:
                raise ValueError(
                    f"code {value} out of range for level {prefix!r} (size {self.codebook_sizes[level]})"
                )
            codes[level] = int(value)
        return codes

    # -- lookups ---------------------------------------------------------------------------------
    def _pack(self, codes: np.ndarray) -> np.ndarray:
        """Mixed-radix integer key per row so lookups are one vectorised ``searchsorted``."""
        sizes = np.asarray(self.codebook_sizes, dtype=np.int64)
        if float(np.prod(sizes.astype(np.float64))) >= 2**62:
            raise ValueError(f"codebook sizes {self.codebook_sizes} are too large to pack into int64 keys")
        key = np.zeros(len(codes), dtype=np.int64)
        for level in range(codes.shape[1]):
            key = key * sizes[level] + codes[:, level]
        return key

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        """Item index of each code row ``(m, num_levels)``; ``-1`` where no item has that code."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim == 1:
            codes = codes[None]
        if codes.ndim != 2 or codes.shape[1] != self.num_levels:
            raise ValueError(f"lookup expects codes of shape (m, {self.num_levels}), got {codes.shape}")
        valid = ((codes >= 0) & (codes < np.asarray(self.codebook_sizes))).all(1)
        out = np.full(len(codes), -1, dtype=np.int64)
        if not valid.any() or self.num_items == 0:
            return out
        keys = self._pack(codes[valid])
        sorted_keys = self._keys[self._order]
        pos = np.clip(np.searchsorted(sorted_keys, keys), 0, len(sorted_keys) - 1)
        hit = sorted_keys[pos] == keys
        out[np.flatnonzero(valid)[hit]] = self._order[pos[hit]]
        return out

    def item_codes(self, indices: int | Sequence[int] | np.ndarray) -> np.ndarray:
        """Codes of the given item indices (the inverse of :meth:`lookup`)."""
        return self.codes[np.asarray(indices, dtype=np.int64)]

    def tokens_to_item(self, tokens: str | Sequence[str]) -> int:
        """Item index named by a token string, or ``-1`` when the code is valid but unassigned."""
        return int(self.lookup(self.parse_tokens(tokens)[None])[0])

    # -- cold start ------------------------------------------------------------------------------
    def encode_new(self, embeddings: np.ndarray) -> np.ndarray:
        """Codes for NEW items from their embeddings, without retraining.

        Each level takes the nearest codeword of the saved quantizer; the de-dup value continues
        after the largest one already used by that prefix (and by earlier new items), so the result
        never clashes with existing items or with each other. The de-dup value may exceed the current
        de-dup codebook; :meth:`extend` grows it.
        """
        if self.quantizer is None:
            raise ValueError("these semantic IDs carry no quantizer, so new items cannot be encoded")
        semantic = self.quantizer.encode(np.asarray(embeddings, dtype=np.float32))
        old_prefix = self.codes[:, :-1]
        both = np.concatenate([old_prefix, semantic])
        inverse, counts = group_codes(both)
        next_free = np.zeros(len(counts), dtype=np.int64)
        np.maximum.at(next_free, inverse[: len(old_prefix)], self.codes[:, -1] + 1)
        new_inverse = inverse[len(old_prefix) :]
        dedup = next_free[new_inverse] + dedup_index(semantic)
        return np.concatenate([semantic, dedup[:, None]], axis=1)

    def extend(self, new_item_ids: Sequence[str], embeddings: np.ndarray) -> SemanticIDs:
        """A new :class:`SemanticIDs` with the new items appended (catalog order: old items, then new)."""
        if self.item_ids is None:
            raise ValueError("extend needs semantic IDs built with item ids (pass catalog= to the builder)")
        clash = set(new_item_ids) & set(self.item_ids)
        if clash:
            raise ValueError(f"items already have semantic IDs: {sorted(clash)[:5]}")
        if len(new_item_ids) != len(embeddings):
            raise ValueError(f"{len(new_item_ids)} new item ids but {len(embeddings)} embeddings")
        new_codes = self.encode_new(embeddings)
        sizes = list(self.codebook_sizes)
        if len(new_codes) and new_codes[:, -1].max() >= sizes[-1]:
            sizes[-1] = int(new_codes[:, -1].max()) + 1
            logger.warning(
                "de-dup level grew to %d codes: add the new tokens to the language model's vocabulary",
                sizes[-1],
            )
        return SemanticIDs(
            np.concatenate([self.codes, new_codes]),
            sizes,
            item_ids=[*self.item_ids, *new_item_ids],
            method=self.method,
            quantizer=self.quantizer,
            diagnostics=self.diagnostics,
            build_config=self.build_config,
        )

    def dedup_distribution(self) -> dict[int, int]:
        return dedup_distribution(self.codes[:, -1])

    # -- save / load -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``sid_config.json`` and ``sid.safetensors`` (codes + quantizer state) into ``directory``."""
        from safetensors.numpy import save

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, np.ndarray] = {"codes": self.codes}
        quantizer_config = None
        if self.quantizer is not None:
            quantizer_config, qt = self.quantizer.state()
            tensors.update({f"quantizer.{k}": np.ascontiguousarray(v) for k, v in qt.items()})
        config = {
            "format": "genrec-semantic-ids",
            "version": FORMAT_VERSION,
            "method": self.method,
            "num_levels": self.num_levels,
            "codebook_sizes": self.codebook_sizes,
            "level_prefixes": self.level_prefixes,
            "num_items": self.num_items,
            "catalog_fingerprint": catalog_fingerprint(self.item_ids) if self.item_ids is not None else None,
            "item_ids": self.item_ids,
            "quantizer": quantizer_config,
            "build_config": self.build_config,
            "diagnostics": self.diagnostics,
        }
        with atomic_write(directory / WEIGHTS_NAME, mode="wb") as fh:
            fh.write(
                save(tensors, metadata={"format": "genrec-semantic-ids", "version": str(FORMAT_VERSION)})
            )
        atomic_write_json(directory / CONFIG_NAME, config)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, catalog: Catalog | None = None) -> SemanticIDs:
        """Load from :meth:`save_pretrained`'s folder; with ``catalog``, check it is the same item list."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing (not a saved SemanticIDs folder?)")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataFormatError(f"corrupted JSON: {exc}", config_path) from None
        if not isinstance(config, dict) or config.get("format") != "genrec-semantic-ids":
            raise DataFormatError("not a genrec semantic-IDs config (missing format field)", config_path)
        if config.get("version") != FORMAT_VERSION:
            raise CheckpointMismatchError(
                f"{config_path}: unknown semantic-IDs format version {config.get('version')!r} "
                f"(this genrec reads version {FORMAT_VERSION})"
            )
        try:
            tensors = load_file(str(weights_path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise DataFormatError(f"corrupted safetensors file: {exc}", weights_path) from None
        try:
            codes = tensors["codes"]
            sizes, method, item_ids = config["codebook_sizes"], config["method"], config["item_ids"]
        except KeyError as exc:
            raise DataFormatError(
                f"missing field {exc.args[0]!r}", weights_path if exc.args[0] == "codes" else config_path
            ) from None
        if item_ids is not None and catalog_fingerprint(item_ids) != config.get("catalog_fingerprint"):
            raise DataFormatError(
                "item_ids do not match catalog_fingerprint (edited or corrupted)", config_path
            )
        if catalog is not None:
            _check_catalog(config, catalog, directory)
        quantizer = None
        if config.get("quantizer") is not None:
            classes = quantizer_classes()
            if method not in classes:
                raise CheckpointMismatchError(
                    f"{config_path}: unknown method {method!r} (known: {sorted(classes)})"
                )
            prefix = "quantizer."
            qt = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                quantizer = classes[method].from_state(config["quantizer"], qt)
            except (KeyError, RuntimeError, ValueError, TypeError) as exc:
                raise DataFormatError(f"quantizer state does not load: {exc}", weights_path) from None
        try:
            return cls(
                codes,
                sizes,
                item_ids=item_ids,
                method=method,
                quantizer=quantizer,
                diagnostics=config.get("diagnostics"),
                build_config=config.get("build_config"),
            )
        except ValueError as exc:
            raise DataFormatError(str(exc), weights_path) from None


def _check_catalog(config: dict[str, Any], catalog: Catalog, directory: Path) -> None:
    item_ids = config["item_ids"]
    if item_ids is None:
        if config.get("num_items") != len(catalog):
            raise CheckpointMismatchError(
                f"{directory}: semantic IDs cover {config.get('num_items')} items, catalog has {len(catalog)}"
            )
        logger.warning(
            "%s: no item ids saved; only the item count was checked against the catalog", directory
        )
        return
    if config["catalog_fingerprint"] == catalog.fingerprint():
        return
    ids = catalog.ids
    first = next((i for i, (a, b) in enumerate(zip(item_ids, ids)) if a != b), min(len(ids), len(item_ids)))
    saved_id = item_ids[first] if first < len(item_ids) else "<end>"
    given_id = ids[first] if first < len(ids) else "<end>"
    detail = f"first difference at index {first}: saved {saved_id!r}, catalog {given_id!r}"
    raise CheckpointMismatchError(
        f"{directory}: semantic IDs were built for a different catalog ({len(item_ids)} items, fingerprint "
        f"{config['catalog_fingerprint']}) than the one given ({len(ids)} items, fingerprint "
        f"{catalog.fingerprint()}); {detail}"
    )
