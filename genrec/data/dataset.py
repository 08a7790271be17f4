"""The one in-memory representation every loader produces.

A :class:`Catalog` holds items with dense indices ``0..n-1``; a :class:`SequenceDataset` holds
chronologically ordered user sequences over those indices, and the leave-one-out split:
the last item is the test target, the second-to-last the validation target, the rest is training.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genrec.errors import DataFormatError, UnknownItemError

# Text fields that item templates know about; loaders may add others.
TEXT_FIELDS = ("brand", "categories", "price", "description")

MIN_SEQUENCE_LENGTH = 3  # leave-one-out needs one train, one valid and one test item


@dataclass
class Item:
    """One catalog item. ``id`` is the source's own id (ASIN, MovieID, ...) as a string."""

    id: str
    title: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    image: str | None = None

    @property
    def categories(self) -> list[str]:
        cats = self.fields.get("categories") or []
        return [cats] if isinstance(cats, str) else list(cats)


class Catalog(Sequence[Item]):
    """Items in a fixed order; ``index_of`` maps source ids to dense indices."""

    def __init__(self, items: Iterable[Item], source: str | None = None):
        self.items: list[Item] = list(items)
        self.source = source
        self._index: dict[str, int] = {}
        for i, item in enumerate(self.items):
            if not isinstance(item.id, str):
                raise DataFormatError(f"item id must be a string, got {type(item.id).__name__}", source)
            if item.id in self._index:
                raise DataFormatError(f"duplicate item id {item.id!r}", source)
            self._index[item.id] = i

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):  # type: ignore[override]
        return self.items[i]

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    @property
    def titles(self) -> list[str]:
        return [item.title for item in self.items]

    def index_of(self, item_id: str, context: str = "") -> int:
        try:
            return self._index[item_id]
        except KeyError:
            raise UnknownItemError(item_id, context or (self.source or "")) from None

    def indices_of(self, item_ids: Iterable[str], context: str = "") -> np.ndarray:
        return np.fromiter((self.index_of(i, context) for i in item_ids), dtype=np.int64)

    def fingerprint(self) -> str:
        """Stable hash of the id list; saved artifacts store it to detect a mismatched catalog."""
        import hashlib

        h = hashlib.sha256()
        for item_id in self.ids:
            h.update(item_id.encode("utf-8"))
            h.update(b"\0")
        return h.hexdigest()[:16]


@dataclass
class SplitExamples:
    """Histories (variable length, dense indices) with one target each."""

    users: list[str]
    histories: list[np.ndarray]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, indices: Sequence[int] | np.ndarray) -> SplitExamples:
        """The examples at ``indices``, in that order."""
        return SplitExamples(
            [self.users[i] for i in indices], [self.histories[i] for i in indices], self.targets[indices]
        )


class SequenceDataset:
    """A catalog plus chronological user sequences, with the leave-one-out split."""

    def __init__(
        self,
        name: str,
        catalog: Catalog,
        users: Sequence[str],
        sequences: Sequence[Sequence[int] | np.ndarray],
        synthetic: bool = False,
        source: str | None = None,
    ):
        if len(users) != len(sequences):
            raise ValueError(f"{len(users)} users but {len(sequences)} sequences")
        self.name = name
        self.catalog = catalog
        self.users = list(users)
        self.sequences = [np.asarray(s, dtype=np.int64) for s in sequences]
        self.synthetic = synthetic
        self.source = source
        if len(set(self.users)) != len(self.users):
            seen: set[str] = set()
            dup = next(u for u in self.users if u in seen or seen.add(u))  # type: ignore[func-returns-value]
            raise DataFormatError(f"duplicate user id {dup!r}", source)
        n = len(catalog)
        for user, seq in zip(self.users, self.sequences):
            if len(seq) < MIN_SEQUENCE_LENGTH:
                raise DataFormatError(
                    f"user {user!r} has {len(seq)} interactions; "
                    f"leave-one-out needs >= {MIN_SEQUENCE_LENGTH}",
                    source,
                )
            if seq.min() < 0 or seq.max() >= n:
                raise DataFormatError(f"user {user!r} has an item index outside the catalog", source)

    # -- sizes -----------------------------------------------------------------------------------
    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.catalog)

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def __repr__(self) -> str:
        tag = ", synthetic" if self.synthetic else ""
        return (
            f"SequenceDataset({self.name!r}{tag}: {self.num_users} users, {self.num_items} items, "
            f"{self.num_interactions} interactions)"
        )

    # -- leave-one-out split ---------------------------------------------------------------------
    def train_sequences(self) -> list[np.ndarray]:
        """Each user's sequence without the validation and test items."""
        return [s[:-2] for s in self.sequences]

    def valid_examples(self) -> SplitExamples:
        histories = [s[:-2] for s in self.sequences]
        return SplitExamples(self.users, histories, np.array([s[-2] for s in self.sequences], dtype=np.int64))

    def test_examples(self) -> SplitExamples:
        histories = [s[:-1] for s in self.sequences]
        return SplitExamples(self.users, histories, np.array([s[-1] for s in self.sequences], dtype=np.int64))

    def examples(self, split: str) -> SplitExamples:
        if split == "valid":
            return self.valid_examples()
        if split == "test":
            return self.test_examples()
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")

    def subset(self, user_indices: Sequence[int], name: str | None = None) -> SequenceDataset:
        """Same catalog, a subset of users (for CPU-budget experiments on a stated user subset)."""
        return SequenceDataset(
            name or f"{self.name}[{len(user_indices)} users]",
            self.catalog,
            [self.users[i] for i in user_indices],
            [self.sequences[i] for i in user_indices],
            synthetic=self.synthetic,
            source=self.source,
        )

    def without_last_training_item(self, user_indices: Sequence[int] | np.ndarray) -> SequenceDataset:
        """The same users and split targets, but these users' last training item left out of training.

        Validating such a user on the original history then asks, as the test split does, for the item after
        one the model never trained on in that context (validating on training sequences rewards memorising
        them). Users with a single training item keep it.
        """
        sequences = list(self.sequences)
        for i in user_indices:
            if len(sequences[i]) > MIN_SEQUENCE_LENGTH:
                sequences[i] = np.delete(sequences[i], -3)
        return SequenceDataset(
            self.name, self.catalog, self.users, sequences, synthetic=self.synthetic, source=self.source
        )

    def item_popularity(self, split: str = "train") -> np.ndarray:
        """Interaction counts per item over the training part (no leakage of valid/test targets)."""
        seqs = self.train_sequences() if split == "train" else self.sequences
        return np.bincount(np.concatenate(seqs), minlength=self.num_items)


def build_dataset(
    name: str,
    catalog: Catalog,
    user_item_ids: Iterable[tuple[str, Sequence[str]]],
    synthetic: bool = False,
    source: str | None = None,
    drop_short: bool = True,
) -> SequenceDataset:
    """Map ``(user, [item ids...])`` pairs onto the catalog. Unknown ids raise; short users are dropped."""
    from genrec.utils.runtime import get_logger

    users, seqs, dropped = [], [], 0
    for user, item_ids in user_item_ids:
        idx = catalog.indices_of(item_ids, context=f"{source or name}, user {user!r}")
        if len(idx) < MIN_SEQUENCE_LENGTH and drop_short:
            dropped += 1
            continue
        users.append(user)
        seqs.append(idx)
    if dropped:
        get_logger(__name__).warning(
            "%s: dropped %d users with fewer than %d interactions", name, dropped, MIN_SEQUENCE_LENGTH
        )
    return SequenceDataset(name, catalog, users, seqs, synthetic=synthetic, source=source)
