"""QLoRA (4-bit NF4 via bitsandbytes) on CPU: trains the SID rows, saves, reloads in 4-bit (slow)."""

from __future__ import annotations

import pytest
import torch
from llm_tiny import tiny_base_model, tiny_dataset, tiny_sid

from genrec.model import GenerativeRecommender, LoraSettings, sid_vocab_ids
from genrec.train import SFTRecipe, build_trainer

pytestmark = pytest.mark.slow


def test_qlora_trains_sid_rows_and_round_trips(tmp_path):
    pytest.importorskip("bitsandbytes")
    ds = tiny_dataset()
    sid = tiny_sid(ds.catalog)
    # bitsandbytes' CPU kernels need rows of at least one 64-wide quantization block
    path = tiny_base_model(tmp_path / "base", ds.catalog, tied=False, hidden=64)
    rec = GenerativeRecommender.build(
        ds.catalog, sid, base_model=path, lora=LoraSettings(r=4), quantization="nf4"
    )
    q_proj = rec.model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
    assert type(q_proj).__name__ == "Linear4bit"
    new = sid_vocab_ids(rec.tokenizer, sid)
    before = rec.model.get_output_embeddings().weight[new].detach().clone()
    recipe = SFTRecipe.from_dict(
        {
            "data": {"eval_users": 0},
            "train": {
                "output_dir": str(tmp_path / "run"),
                "max_steps": 2,
                "report_to": "none",
                "learning_rate": 0.05,
                "per_device_train_batch_size": 4,
            },
        }
    )
    build_trainer(recipe, rec, ds).train()
    assert not torch.equal(rec.model.get_output_embeddings().weight[new].detach(), before)
    loaded = GenerativeRecommender.from_pretrained(rec.save_pretrained(tmp_path / "rec"), ds.catalog)
    assert loaded.settings["quantization"] == "nf4"
    a, b = rec.generate([1, 2], num_items=3), loaded.generate([1, 2], num_items=3)
    assert a.indices.tolist() == b.indices.tolist()
