"""Several compact SID models over one catalog, each with its own codes, recommending as one (SID channels).

A model that takes a wrong first code rarely recovers (BARGE's "semantic drift"), and models on codes from
another k-means draw, or on the same codes under another schedule, go wrong for other users: on Beauty
validation, of the users either of two SID channels hit, 47% were hit by both. Merging their beams
(:func:`merge_beams`) recovers part of those misses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genrec.data.dataset import Catalog, SequenceDataset
from genrec.errors import CheckpointMismatchError
from genrec.model.compact import CompactRecommender, CompactTrainingConfig, recommend_merged, train_compact
from genrec.sid import load_or_build_semantic_ids
from genrec.utils import atomic_write_json, read_json

_CHANNELS = "channels.json"
_VALIDATION_FIELDS = ("eval_users", "eval_unseen_last", "eval_seed")  # what picks the held-out users


class MultiChannelRecommender:
    """Compact recommenders on one catalog whose beams are merged: ``recommend`` as for one model."""

    def __init__(self, channels: Sequence[CompactRecommender]):
        if not channels:
            raise ValueError("need at least one channel")
        channels = list(channels)
        for c, channel in enumerate(channels[1:], start=1):
            if channel.catalog_fingerprint != channels[0].catalog_fingerprint:
                raise CheckpointMismatchError(f"channel {c} was trained on another catalog than channel 0")
            if len(channel.item_token_ids) != len(channels[0].item_token_ids):
                raise CheckpointMismatchError(
                    f"channel {c} has {len(channel.item_token_ids)} items, channel 0 has "
                    f"{len(channels[0].item_token_ids)}"
                )
            if channel.model.has_item_head != channels[0].model.has_item_head:
                raise ValueError(f"channel {c} and channel 0 differ in having an item head")
        self.channels = channels

    def recommend(self, histories: Sequence[np.ndarray], **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of the union of the channels' beams, as :func:`merge_beams` ranks them; the arguments
        of :meth:`CompactRecommender.recommend`."""
        return recommend_merged(self.channels, histories, **kwargs)

    def num_parameters(self) -> int:
        return sum(channel.num_parameters() for channel in self.channels)

    def save_pretrained(self, directory: str | Path) -> None:
        """``channel-<c>/`` per channel (:meth:`CompactRecommender.save_pretrained`) and ``channels.json``."""
        directory = Path(directory)
        for c, channel in enumerate(self.channels):
            channel.save_pretrained(directory / f"channel-{c}")
        _write_channel_list(directory, [f"channel-{c}" for c in range(len(self.channels))])

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, catalog: Catalog | None = None
    ) -> MultiChannelRecommender:
        """A saved one, or a :func:`train_channels` output directory (its ``channels.json`` lists the
        channels' ``best`` folders)."""
        directory = Path(directory)
        if not (directory / _CHANNELS).is_file():
            raise FileNotFoundError(f"{directory}: no {_CHANNELS}; not a saved multi-channel recommender")
        names = read_json(directory / _CHANNELS)["channels"]
        return cls([CompactRecommender.from_pretrained(directory / name, catalog=catalog) for name in names])


def channel_configs(config: CompactTrainingConfig) -> list[CompactTrainingConfig]:
    """One training config per channel: ``config`` itself, then ``config`` with each of ``config.channels``.

    Channel ``c`` >= 1 trains in ``<output_dir>/channel-<c>``; each channel's codes go to its ``sid/``.
    Channels hold out the same validation users, or their merge would be validated on users some channel
    trained on.
    """
    configs = [config]
    for c, overrides in enumerate(config.channels, start=1):
        channel = config.with_overrides(overrides, f"channels[{c - 1}]")
        changed = [f for f in _VALIDATION_FIELDS if getattr(channel, f) != getattr(config, f)]
        if changed:
            raise ValueError(
                f"channels[{c - 1}] changes {changed}: every channel must hold out the same validation users"
            )
        folder = str(Path(config.output_dir) / f"channel-{c}")
        configs.append(dataclasses.replace(channel, output_dir=folder, channels=[]))
    return configs


def train_channels(dataset: SequenceDataset, config: CompactTrainingConfig) -> MultiChannelRecommender:
    """Build each channel's semantic IDs and train its model (:func:`train_compact`, resumable), in turn.

    ``config.output_dir`` then loads with :meth:`MultiChannelRecommender.from_pretrained`.
    """
    trained, folders = [], []
    out = Path(config.output_dir)
    for channel in channel_configs(config):
        sid = load_or_build_semantic_ids(dataset, Path(channel.output_dir) / "sid", channel.sid)
        tokens = [sid.item_tokens(i) for i in range(dataset.num_items)]
        trained.append(train_compact(dataset, tokens, channel))
        folders.append(str((Path(channel.output_dir) / "best").relative_to(out)))
    _write_channel_list(out, folders)
    return MultiChannelRecommender(trained)


def _write_channel_list(directory: Path, folders: list[str]) -> None:
    atomic_write_json(directory / _CHANNELS, {"channels": folders})
