"""SFT: recipes parse strictly, the SID rows (and only they) train, the loss is right, resume continues."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from llm_tiny import tiny_base_model, tiny_dataset, tiny_sid
from safetensors import safe_open
from transformers import TrainerCallback

from genrec.errors import DataFormatError
from genrec.model import GenerativeRecommender, sid_vocab_ids
from genrec.prompts import load_templates
from genrec.train import RestrictedVocab, SFTRecipe, answer_nll, build_trainer, train_sft

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def tiny_recipe(output_dir: Path, base_model: str, **train) -> SFTRecipe:
    recipe = SFTRecipe.from_dict(
        {
            "model": {"base_model": base_model},
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
            "data": {"tasks": {"seqrec": 1.0, "item2sid": 0.2}, "max_history": 5, "eval_users": 0},
            "train": {
                "output_dir": str(output_dir),
                "per_device_train_batch_size": 8,
                "learning_rate": 0.05,
                "warmup_steps": 0.0,
                "logging_steps": 1,
                "report_to": "none",
                **train,
            },
        }
    )
    return recipe


def test_recipe_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_step: 5\n")
    with pytest.raises(DataFormatError, match=r"bad.yaml.*train.max_step"):
        SFTRecipe.from_yaml(bad)
    bad.write_text("trian: {}\n")
    with pytest.raises(DataFormatError, match="unknown recipe section"):
        SFTRecipe.from_yaml(bad)
    recipe = SFTRecipe()
    recipe.override("train.max_steps", "7")
    recipe.override("data.tasks", "{seqrec: 1.0, sid2item: 0.5}")
    assert recipe.train.max_steps == 7 and recipe.data.tasks == {"seqrec": 1.0, "sid2item": 0.5}
    with pytest.raises(ValueError, match="unknown recipe field"):
        recipe.override("train.nope", "1")


def test_shipped_sft_recipes_parse_and_name_loaded_templates():
    paths = sorted(RECIPES.glob("*smollm2*.yaml"))
    assert len(paths) >= 3
    for path in paths:
        recipe = SFTRecipe.from_yaml(path)
        load_templates(recipe.data.prompt_dir, names=[*recipe.data.tasks, recipe.data.recommend_task])


def test_restricted_loss_known_answer():
    torch.manual_seed(0)
    hidden, weight = torch.randn(1, 4, 3), torch.randn(10, 3)
    labels = torch.tensor([[-100, 7, 2, 8]])  # positions 1..3 are labelled; 7 and 8 are "SID" tokens
    restrict = RestrictedVocab([7, 8, 9], vocab_size=10)
    total, count = answer_nll(hidden, weight, labels, restrict)
    logits = hidden[0, :-1] @ weight.T
    expected = (
        F.cross_entropy(logits[0:1, 7:10], torch.tensor([0]), reduction="sum")
        + F.cross_entropy(logits[1:2], torch.tensor([2]), reduction="sum")  # 2 is outside: full softmax
        + F.cross_entropy(logits[2:3, 7:10], torch.tensor([1]), reduction="sum")
    )
    assert count.item() == 3
    torch.testing.assert_close(total, expected)
    full, _ = answer_nll(hidden, weight, labels, None)
    torch.testing.assert_close(full, F.cross_entropy(logits, torch.tensor([7, 2, 8]), reduction="sum"))


@pytest.mark.parametrize("tied", [True, False])
def test_new_token_rows_train_and_old_rows_stay_fixed(tmp_path, tied):
    ds = tiny_dataset()
    sid = tiny_sid(ds.catalog)
    path = tiny_base_model(tmp_path / "base", ds.catalog, tied=tied)
    recipe = tiny_recipe(tmp_path / "run", path, max_steps=3, save_steps=100)
    rec = GenerativeRecommender.build(
        ds.catalog,
        sid,
        base_model=path,
        lora=recipe.lora,
        templates=load_templates(names=["seqrec", "item2sid"]),
    )
    new = sid_vocab_ids(rec.tokenizer, sid)
    old = np.setdiff1d(np.arange(len(rec.tokenizer)), new)
    emb0 = rec.model.get_input_embeddings().weight.detach().clone()
    out0 = rec.model.get_output_embeddings().weight.detach().clone()
    lora0 = {n: p.detach().clone() for n, p in rec.model.named_parameters() if "lora_B" in n}
    trainer = build_trainer(recipe, rec, ds)
    trainer.train()
    emb1 = rec.model.get_input_embeddings().weight.detach()
    out1 = rec.model.get_output_embeddings().weight.detach()
    used = np.unique(rec.token_table)  # SID tokens of real items; the others never enter a prompt
    assert (emb1[used] - emb0[used]).abs().amax(dim=1).min() > 0  # every SID row in use moved...
    assert torch.equal(emb1[old], emb0[old])  # ...and no pretrained row did
    assert (out1[new] - out0[new]).abs().amax(dim=1).min() > 0  # all SID rows get the softmax gradient
    assert torch.equal(out1[old], out0[old])
    assert torch.equal(out1, emb1) == tied
    assert any(not torch.equal(p, lora0[n]) for n, p in rec.model.named_parameters() if "lora_B" in n)
    assert trainer.state.log_history[0]["loss"] > 0


class StepCounter(TrainerCallback):
    def __init__(self):
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


@pytest.mark.slow
def test_interrupted_run_resumes_from_its_checkpoint(tmp_path):
    ds = tiny_dataset()
    sid = tiny_sid(ds.catalog)
    path = tiny_base_model(tmp_path / "base", ds.catalog)
    out = tmp_path / "run"
    first = StepCounter()
    train_sft(tiny_recipe(out, path, max_steps=2, save_steps=2), dataset=ds, sid=sid, callbacks=[first])
    assert first.steps == [1, 2] and (out / "checkpoint-2").is_dir()
    second = StepCounter()
    rec = train_sft(
        tiny_recipe(out, path, max_steps=4, save_steps=2),
        resume=True,
        dataset=ds,
        sid=sid,
        callbacks=[second],
    )
    assert second.steps == [3, 4]  # continued at the checkpoint's global step, not from 1
    assert (out / "checkpoint-4").is_dir()
    with safe_open(out / "checkpoint-4" / "adapter_model.safetensors", "pt") as f:  # LoRA + SID rows only,
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys() if "lora_" not in k}  # not the embeddings
    assert shapes == {"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta": [12, 32]}
    loaded = GenerativeRecommender.from_pretrained(out / "final", ds.catalog)
    assert (
        loaded.generate([0, 1], num_items=3).indices.tolist()
        == rec.generate([0, 1], num_items=3).indices.tolist()
    )


def test_recipe_builds_semantic_ids_once_then_reloads(tmp_path):
    from genrec.data import make_synthetic
    from genrec.train import SFTRecipe, load_or_build_sid

    recipe = SFTRecipe.from_yaml(Path(__file__).parents[1] / "recipes" / "synthetic_smollm2_lora.yaml")
    recipe.override("train.output_dir", str(tmp_path))
    catalog = make_synthetic(num_users=50, num_items=64).catalog
    built = load_or_build_sid(recipe, catalog)
    assert (tmp_path / "semantic_ids" / "sid_config.json").is_file()
    assert built.codebook_sizes[:2] == [recipe.sid.codebook_size] * recipe.sid.levels
    np.testing.assert_array_equal(load_or_build_sid(recipe, catalog).codes, built.codes)
