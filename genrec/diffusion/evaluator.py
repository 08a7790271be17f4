"""Evaluating personalized thumbnails in the feature space of an evaluator genrec trains itself.

No Inception network is available offline, so the evaluator is a small CNN trained to predict an
item's genres (multi-label) from its image, on training-split images only. Its penultimate features
define the space for the metrics:

* personalization AUC / win rate: a user's generated thumbnails should be closer to that user's
  held-out history images than other users' thumbnails are;
* genre alignment: the genre distribution the evaluator predicts on a user's thumbnails vs the
  genre distribution of the user's held-out history;
* evaluator Fréchet distance (``evaluator_fd``): Fréchet distance between feature Gaussians of
  generated and real images. Same formula as FID, different network: not comparable to FID;
  :func:`kernel_distance` is KID's formula in the same features;
* copy rate (memorisation guard) and item grounding accuracy (is a variant still its item?).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from tqdm.auto import tqdm


class GenreEvaluator(ModelMixin, ConfigMixin):
    """A small CNN: image in [-1, 1] -> ``feature_dim`` features -> one logit per genre."""

    @register_to_config
    def __init__(
        self, genres: Sequence[str], channels: Sequence[int] = (32, 64, 128, 128), feature_dim: int = 128
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.SiLU()]
            c_in = c
        self.backbone = nn.Sequential(
            *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, feature_dim), nn.SiLU()
        )
        self.head = nn.Linear(feature_dim, len(genres))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    @torch.no_grad()
    def features_and_probs(
        self, images: torch.Tensor, batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate features and genre probabilities, ``(N, feature_dim)`` and ``(N, G)``."""
        self.eval()
        feats, probs = [], []
        for start in range(0, len(images), batch_size):
            f = self.backbone(images[start : start + batch_size].float())
            feats.append(f.numpy())
            probs.append(torch.sigmoid(self.head(f)).numpy())
        return np.concatenate(feats), np.concatenate(probs)


def train_genre_evaluator(
    images: torch.Tensor,
    labels: np.ndarray,
    genres: Sequence[str],
    steps: int = 400,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    max_shift: int = 0,
    blur_prob: float = 0.0,
) -> GenreEvaluator:
    """Fit :class:`GenreEvaluator` with BCE on images in [-1, 1] (uint8 input is converted).

    Augmentation: horizontal flips, random cyclic shifts of up to ``max_shift`` pixels, and with
    probability ``blur_prob`` a batch downsampled 2x or 4x and back, so the features rest on colour and
    layout (what small VAEs and generators reproduce) rather than on fine texture alone.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = GenreEvaluator(list(genres))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    y_all = torch.as_tensor(labels, dtype=torch.float32)
    model.train()
    for _ in tqdm(range(steps), desc="evaluator", disable=not progress):
        idx = torch.from_numpy(rng.integers(0, len(images), batch_size))
        x = _as_float(images[idx])
        if rng.random() < 0.5:  # posters are not mirror-symmetric, but colour/layout cues are
            x = x.flip(-1)
        if max_shift:
            dy, dx = (int(d) for d in rng.integers(-max_shift, max_shift + 1, 2))
            x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
        if rng.random() < blur_prob:
            side = x.shape[-1]
            x = nn.functional.interpolate(x, size=side // int(rng.choice([2, 4])), mode="area")
            x = nn.functional.interpolate(x, size=side, mode="bilinear", align_corners=False)
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(127.5).sub(1.0) if x.dtype == torch.uint8 else x.float()


# -- metrics ----------------------------------------------------------------------------------------
def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney ROC AUC with ties counted half; NaN when one class is absent."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    all_scores = np.concatenate([pos, neg])[order]
    # average ranks for ties
    _, first, counts = np.unique(all_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    labels = np.asarray(labels).astype(bool)
    if not labels.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    hits = labels[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def multilabel_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Macro mAP and ROC AUC over genres present in ``labels``, and top-1 accuracy
    (the most probable genre is one of the item's genres)."""
    labels = np.asarray(labels).astype(bool)
    present = [g for g in range(labels.shape[1]) if 0 < labels[:, g].sum() < len(labels)]
    top1 = labels[np.arange(len(labels)), probs.argmax(1)]
    return {
        "mAP": float(np.mean([average_precision(probs[:, g], labels[:, g]) for g in present])),
        "AUC": float(np.mean([roc_auc(probs[:, g], labels[:, g]) for g in present])),
        "top1_accuracy": float(top1.mean()),
    }


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _unit(a) @ _unit(b).T


def personalization_scores(generated: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Does each user's generated centroid point at that user's own held-out history?

    ``generated[u]`` / ``reference[u]``: centroid features of user u's thumbnails / held-out history
    images (center both by the real-image mean first, so cosine measures direction, not the shared
    offset). ``auc``: for every reference u and every other user v, P(sim(gen_u, ref_u) >
    sim(gen_v, ref_u)), ties half. ``win_rate``: over unordered pairs {u, v}, how often the true
    matching scores higher than the swapped one. Both are 0.5 for thumbnails that ignore the user.

    The reference decides the question: centroids of the history the thumbnails were conditioned on
    give the *history* AUC (does the generator use its input?), centroids of the user's later posters
    the *future* AUC (does it predict taste beyond its input?). ``auc`` ranks images per reference; to
    rank references per image ("is u's image closer to u's history than to other users' histories?")
    swap the arguments, ``personalization_scores(reference, generated)``: that transposes the
    similarity matrix, leaves ``win_rate`` unchanged, and works the same in
    :func:`personalization_p_value`.
    """
    s = _similarity(generated, reference)
    iu, ju = np.triu_indices(len(s), 1)
    own = np.diag(s)
    true_pair = own[iu] + own[ju]
    swapped = s[iu, ju] + s[ju, iu]
    win = float(((true_pair > swapped) + 0.5 * (true_pair == swapped)).mean())
    return {"auc": _pairing_auc(s), "win_rate": win}


def personalization_p_value(
    generated: np.ndarray, reference: np.ndarray, num_permutations: int = 1000, seed: int = 0
) -> float:
    """One-sided permutation test of :func:`personalization_scores`' AUC: the share of random
    user-to-thumbnail pairings that score at least as high as the true one (with the usual +1 so it
    is never 0). Small values mean the personalization is not chance."""
    s = _similarity(generated, reference)
    observed = _pairing_auc(s)
    rng = np.random.default_rng(seed)
    # re-pairing users permutes the rows of the similarity matrix: no need to recompute it
    hits = sum(_pairing_auc(s[rng.permutation(len(s))]) >= observed for _ in range(num_permutations))
    return (1 + hits) / (1 + num_permutations)


def _similarity(generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``s[v, u]`` = cosine(generated_v, reference_u)."""
    s = _cosine_matrix(np.asarray(generated, dtype=np.float64), np.asarray(reference, dtype=np.float64))
    if len(s) < 2:
        raise ValueError("personalization needs at least two users")
    return s


def _pairing_auc(s: np.ndarray) -> float:
    """Per reference column u, P(s[u, u] > s[v, u]) over v != u, ties half."""
    own = np.diag(s)
    cmp = (own[None, :] > s) + 0.5 * (own[None, :] == s)
    return float(cmp[~np.eye(len(s), dtype=bool)].mean())


def genre_alignment(predicted: np.ndarray, preference: np.ndarray) -> dict[str, float]:
    """Mean cosine and Jensen-Shannon divergence (base 2, in [0, 1]) between per-user genre
    distributions predicted on thumbnails and the user's held-out history genre distribution."""
    p = np.asarray(predicted, dtype=np.float64)
    q = np.asarray(preference, dtype=np.float64)
    p = p / np.maximum(p.sum(1, keepdims=True), 1e-12)
    q = q / np.maximum(q.sum(1, keepdims=True), 1e-12)
    cos = np.sum(p * q, 1) / np.maximum(np.linalg.norm(p, axis=1) * np.linalg.norm(q, axis=1), 1e-12)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * np.log2(a / np.maximum(b, 1e-300)), 0.0).sum(1)

    js = 0.5 * kl(p, m) + 0.5 * kl(q, m)
    return {"cosine": float(cos.mean()), "js_divergence": float(js.mean())}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr(sqrt(A B)) = sum sqrt(eig(sqrt(A) B sqrt(A))), symmetric PSD so eigh is stable
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    tr_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt)


def kernel_distance(
    a: np.ndarray, b: np.ndarray, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Kernel distance (KID's formula, Binkowski et al. 2018) between two feature sets.

    Unbiased MMD^2 with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over
    ``num_subsets`` random subsets of ``min(subset_size, len(a), len(b))`` rows of each set. Unlike
    the Fréchet distance it is unbiased (no drift with sample size) and assumes no Gaussian, so it is
    the one to trust on a few hundred images. It runs in whatever features it is given; here, the
    genre evaluator's, not Inception's, so values are not comparable to published KID.
    Returns ``{"kid": mean, "kid_std": std over subsets}``; the mean can be slightly negative.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("kernel distance needs at least two samples in each set")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    mmd = np.empty(num_subsets)
    for i in range(num_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx, k_yy, k_xy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
        within = k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)  # i != j only: unbiased
        mmd[i] = within / (m * (m - 1)) - 2 * k_xy.mean()
    return {"kid": float(mmd.mean()), "kid_std": float(mmd.std())}


def _nearest_cosine_distance(
    x: np.ndarray, y: np.ndarray, allowed: Callable[[slice, np.ndarray], np.ndarray] | None = None
) -> np.ndarray:
    """For each row of ``x``, the cosine distance to its nearest row of ``y``, among those where
    ``allowed(rows, dist)`` is true when given; chunked so memory stays O(512 * len(y))."""
    out = np.empty(len(x))
    for start in range(0, len(x), 512):
        rows = slice(start, start + 512)
        dist = 1.0 - _cosine_matrix(x[rows], y)
        if allowed is not None:
            dist = np.where(allowed(rows, dist), dist, np.inf)
        out[rows] = dist.min(1, initial=np.inf)
    return out


def copy_rate(
    generated: np.ndarray,
    real: np.ndarray,
    real_labels: np.ndarray,
    quantile: float = 0.05,
    max_anchors: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Copy guard: the share of generated images closer to a real image than real images are to each
    other, so a generator that memorises its training posters cannot pass for a good one.

    ``threshold``: the ``quantile`` of the cosine distance from a real image to its nearest *distinct*
    real image of the same genre (sharing a label; duplicates at distance ~0 are not distinct), over
    at most ``max_anchors`` seeded real images. A generated image is a copy when its nearest real
    image (any genre) is closer than that. Nearest neighbours, not random same-genre pairs, because a
    fresh image from the real distribution lies nearer to its nearest real image than a typical pair
    does, so a pair-median threshold flags every good sample. A sample as novel as a real image is
    flagged with probability about ``quantile`` (a bit more: it sees all genres); held-out real
    images give the baseline.

    ``real_labels``: multi-hot ``(N, G)`` or integer ``(N,)`` genre labels of ``real``.
    """
    gen, real = np.asarray(generated, dtype=np.float64), np.asarray(real, dtype=np.float64)
    labels = np.asarray(real_labels)
    if labels.ndim == 1:  # integer labels -> one-hot
        labels = labels[:, None] == np.unique(labels)[None]
    labels = labels.astype(np.float32)
    anchors = np.random.default_rng(seed).permutation(len(real))[:max_anchors]

    def same_genre_distinct(rows: slice, dist: np.ndarray) -> np.ndarray:
        return (labels[anchors[rows]] @ labels.T > 0) & (dist > 1e-9)  # also drops the anchor itself

    nearest_real = _nearest_cosine_distance(real[anchors], real, same_genre_distinct)
    nearest_real = nearest_real[np.isfinite(nearest_real)]
    if len(nearest_real) == 0:
        raise ValueError("no real image has a distinct same-genre neighbour")
    threshold = float(np.quantile(nearest_real, quantile))
    rate = float((_nearest_cosine_distance(gen, real) < threshold).mean())
    return {"copy_rate": rate, "threshold": threshold}


def grounding_accuracy(variants: np.ndarray, own: np.ndarray, distractors: np.ndarray) -> float:
    """Item grounding as DiFashion measures it: is a generated variant of item X still recognisably X?

    ``variants`` ``(N, D)``: features of generated variants; ``own`` ``(N, D)``: features of each
    variant's item's real image; ``distractors`` ``(N, K, D)``: K other items' real images (see
    :func:`draw_distractors`). A hit is the own image being the variant's nearest (cosine) of the
    K + 1; ties share the hit (1 / number tied). Chance is 1 / (K + 1).
    """
    v, own, dis = (_unit(np.asarray(x, dtype=np.float64)) for x in (variants, own, distractors))
    s = np.einsum("nd,nkd->nk", v, np.concatenate([own[:, None], dis], 1))  # column 0: own image
    tie = np.abs(s - s[:, :1]) <= 1e-12  # equal images may differ in the last bits
    hit = ((s[:, 1:] < s[:, :1]) | tie[:, 1:]).all(1) / tie.sum(1)
    return float(hit.mean())


def draw_distractors(item_rows: np.ndarray, pool: np.ndarray, k: int = 4, seed: int = 0) -> np.ndarray:
    """``(N, k)`` distinct entries of ``pool`` (item ids or feature rows) per entry of ``item_rows``,
    never the entry itself, drawn with a seeded rng so grounding numbers are reproducible."""
    items, pool = np.asarray(item_rows), np.unique(pool)
    pos = np.searchsorted(pool, items)
    inside = pool[np.minimum(pos, len(pool) - 1)] == items
    size = len(pool) - inside  # candidates per row
    if (size < k).any():
        raise ValueError(f"pool too small to draw {k} distractors other than the item")
    rng = np.random.default_rng(seed)
    draws = np.floor(rng.random((len(items), k)) * size[:, None]).astype(np.int64)
    while True:  # redraw rows with a repeated distractor
        srt = np.sort(draws, 1)
        bad = (srt[:, 1:] == srt[:, :-1]).any(1)
        if not bad.any():
            break
        draws[bad] = np.floor(rng.random((bad.sum(), k)) * size[bad, None]).astype(np.int64)
    draws += inside[:, None] & (draws >= pos[:, None])  # skip over the item's own slot
    return pool[draws]
