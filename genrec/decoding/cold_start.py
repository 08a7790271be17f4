"""Cold-start admission: recommending items that no training sequence contained.

A generative recommender never writes the full semantic ID of an item it has not trained on: the last
levels of a new item's code follow a prefix the model has never seen completed that way. TIGER (Rajput et
al., 2023, section 4.3) admits such items through the part of the code the model does know: an unseen item
whose first-level code the model rates likely for this user is a candidate. Here a cold item ``c`` scores

    log P(first SID token of c | history) + similarity_weight * cos(history, c) + bonus

(the cosine between the mean content embedding of the history and ``c``'s content embedding, which breaks
the ties between cold items sharing a first-level code), plus, for a model with an item head
(:class:`~genrec.model.compact.SIDLlamaForCausalLM`), ``item_weight * log P_head(c | history)``: the head
scores every item from its codes' embeddings, so an unseen item gets a whole-code score on the same scale as
the warm ones. At most ``max_slots`` cold items replace the lowest-scored beam results they outscore.
``bonus`` calibrates a one-token log-probability against the beams' whole-code ones; the settings are meant
to be chosen on validation (:func:`choose_admission`: the most cold-item recall that costs the lists as a
whole at most a set share of their quality, or the least cost that reaches a target recall).
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
    item_weight: float = 0.0  # of the item head's log-probability (a model with an item head only)

    def __post_init__(self) -> None:
        if self.max_slots < 0 or self.similarity_weight < 0 or self.item_weight < 0:
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


def cold_scores(
    cold_log_probs: np.ndarray,
    similarity: np.ndarray,
    admission: ColdAdmission,
    head_log_probs: np.ndarray | None = None,
) -> np.ndarray:
    """``(U, C)`` scores of ``C`` cold items (see the module docstring) from their first-level
    log-probabilities, content cosines and, with an item head, its log-probabilities, each ``(U, C)``."""
    scores = cold_log_probs + admission.similarity_weight * similarity + admission.bonus
    if admission.item_weight:
        if head_log_probs is None:
            raise ValueError(f"{admission} weighs the item head's log-probabilities, but none were given")
        scores = scores + admission.item_weight * head_log_probs
    return scores


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
    A cold item already in a list, or in ``exclude[u]`` (e.g. the user's history), is not added again; on
    equal scores the beams' items come first. Vectorised over users: a validation grid calls it hundreds
    of times."""
    users, k = top.shape
    if max_slots == 0 or len(cold_items) == 0 or users == 0:
        return top.copy()
    slots = min(max_slots, k, len(cold_items))
    seen_users, seen_items = [np.repeat(np.arange(users), k)], [top.ravel()]
    if exclude is not None:
        seen_users.append(np.repeat(np.arange(users), [len(e) for e in exclude]))
        seen_items.append(np.concatenate([np.asarray(e, dtype=np.int64).ravel() for e in exclude]))
    seen_user, seen_item = np.concatenate(seen_users), np.concatenate(seen_items).astype(np.int64)
    column = np.full(max(int(seen_item.max(initial=0)), int(cold_items.max())) + 1, -1)
    column[cold_items] = np.arange(len(cold_items))
    seen_column = column[seen_item]
    known = seen_column >= 0
    candidate_scores = np.array(cold_item_scores, dtype=np.float64)
    candidate_scores[seen_user[known], seen_column[known]] = -np.inf
    picked = np.argsort(-candidate_scores, axis=1, kind="stable")[:, :slots]
    merged_scores = np.concatenate([scores, np.take_along_axis(candidate_scores, picked, 1)], axis=1)
    merged_items = np.concatenate([top, np.asarray(cold_items)[picked]], axis=1)
    best = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(merged_items, best, 1)


def choose_admission(
    evaluate: Callable[[ColdAdmission], dict[str, float]],
    objective: str,
    guard: str,
    tolerance: float,
    bonuses: Sequence[float],
    similarity_weights: Sequence[float],
    max_slots: Sequence[int],
    item_weights: Sequence[float] = (0.0,),
    target: float | None = None,
) -> tuple[ColdAdmission, dict[str, float], list[dict[str, float]]]:
    """The grid point with the highest ``objective`` (e.g. cold-item recall on validation) among those that
    keep ``guard`` (e.g. NDCG@10 over all validation users) within ``tolerance`` (relative) of admitting
    nothing. ``evaluate`` returns both metrics for a setting. Admitting nothing (``max_slots=0``) is always
    a candidate and wins ties.

    With a ``target`` objective (e.g. the cold-item recall a content-kNN recommender reaches on the same
    users), the cheapest point within the tolerance that reaches it wins instead (the highest ``guard``):
    as much cold recall as asked for, no more at the lists' expense. If none reaches it, the rule above.
    Returns the setting, its metrics and every point's."""
    nothing = ColdAdmission(max_slots=0)
    base = evaluate(nothing)
    floor = (1 - tolerance) * base[guard]
    points = [(nothing, base)]
    for bonus, weight, slots, item_weight in itertools.product(
        bonuses, similarity_weights, max_slots, item_weights
    ):
        admission = ColdAdmission(bonus, weight, slots, item_weight)
        points.append((admission, evaluate(admission)))
    grid = [{**asdict(a), **m} for a, m in points]
    allowed = [(a, m) for a, m in points if m[guard] >= floor]
    reaching = [] if target is None else [(a, m) for a, m in allowed if m[objective] >= target]
    if reaching:  # max() keeps the first of equals: grid order, nothing first
        best, best_metrics = max(reaching, key=lambda p: p[1][guard])
    else:
        best, best_metrics = max(allowed, key=lambda p: p[1][objective])
    return best, best_metrics, grid
