"""Missing modalities, predicted from the ones an item has.

An item that no training sequence contains has no behaviour embedding (a zero row), and one without a poster
no image embedding. Fused semantic IDs would then code it from a concatenation whose missing block is zero,
which puts every such item near the codewords whose block happens to be small, not near the items it
resembles. Predicting the block from the item's other modalities (ridge regression fit on the items that
have all of them: content-to-collaborative mapping, as in cold-start work since DropoutNet and CB2CF) puts it
where similar items' behaviour is.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from genrec.embed.encoder import l2_normalize
from genrec.utils.runtime import get_logger

logger = get_logger(__name__)


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and intercept of ``y ~ x`` with an L2 penalty ``alpha`` on the weights."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc = x - x_mean
    gram = xc.T @ xc + alpha * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, xc.T @ (y - y_mean))
    return weights, y_mean - x_mean @ weights


def impute_missing_modalities(
    embeddings: Mapping[str, np.ndarray], alpha: float = 1.0, min_fit_items: int = 10
) -> dict[str, np.ndarray]:
    """Each modality's zero rows predicted from the item's other modalities, L2-normalised.

    The regression for modality ``m`` is fit on the items that have ``m`` and every other modality, and fills
    the items that lack ``m`` but have every other one; an item missing two modalities keeps its zero rows.
    Inputs are not modified.
    """
    present = {m: np.asarray(e).any(axis=1) for m, e in embeddings.items()}
    out = {m: np.array(e, dtype=np.float32) for m, e in embeddings.items()}  # copies: inputs stay as given
    for m, target in embeddings.items():
        others = [o for o in embeddings if o != m]
        if not others:
            continue
        sources = np.logical_and.reduce([present[o] for o in others])
        fill = ~present[m] & sources
        if not fill.any():
            continue
        fit = present[m] & sources
        if fit.sum() < min_fit_items:
            raise ValueError(
                f"cannot impute {int(fill.sum())} missing {m!r} rows: only {int(fit.sum())} items have "
                f"{m!r} and {others} (need {min_fit_items})"
            )
        x = np.hstack([np.asarray(embeddings[o], dtype=np.float64) for o in others])
        weights, intercept = ridge_fit(x[fit], np.asarray(target, dtype=np.float64)[fit], alpha)
        out[m][fill] = l2_normalize(x[fill] @ weights + intercept)
        logger.info("%d items without a %s embedding: predicted from %s", int(fill.sum()), m, others)
    return out
