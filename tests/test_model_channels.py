"""SID channels: per-channel configs, training each on its own codes, merged recommendations, persistence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from walk import N_ITEMS, TINY_COMPACT, tiny_channels_config, walk_dataset

from genrec.data.dataset import SequenceDataset
from genrec.decoding import merge_beams
from genrec.errors import CheckpointMismatchError
from genrec.model.channels import MultiChannelRecommender, channel_configs, train_channels
from genrec.model.compact import CompactRecommender, CompactTrainingConfig


@pytest.fixture(scope="module")
def dataset() -> SequenceDataset:
    return walk_dataset()


def test_channel_configs_override_the_base_and_nest_their_folders(tmp_path):
    base = tiny_channels_config(
        tmp_path, [{"sid": {"seed": 1}}, {"epochs": 5, "compact": {"item_head_weight": 0.5}}]
    )
    configs = channel_configs(base)
    assert configs[0] is base
    assert [c.output_dir for c in configs[1:]] == [str(tmp_path / "channel-1"), str(tmp_path / "channel-2")]
    assert [c.sid.seed for c in configs] == [0, 1, 0] and [c.epochs for c in configs] == [3, 3, 5]
    assert [c.compact.item_head_weight for c in configs] == [1.0, 1.0, 0.5]
    assert configs[1].sid.levels == 2 and configs[2].compact.hidden_size == 32  # the rest is the base's
    assert all(c.channels == [] for c in configs[1:])
    with pytest.raises(ValueError, match=r"channels\[0\].sid: unknown field 'sede'"):
        channel_configs(tiny_channels_config(tmp_path, [{"sid": {"sede": 1}}]))
    with pytest.raises(ValueError, match=r"channels\[0\].sid is a section"):
        channel_configs(tiny_channels_config(tmp_path, [{"sid": 3}]))
    # a field whose value is a mapping takes it whole (it is not a section)
    weighted = channel_configs(
        tiny_channels_config(tmp_path, [{"sid": {"modality_weights": {"behaviour": 2.0}}}])
    )[1]
    assert weighted.sid.modality_weights == {"behaviour": 2.0} and weighted.sid.levels == 2
    with pytest.raises(ValueError, match="sid.modalities"):  # each channel's config is validated as built
        channel_configs(tiny_channels_config(tmp_path, [{"sid": {"modalities": ["smell"]}}]))
    # another training seed draws the same validation users; a channel may not move them
    seeded = channel_configs(tiny_channels_config(tmp_path, [{"seed": 1}]))
    assert seeded[1].seed == 1 and seeded[1].eval_seed == seeded[0].eval_seed == 0
    for moved in ({"eval_seed": 1}, {"eval_users": 8}, {"eval_unseen_last": True}):
        with pytest.raises(ValueError, match=rf"channels\[0\] changes \['{next(iter(moved))}'\]"):
            channel_configs(tiny_channels_config(tmp_path, [moved]))
    with pytest.raises(ValueError, match="list of override mappings"):
        CompactTrainingConfig.from_dict({"channels": {"sid": {"seed": 1}}})


def test_two_channels_train_on_their_own_codes_and_merge_their_beams(tmp_path, dataset):
    merged = train_channels(dataset, tiny_channels_config(tmp_path, [{"sid": {"seed": 1}}]))
    first, second = merged.channels
    assert not np.array_equal(first.item_token_ids, second.item_token_ids)  # another k-means draw
    assert (tmp_path / "channel-1" / "best").is_dir() and (tmp_path / "channel-1" / "sid").is_dir()
    test = dataset.test_examples()
    top, scores = merged.recommend(test.histories, k=5, num_beams=8, item_weight=2.0)
    # the merge of the channels' own candidates, batch by batch
    found = [c.beam_candidates(test.histories, 8, 8, item_scores=True) for c in merged.channels]
    expected, expected_scores = merge_beams(*([f[j] for f in found] for j in range(3)), item_weight=2.0, k=5)
    np.testing.assert_array_equal(top, expected.numpy())
    np.testing.assert_allclose(scores, expected_scores.numpy(), atol=1e-4)
    assert ((0 <= top) & (top < N_ITEMS)).all()
    assert all(len(set(row)) == 5 for row in top.tolist())
    # three epochs in, the merged list has learned the walk
    assert (top == test.targets[:, None]).any(1).mean() > 0.5

    # one channel alone is that model's own recommend
    alone = MultiChannelRecommender([first]).recommend(test.histories, k=5, num_beams=8, item_weight=2.0)
    own = first.recommend(test.histories, k=5, num_beams=8, item_weight=2.0)
    np.testing.assert_array_equal(alone[0], own[0])

    # the training directory loads as it is, and a save/load round trip keeps the lists
    again = MultiChannelRecommender.from_pretrained(tmp_path, catalog=dataset.catalog)
    np.testing.assert_array_equal(again.recommend(test.histories, k=5, num_beams=8, item_weight=2.0)[0], top)
    merged.save_pretrained(tmp_path / "saved")
    saved = MultiChannelRecommender.from_pretrained(tmp_path / "saved", catalog=dataset.catalog)
    np.testing.assert_array_equal(saved.recommend(test.histories, k=5, num_beams=8, item_weight=2.0)[0], top)
    assert saved.recommend([[]], k=5, num_beams=8)[0].shape == (1, 5)  # the cold-start prompt too

    # a rerun resumes both finished channels instead of training again
    rerun = train_channels(dataset, tiny_channels_config(tmp_path, [{"sid": {"seed": 1}}]))
    for a, b in zip(rerun.channels, merged.channels):
        for p, q in zip(a.model.parameters(), b.model.parameters()):
            torch.testing.assert_close(p, q)


def test_channels_must_share_the_catalog(tmp_path, dataset):
    tokens = [[f"<a_{i // 8}>", f"<b_{i % 8}>"] for i in range(N_ITEMS)]
    a = CompactRecommender.from_item_tokens(tokens, TINY_COMPACT, dataset.catalog.fingerprint())
    b = CompactRecommender.from_item_tokens(tokens, TINY_COMPACT, "another catalog")
    with pytest.raises(CheckpointMismatchError, match="channel 1 was trained on another catalog"):
        MultiChannelRecommender([a, b])
    no_head = CompactRecommender.from_item_tokens(
        tokens, dataclasses.replace(TINY_COMPACT, item_head_weight=0.0), dataset.catalog.fingerprint()
    )
    with pytest.raises(ValueError, match="item head"):
        MultiChannelRecommender([a, no_head])
    with pytest.raises(ValueError, match="at least one"):
        MultiChannelRecommender([])
    with pytest.raises(FileNotFoundError, match="channels.json"):
        MultiChannelRecommender.from_pretrained(tmp_path)
