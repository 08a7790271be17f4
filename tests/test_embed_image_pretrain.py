"""CLIP-style image-encoder pretraining: InfoNCE, co-occurrence pairs, training, resume, save/load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genrec.data.synthetic import make_synthetic
from genrec.embed import (
    BehaviourAlignConfig,
    ImagePretrainConfig,
    ItemImageEncoder,
    align_to_behaviour,
    cooccurrence_pairs,
    embed_item_images,
    info_nce,
    load_image_encoder,
    pretrain_image_encoder,
    project,
)
from genrec.errors import CheckpointMismatchError


def test_info_nce_known_answer_two_pairs():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # rows are normalised inside: scale does not matter
    # logits = I (cos 1 on the diagonal, 0 off it): each row's CE is log(1 + e^-1) in both directions.
    assert info_nce(a, a.clone(), 1.0).item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_info_nce_known_answer_three_pairs():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    r = 1 / math.sqrt(2)
    cos = [[1, r, 0], [0, r, 1], [r, 1, r]]  # cos[i][j] = <a_i, b_j> / (|a_i| |b_j|), by hand
    s = 2.0

    def ce(row, target):
        return -s * row[target] + math.log(sum(math.exp(s * v) for v in row))

    rows = sum(ce(cos[i], i) for i in range(3)) / 3
    cols = sum(ce([cos[j][i] for j in range(3)], i) for i in range(3)) / 3
    assert info_nce(a, b, s).item() == pytest.approx((rows + cols) / 2, abs=1e-5)
    assert info_nce(b, a, s).item() == pytest.approx((rows + cols) / 2, abs=1e-5)  # symmetric
    with pytest.raises(ValueError, match="one shape"):
        info_nce(a, b[:2], s)


def test_cooccurrence_pairs_window_and_exclusion():
    seqs = [np.array([0, 1, 2, 2]), np.array([3, 1])]
    assert cooccurrence_pairs(seqs).tolist() == [[0, 1], [1, 2], [3, 1]]  # (2, 2) is no pair
    assert cooccurrence_pairs(seqs, window=2).tolist() == [[0, 1], [1, 2], [0, 2], [1, 2], [3, 1]]
    exclude = np.zeros(4, dtype=bool)
    exclude[1] = True
    assert cooccurrence_pairs(seqs, exclude=exclude).tolist() == []


def test_behaviour_alignment_pulls_cooccurring_items_together():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    pairs = np.array([[i, i + 20] for i in range(20)] * 5)  # i and i + 20 always co-occur
    w = align_to_behaviour(
        x, pairs, BehaviourAlignConfig(steps=150, batch_size=20, lr=0.05), show_progress=False
    )
    before, after = project(x, np.eye(8)), project(x, w)
    cos_before = (before[:20] * before[20:]).sum(1).mean()
    cos_after = (after[:20] * after[20:]).sum(1).mean()
    assert cos_after > cos_before + 0.3


TINY = {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_synthetic(
        num_users=20,
        num_items=12,
        num_categories=3,
        max_length=8,
        image_dir=tmp_path_factory.mktemp("img"),
        image_size=32,
    )


def _config(steps: int, **kw) -> ImagePretrainConfig:
    kw = {"backbone_kwargs": TINY, **kw}
    return ImagePretrainConfig(
        image_size=32, steps=steps, batch_size=6, checkpoint_every=2, device="cpu", **kw
    )


def test_pretrain_saves_loads_and_resumes(toy, tmp_path, one_torch_thread):
    text = np.random.default_rng(0).standard_normal((len(toy.catalog), 8)).astype(np.float32)
    straight = pretrain_image_encoder(toy.catalog, text, _config(4), tmp_path / "a", show_progress=False)
    pretrain_image_encoder(toy.catalog, text, _config(2), tmp_path / "b", show_progress=False)
    resumed = pretrain_image_encoder(toy.catalog, text, _config(4), tmp_path / "b", show_progress=False)
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)  # interrupted + resumed == one straight run

    loaded = load_image_encoder(tmp_path / "a", device="cpu")
    assert isinstance(loaded, ItemImageEncoder) and loaded.identity == straight.identity
    paths = [item.image for item in toy.catalog][:5]
    emb = loaded.encode(paths)
    assert emb.shape == (5, 8)
    np.testing.assert_allclose(emb, straight.encode(paths), atol=1e-5)
    result = embed_item_images(toy.catalog, loaded, cache_dir=tmp_path / "cache")
    assert result.encoded == len(toy.catalog) and result.text_fallback == 0
    with pytest.raises(CheckpointMismatchError, match="lr"):
        pretrain_image_encoder(toy.catalog, text, _config(6, lr=0.1), tmp_path / "b", show_progress=False)


def test_pretrain_with_behaviour_positives_and_excluded_items(toy, one_torch_thread):
    text = np.random.default_rng(1).standard_normal((len(toy.catalog), 8)).astype(np.float32)
    exclude = np.zeros(len(toy.catalog), dtype=bool)
    exclude[:3] = True
    model = pretrain_image_encoder(
        toy.catalog,
        text,
        _config(
            2,
            behaviour_weight=0.5,
            backbone="convnext",
            backbone_kwargs={"hidden_sizes": [8, 16], "depths": [1, 1], "num_stages": 2},
        ),
        train_sequences=toy.train_sequences(),
        exclude_items=exclude,
        show_progress=False,
    )
    assert model.encode([toy.catalog[0].image]).shape == (1, 8)
    with pytest.raises(ValueError, match="train_sequences"):
        pretrain_image_encoder(toy.catalog, text, _config(1, behaviour_weight=1.0), show_progress=False)
    with pytest.raises(ValueError, match="backbone"):
        _config(1, backbone="no-such-model").backbone_config()
