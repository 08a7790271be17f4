"""Evaluating personalized thumbnails in the feature space of an evaluator genrec trains itself.

No Inception network is available offline, so the evaluator is a small CNN trained to predict an
item's genres (multi-label) from its image, on training-split images only. Its penultimate features
define the space for three metrics:

* personalization AUC / win rate: a user's generated thumbnails should be closer to that user's
  held-out history images than other users' thumbnails are;
* genre alignment: the genre distribution the evaluator predicts on a user's thumbnails vs the
  genre distribution of the user's held-out history;
* evaluator Fréchet distance (``evaluator_fd``): Fréchet distance between feature Gaussians of
  generated and real images. Same formula as FID, different network: not comparable to FID.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def _cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def personalization_scores(generated: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Does each user's generated centroid point at that user's own held-out history?

    ``generated[u]`` / ``reference[u]``: centroid features of user u's thumbnails / held-out history
    images (center both by the real-image mean first, so cosine measures direction, not the shared
    offset). ``auc``: for every reference u and every other user v, P(sim(gen_u, ref_u) >
    sim(gen_v, ref_u)), ties half. ``win_rate``: over unordered pairs {u, v}, how often the true
    matching scores higher than the swapped one. Both are 0.5 for thumbnails that ignore the user.
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
