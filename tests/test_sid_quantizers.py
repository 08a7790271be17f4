"""RQ-KMeans / RQ-VAE quantizers, de-dup and diagnostics on tiny hand-built inputs."""

from __future__ import annotations

import numpy as np
import pytest

from genrec.sid import (
    RQVAE,
    ResidualKMeans,
    RQKMeansConfig,
    RQVAEConfig,
    balanced_last_level,
    build_semantic_ids,
    code_diagnostics,
    dedup_index,
    level_usage,
)
from genrec.sid.kmeans import kmeans


def clusters(n_clusters: int = 4, per: int = 20, dim: int = 8, spread: float = 0.01, seed: int = 0):
    """Points around far-apart one-hot centres; labels say which centre each point came from."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim, dtype=np.float32)[:n_clusters] * 10
    labels = np.repeat(np.arange(n_clusters), per)
    x = centres[labels] + spread * rng.standard_normal((len(labels), dim)).astype(np.float32)
    return x, labels


def same_partition(codes: np.ndarray, labels: np.ndarray) -> bool:
    """True when codes and labels induce the same grouping (codes may be any permutation of labels)."""
    pairs = set(zip(codes.tolist(), labels.tolist()))
    return len(pairs) == len(set(codes.tolist())) == len(set(labels.tolist()))


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_separated_clusters_get_distinct_first_level_codes(backend):
    x, labels = clusters()
    q = ResidualKMeans.fit(x, RQKMeansConfig(levels=2, codebook_size=4, backend=backend), show_progress=False)
    codes = q.encode(x)
    assert codes.shape == (len(x), 2)
    assert same_partition(codes[:, 0], labels)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_kmeans_is_deterministic_for_a_seed(backend):
    x, _ = clusters(n_clusters=6, per=10, spread=1.0)
    a = kmeans(x, 5, seed=3, backend=backend)
    b = kmeans(x, 5, seed=3, backend=backend)
    np.testing.assert_array_equal(a, b)


def test_kmeans_needs_enough_points():
    with pytest.raises(ValueError, match="at least 8 points"):
        kmeans(np.zeros((3, 2), np.float32), 8)


def test_second_level_quantizes_the_residual():
    # Four clusters, each split into two sub-clusters along another axis: level 2 must pick the side.
    x, labels = clusters(n_clusters=4, per=20, spread=0.001)
    side = np.tile(np.repeat([0, 1], 10), 4)
    x = x + np.eye(8, dtype=np.float32)[7] * np.where(side == 1, 1.0, -1.0)[:, None]
    q = ResidualKMeans.fit(x, RQKMeansConfig(levels=2, codebook_size=[4, 2]), show_progress=False)
    codes = q.encode(x)
    assert same_partition(codes[:, 0], labels)
    assert same_partition(codes[:, 1], side)


def test_dedup_index_known_answer():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 0], [3, 3]])
    np.testing.assert_array_equal(dedup_index(codes), [0, 0, 1, 2, 1, 0])


def test_code_diagnostics_on_crafted_codes():
    codes = np.array([[0, 0], [0, 0], [0, 0], [1, 1], [1, 2], [2, 3]])
    d = code_diagnostics(codes, [4, 4])
    assert d["collision_rate"] == pytest.approx(3 / 6)
    assert d["largest_group"] == 3
    assert d["num_unique_codes"] == 4
    assert d["group_size_distribution"] == {1: 3, 3: 1}
    assert d["code_length_distribution"] == {2: 3, 3: 3}
    assert d["per_level"][0]["used"] == 3 and d["per_level"][0]["utilization"] == pytest.approx(0.75)
    assert d["per_level"][1]["used"] == 4


def test_level_usage_perplexity():
    assert level_usage(np.arange(8), 8)["perplexity"] == pytest.approx(8.0)
    assert level_usage(np.zeros(10, dtype=int), 8)["perplexity"] == pytest.approx(1.0)
    assert level_usage(np.array([0, 0, 1, 1]), 16)["utilization"] == pytest.approx(2 / 16)


def test_balanced_last_level_separates_a_collision_group():
    codebook = np.array([[0.0], [1.0], [2.0], [3.0]], dtype=np.float32)
    residual = np.array([[0.9], [1.1], [1.0], [2.9]], dtype=np.float32)
    codes = np.array([[0, 1], [0, 1], [0, 1], [1, 3]])  # three items collide on (0, 1)
    out = balanced_last_level(codes, residual, codebook)
    assert len(set(map(tuple, out[:3]))) == 3  # now distinct
    assert out[2, 1] == 1  # the item closest to codeword 1 keeps it
    np.testing.assert_array_equal(out[:, 0], codes[:, 0])
    np.testing.assert_array_equal(out[3], codes[3])  # no collision: untouched


def test_balanced_last_level_removes_collisions_when_groups_fit():
    # 4 clusters of 6 items; the last level has 8 codes, so every prefix group can be made collision-free.
    x, _ = clusters(n_clusters=4, per=6, spread=0.5, dim=8)
    plain = build_semantic_ids(x, levels=2, codebook_size=[4, 8], show_progress=False)
    balanced = build_semantic_ids(
        x, levels=2, codebook_size=[4, 8], balanced_last_level=True, show_progress=False
    )
    assert plain.diagnostics["collision_rate"] > 0
    assert balanced.diagnostics["before_balancing"]["collision_rate"] == plain.diagnostics["collision_rate"]
    assert balanced.diagnostics["collision_rate"] == 0
    assert balanced.codebook_sizes[-1] == 1  # the de-dup level is all zeros
    np.testing.assert_array_equal(balanced.codes[:, 0], plain.codes[:, 0])


@pytest.mark.parametrize("method", ["rqkmeans", "rqvae"])
def test_build_is_collision_free_after_dedup_and_deterministic(method):
    x, _ = clusters(n_clusters=4, per=16, spread=0.3)
    kw = {"epochs": 3, "batch_size": 32, "hidden_dims": [16], "latent_dim": 4} if method == "rqvae" else {}
    a = build_semantic_ids(x, method=method, levels=2, codebook_size=4, seed=1, show_progress=False, **kw)
    b = build_semantic_ids(x, method=method, levels=2, codebook_size=4, seed=1, show_progress=False, **kw)
    np.testing.assert_array_equal(a.codes, b.codes)
    assert a.codes.shape == (len(x), 3)
    assert len(np.unique(a.codes, axis=0)) == len(x)
    assert a.codebook_sizes[-1] == a.diagnostics["largest_group"]
    assert sum(a.diagnostics["dedup_distribution"].values()) == len(x)


def test_build_rejects_bad_input():
    with pytest.raises(ValueError, match="method"):
        build_semantic_ids(np.zeros((4, 2)), method="vq")
    with pytest.raises(ValueError, match="NaN"):
        build_semantic_ids(np.full((4, 2), np.nan), codebook_size=2)
    with pytest.raises(TypeError, match="unknown option"):
        build_semantic_ids(np.zeros((4, 2)), codebook_size=2, epochs=3)  # an RQ-VAE option on rqkmeans


def test_rqvae_learns_and_keeps_clusters_apart():
    x, labels = clusters(n_clusters=4, per=32, spread=0.05, dim=8)
    config = RQVAEConfig(
        levels=2,
        codebook_size=4,
        hidden_dims=[32],
        latent_dim=4,
        epochs=30,
        batch_size=64,
        lr=3e-3,
        eval_every=5,
    )
    q = RQVAE.fit(x, config, show_progress=False)
    first, last = q.history[0], q.history[-1]
    assert last["recon"] < first["recon"]
    evaluated = {h["epoch"]: h["collision_rate"] for h in q.history if "collision_rate" in h}
    assert sorted(evaluated) == [4, 9, 14, 19, 24, 29]
    assert evaluated[q.kept_epoch] == min(evaluated.values())  # the best checkpoint is the one kept
    assert same_partition(q.encode(x)[:, 0], labels)
    assert q.reconstruct(x).shape == x.shape


def test_rqvae_resume_continues_where_an_interrupted_run_stopped(tmp_path, monkeypatch):
    import genrec.sid.rqvae as rqvae
    from genrec.errors import CheckpointMismatchError

    x, _ = clusters(n_clusters=4, per=32, spread=0.05, dim=8)
    base = dict(
        levels=2, codebook_size=4, hidden_dims=[32], latent_dim=4, batch_size=64, lr=3e-3, eval_every=2
    )
    straight = RQVAE.fit(x, RQVAEConfig(epochs=6, **base), show_progress=False)
    ckpt = str(tmp_path / "ckpt")
    save = rqvae.save_checkpoint

    def save_then_die(out, step, **kw):
        save(out, step, **kw)
        if step == 3:
            raise KeyboardInterrupt  # killed right after the third epoch's checkpoint

    monkeypatch.setattr(rqvae, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        RQVAE.fit(x, RQVAEConfig(epochs=6, checkpoint_dir=ckpt, **base), show_progress=False)
    monkeypatch.setattr(rqvae, "save_checkpoint", save)
    resumed = RQVAE.fit(x, RQVAEConfig(epochs=6, checkpoint_dir=ckpt, **base), show_progress=False)
    assert [h["epoch"] for h in resumed.history] == list(range(6))
    assert resumed.kept_epoch == straight.kept_epoch
    np.testing.assert_array_equal(resumed.encode(x), straight.encode(x))
    with pytest.raises(CheckpointMismatchError, match="lr"):
        RQVAE.fit(x, RQVAEConfig(epochs=6, checkpoint_dir=ckpt, **{**base, "lr": 1e-2}), show_progress=False)
