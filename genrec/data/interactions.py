"""From raw ``(user, item, time)`` events to chronological sequences: de-duplication, k-core, stable sort.

Shared by the raw Amazon, MovieLens and generic loaders so that every source is cleaned the same way.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from genrec.data.dataset import Catalog, SequenceDataset, build_dataset
from genrec.errors import UnknownItemError
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)

Event = tuple[str, str, float]  # (user, item, timestamp)


def deduplicate(events: Iterable[Event]) -> list[Event]:
    """Keep the earliest event of each repeated ``(user, item)`` pair (file order breaks time ties)."""
    first: dict[tuple[str, str], int] = {}
    kept: list[Event] = []
    for event in events:
        key = (event[0], event[1])
        j = first.get(key)
        if j is None:
            first[key] = len(kept)
            kept.append(event)
        elif event[2] < kept[j][2]:
            kept[j] = event
    return kept


def k_core(events: Sequence[Event], k: int) -> list[Event]:
    """Iteratively drop users and items with fewer than ``k`` events until every one has at least ``k``."""
    if k <= 1:
        return list(events)
    events = list(events)
    while True:
        users = Counter(e[0] for e in events)
        items = Counter(e[1] for e in events)
        kept = [e for e in events if users[e[0]] >= k and items[e[1]] >= k]
        if len(kept) == len(events):
            return kept
        events = kept


def chronological_sequences(events: Iterable[Event]) -> dict[str, list[str]]:
    """Per-user item lists sorted by time; the sort is stable, so ties keep file order."""
    per_user: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for user, item, t in events:
        per_user[user].append((t, item))
    return {u: [item for _, item in sorted(evs, key=lambda x: x[0])] for u, evs in per_user.items()}


def events_to_dataset(
    name: str,
    events: Sequence[Event],
    catalog: Catalog,
    k: int = 0,
    source: str | None = None,
) -> SequenceDataset:
    """De-duplicate, k-core, sort; then restrict the catalog to surviving items (catalog order kept)."""
    n_raw = len(events)
    events = k_core(deduplicate(events), k)
    sequences = chronological_sequences(events)
    used = {e[1] for e in events}
    catalog = Catalog([item for item in catalog if item.id in used], source=catalog.source)
    logger.info("%s: %d raw events -> %d after de-dup and %d-core", name, n_raw, len(events), k)
    return build_dataset(name, catalog, sorted(sequences.items(), key=_user_order), source=source)


def _user_order(pair: tuple[str, list[str]]) -> tuple[int, int | str]:
    # Numeric ids in numeric order ("2" before "10"), other ids alphabetically after them.
    user = pair[0]
    return (0, int(user)) if user.isdigit() else (1, user)


def check_known(catalog: Catalog, item: str, path: str | Path, line: int) -> None:
    if item not in catalog:
        raise UnknownItemError(item, f"{path}:{line}")


def rows_to_dataset(
    name: str,
    catalog: Catalog,
    rows: Sequence[tuple[int, str, list[str]]],
    path: str | Path,
    synthetic: bool = False,
) -> SequenceDataset:
    """Map ``(line, user, item ids)`` rows onto ``catalog``; an unknown id names the file and line."""
    for number, _, items in rows:
        for item in items:
            check_known(catalog, item, path, number)
    return build_dataset(
        name, catalog, ((u, items) for _, u, items in rows), synthetic=synthetic, source=str(path)
    )
