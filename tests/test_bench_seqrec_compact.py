"""The compact bench chooses its decoding on validation users the channels never trained on."""

from __future__ import annotations

import numpy as np
from walk import tiny_channels_config, walk_dataset

from bench.common import per_user_hits
from bench.seqrec_beauty_compact import choose_decoding
from genrec.model.channels import train_channels
from genrec.model.compact import validation_users


def test_decoding_is_the_merged_channels_best_on_validation(tmp_path):
    dataset = walk_dataset()
    config = tiny_channels_config(tmp_path, [{"seed": 1}], epochs=2, eval_users=40, eval_unseen_last=True)
    merged = train_channels(dataset, config)
    result = choose_decoding(dataset, config, [10, 12], [0.0, 2.0])
    assert result["users"] == 40 and result["eval_unseen_last"]
    assert {r["model"] for r in result["sweep"]} == {"merged", "channel 0", "channel 1"}
    assert len(result["sweep"]) == 3 * 2 * 2
    merged_rows = [r for r in result["sweep"] if r["model"] == "merged"]
    assert result["chosen"] == max(merged_rows, key=lambda r: r["ndcg@10"])
    # each row is what the models recommend at that decoding, on the held-out users
    valid = dataset.valid_examples().subset(validation_users(dataset, config))
    for row in merged_rows:
        top, _ = merged.recommend(valid.histories, num_beams=row["beams"], item_weight=row["item_weight"])
        hits = per_user_hits(top, valid.targets)
        assert row["ndcg@10"] == float(hits["ndcg@10"].mean())
    alone = [r for r in result["sweep"] if r["model"] == "channel 0" and r["beams"] == 12][-1]
    top, _ = merged.channels[0].recommend(valid.histories, num_beams=12, item_weight=alone["item_weight"])
    assert alone["recall@10"] == float(per_user_hits(top, valid.targets)["recall@10"].mean())
    low, high = result["ndcg@10_gain_vs_channel_0_ci95"]
    assert low <= high and np.isfinite([low, high]).all()
