"""Cold-start admission: recommending items that no training sequence contained.

A generative recommender never writes the full semantic ID of an item it has not trained on: the last
levels of a new item's code follow a prefix the model has never seen completed that way. TIGER (Rajput et
al., 2023, section 4.3) admits such items through the part of the code the model does know: an unseen item
whose first-level code the model rates likely for this user is a candidate. Here a cold item ``c`` scores

    log P(first SID token of c | history) + similarity_weight * cos(history, c) + bonus

(the cosine between the mean content embedding of the history and ``c``'s content embedding, which breaks
the ties between cold items sharing a first-level code), and at most ``max_slots`` cold items replace the
lowest-scored beam results they outscore. ``bonus`` calibrates a one-token log-probability against the
beams' whole-code ones; all three settings are meant to be chosen on validation (:func:`choose_admission`:
the most cold-item recall that costs the lists as a whole at most a set share of their quality).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ColdAdmission:
    """How cold items enter a top-k list. ``max_slots=0`` admits none (the beams' list unchanged)."""

    bonus: float = 0.0
    similarity_weight: float = 0.0
    max_slots: int = 1

    def __post_init__(self) -> None:
        if self.max_slots < 0 or self.similarity_weight < 0:
            raise ValueError(f"need max_slots >= 0 and similarity_weight >= 0, got {self}")


@torch.no_grad()
def first_token_log_probs(
    model: torch.nn.Module, input_ids: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``(U, vocab)`` log-probabilities of the next token after each left-padded prompt (one forward pass;
    positions count real tokens only, as in :func:`~genrec.decoding.constrained_beam_search`)."""
    model.eval()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits[:, -1, :]
    return torch.log_softmax(logits.float(), dim=-1)


def cold_scores(cold_log_probs: np.ndarray, similarity: np.ndarray, admission: ColdAdmission) -> np.ndarray:
    """``(U, C)`` scores of ``C`` cold items (see the module docstring) from their first-level
    log-probabilities and content cosines, each ``(U, C)``."""
    return cold_log_probs + admission.similarity_weight * similarity + admission.bonus


def admit_cold_items(
    top: np.ndarray,
    scores: np.ndarray,
    cold_items: np.ndarray,
    cold_item_scores: np.ndarray,
    max_slots: int,
    exclude: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """The ``(U, k)`` lists after admitting cold items: the ``k`` best of the beams' items (``top`` with
    their ``scores``, best first) and at most ``max_slots`` cold items by ``cold_item_scores`` ``(U, C)``.
    A cold item already in a list, or in ``exclude[u]`` (e.g. the user's history), is not added again."""
    if max_slots == 0 or len(cold_items) == 0:
        return top.copy()
    users, k = top.shape
    slots = min(max_slots, k, len(cold_items))
    out = np.empty_like(top)
    for u in range(users):
        seen = set(top[u].tolist()) | (set(np.asarray(exclude[u]).tolist()) if exclude is not None else set())
        order = np.argsort(-cold_item_scores[u], kind="stable")
        candidates = [(float(cold_item_scores[u, j]), int(cold_items[j])) for j in order[: slots + len(seen)]]
        candidates = [c for c in candidates if c[1] not in seen][:slots]
        merged = sorted([*zip(scores[u].tolist(), top[u].tolist()), *candidates], key=lambda c: -c[0])
        out[u] = [item for _, item in merged[:k]]
    return out


def choose_admission(
    evaluate: Callable[[ColdAdmission], dict[str, float]],
    objective: str,
    guard: str,
    tolerance: float,
    bonuses: Sequence[float],
    similarity_weights: Sequence[float],
    max_slots: Sequence[int],
) -> tuple[ColdAdmission, dict[str, float], list[dict[str, float]]]:
    """The grid point with the highest ``objective`` (e.g. cold-item recall on validation) among those that
    keep ``guard`` (e.g. NDCG@10 over all validation users) within ``tolerance`` (relative) of admitting
    nothing. ``evaluate`` returns both metrics for a setting. Admitting nothing (``max_slots=0``) is always
    a candidate and wins ties. Returns the setting, its metrics and every point's."""
    nothing = ColdAdmission(max_slots=0)
    best, best_metrics = nothing, evaluate(nothing)
    floor = (1 - tolerance) * best_metrics[guard]
    grid = [{**asdict(nothing), **best_metrics}]
    for bonus, weight, slots in itertools.product(bonuses, similarity_weights, max_slots):
        admission = ColdAdmission(bonus, weight, slots)
        metrics = evaluate(admission)
        grid.append({**asdict(admission), **metrics})
        if metrics[guard] >= floor and metrics[objective] > best_metrics[objective]:
            best, best_metrics = admission, metrics
    return best, best_metrics, grid
