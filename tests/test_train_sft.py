"""SFT: recipes parse strictly, the SID rows (and only they) train, the loss is right, resume continues."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from llm_tiny import tiny_base_model, tiny_dataset, tiny_sid
from safetensors import safe_open
from transformers import TrainerCallback

from genrec.errors import DataFormatError
from genrec.model import ExplanationConfig, GenerativeRecommender, sid_vocab_ids
from genrec.prompts import load_templates
from genrec.train import (
    RestrictedVocab,
    SFTRecipe,
    answer_nll,
    build_recommender,
    build_trainer,
    train_sft,
)
from genrec.train.sft import explanation_examples

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
        + F.cross_entropy(logits[1:2, :7], torch.tensor([2]), reduction="sum")  # text: softmax without SIDs
        + F.cross_entropy(logits[2:3, 7:10], torch.tensor([1]), reduction="sum")
    )
    assert count.item() == 3
    torch.testing.assert_close(total, expected)
    full, _ = answer_nll(hidden, weight, labels, None)
    torch.testing.assert_close(full, F.cross_entropy(logits, torch.tensor([7, 2, 8]), reduction="sum"))


def test_end_of_answer_is_restricted_only_after_a_sid_token():
    """9 closes answers: after SID token 7 it competes with the SIDs; after text token 2, with the text."""
    torch.manual_seed(0)
    hidden, weight = torch.randn(1, 5, 3), torch.randn(10, 3)
    labels = torch.tensor([[-100, 7, 9, 2, 9]])
    restrict = RestrictedVocab([7, 8, 9], vocab_size=10, closing_ids=[9])
    total, count = answer_nll(hidden, weight, labels, restrict)
    logits = hidden[0, :-1] @ weight.T
    expected = (
        F.cross_entropy(logits[0:1, 7:10], torch.tensor([0]), reduction="sum")
        + F.cross_entropy(logits[1:2, 7:10], torch.tensor([2]), reduction="sum")  # 9 after SID 7
        + F.cross_entropy(logits[2:3, [0, 1, 2, 3, 4, 5, 6, 9]], torch.tensor([2]), reduction="sum")
        + F.cross_entropy(
            logits[3:4, [0, 1, 2, 3, 4, 5, 6, 9]], torch.tensor([7]), reduction="sum"
        )  # 9 after text
    )
    assert count.item() == 4
    torch.testing.assert_close(total, expected)
    with pytest.raises(ValueError, match="closing"):
        RestrictedVocab([7, 8], vocab_size=10, closing_ids=[9])


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
    dataset = make_synthetic(num_users=50, num_items=64)
    built = load_or_build_sid(recipe, dataset)
    assert (tmp_path / "semantic_ids" / "sid_config.json").is_file()
    assert built.codebook_sizes[:2] == [recipe.sid.codebook_size] * recipe.sid.levels
    np.testing.assert_array_equal(load_or_build_sid(recipe, dataset).codes, built.codes)


@pytest.mark.parametrize("task", ["seqrec", "sequence"])
def test_beam_score_is_the_training_log_likelihood(tmp_path, task):
    """One scoring rule: decoding ranks items by exactly the log-likelihood the trainer's loss uses."""
    ds = tiny_dataset()
    sid = tiny_sid(ds.catalog)
    path = tiny_base_model(tmp_path / "base", ds.catalog)
    recipe = tiny_recipe(tmp_path / "run", path, max_steps=2, save_steps=100)
    recipe.data.tasks, recipe.data.recommend_task = {task: 1.0}, task
    rec = build_recommender(recipe, ds.catalog, sid)
    trainer = build_trainer(recipe, rec, ds)
    trainer.train()  # a couple of steps, so LoRA and the SID rows are no longer at their initial values
    history = [3, 17, 5]
    top = rec.generate(history, num_items=5, num_beams=len(ds.catalog))  # exhaustive: exact top 5
    rec.model.eval()
    prompt = rec.prompt(np.asarray(history))
    n_prompt = len(rec.tokenizer(prompt)["input_ids"])
    for item, score in zip(top.indices, top.scores):
        ids = rec.tokenizer(prompt + top.semantic_ids[list(top.indices).index(item)], return_tensors="pt")
        labels = ids["input_ids"].clone()
        labels[:, :n_prompt] = -100  # the answer's SID tokens, as the completion mask labels them
        inputs = {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"], "labels": labels}
        with torch.no_grad():
            mean_nll = trainer.compute_loss(rec.model, inputs)
        summed = -mean_nll.item() * int((labels[:, 1:] != -100).sum())
        assert summed == pytest.approx(float(score), abs=1e-4)
    assert rec.settings["sid_restricted_softmax"] and rec.score_token_ids is not None


def test_generate_excludes_history_and_keeps_k_new_items(tmp_path):
    ds = tiny_dataset()
    path = tiny_base_model(tmp_path / "base", ds.catalog)
    rec = build_recommender(tiny_recipe(tmp_path / "run", path), ds.catalog, tiny_sid(ds.catalog))
    history = list(range(0, 30, 2))
    plain = rec.generate(history, num_items=10, num_beams=len(ds.catalog))
    masked = rec.generate(history, num_items=10, num_beams=len(ds.catalog), exclude_history=True)
    assert not set(masked.indices.tolist()) & set(history) and len(set(masked.indices.tolist())) == 10
    assert set(plain.indices.tolist()) & set(history)  # the test would be vacuous otherwise
    expected = [i for i in rec.generate(history, num_items=40, num_beams=40).indices if i not in history]
    assert masked.indices.tolist() == expected[:10]


def test_sequence_examples_cover_every_training_item_once(tmp_path):
    from genrec.prompts.examples import build_sft_examples, sequence_windows

    windows = sequence_windows([np.arange(7), np.arange(3)], 3)
    assert [w.tolist() for w in windows] == [[4, 5, 6], [1, 2, 3], [0], [0, 1, 2]]
    ds = tiny_dataset()
    sid = tiny_sid(ds.catalog)
    path = tiny_base_model(tmp_path / "base", ds.catalog)
    recipe = tiny_recipe(tmp_path / "run", path)
    recipe.data.tasks, recipe.data.recommend_task = {"sequence": 1.0}, "sequence"
    rec = build_recommender(recipe, ds.catalog, sid)
    ex = build_sft_examples(ds, sid, rec.templates, {"sequence": 1.0}, rec.tokenizer, max_history=2)
    tokens_per_item = len(sid.item_tokens(0))
    trained = sum(len(rec.tokenizer.tokenize(c)) // tokens_per_item for c in ex["completion"])
    assert trained == sum(len(s) for s in ds.train_sequences())
    # inference continues exactly the text the model was trained on
    by_sid = {"".join(sid.item_tokens(i)): i for i in range(len(ds.catalog))}
    i = next(j for j, c in enumerate(ex["completion"]) if len(c) > 30)  # a window of 2+ items
    sids = re.findall(r"<a_\d+><b_\d+><c_\d+>", ex["completion"][i])
    history = np.asarray([by_sid[x] for x in sids[:2]])
    text = ex["prompt"][i] + "".join(sids[:2])
    assert text in {rec.prompt(history, phrasing=k) for k in range(2)}
    assert rec.prompt(history[:0]) in {ex["prompt"][j] for j in range(len(ex["prompt"]))}


def test_recipe_extra_overrides_defaults(tmp_path):
    from genrec.train.sft import sft_config

    recipe = tiny_recipe(tmp_path, "unused")
    recipe.train.extra = {"max_length": 64, "eval_strategy": "no", "optim": "sgd"}
    config = sft_config(recipe, has_eval=True)
    assert (config.max_length, config.eval_strategy, config.optim) == (64, "no", "sgd")


def test_truncated_backbone_round_trips(tmp_path):
    ds = tiny_dataset()
    sid = tiny_sid(ds.catalog)
    path = tiny_base_model(tmp_path / "base", ds.catalog)
    recipe = tiny_recipe(tmp_path / "run", path)
    recipe.model.num_layers = 1
    rec = build_recommender(recipe, ds.catalog, sid)
    assert len(rec.model.get_base_model().model.layers) == 1
    loaded = GenerativeRecommender.from_pretrained(rec.save_pretrained(tmp_path / "rec"), ds.catalog)
    assert len(loaded.model.get_base_model().model.layers) == 1
    a, b = rec.generate([1, 2], num_items=3), loaded.generate([1, 2], num_items=3)
    assert a.indices.tolist() == b.indices.tolist()
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


class KillAt(TrainerCallback):
    """Stands in for a killed process: raises once training reaches ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def adapter_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_the_uninterrupted_weights(tmp_path):
    ds = tiny_dataset()
    sid = tiny_sid(ds.catalog)
    path = tiny_base_model(tmp_path / "base", ds.catalog)
    train_sft(tiny_recipe(tmp_path / "whole", path, max_steps=5, save_steps=2), dataset=ds, sid=sid)
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train_sft(
            tiny_recipe(killed, path, max_steps=5, save_steps=2), dataset=ds, sid=sid, callbacks=[KillAt(3)]
        )
    assert (killed / "checkpoint-2").is_dir() and not (killed / "final").exists()
    start = adapter_tensors(killed / "checkpoint-2")
    train_sft(tiny_recipe(killed, path, max_steps=5, save_steps=2), resume=True, dataset=ds, sid=sid)
    whole, resumed = adapter_tensors(tmp_path / "whole" / "final"), adapter_tensors(killed / "final")
    assert set(whole) == set(resumed)
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], atol=1e-6, rtol=0)
    assert any(not torch.equal(start[n], whole[n]) for n in whole)  # steps 3-5 really changed them


@pytest.mark.slow
def test_resuming_a_finished_run_loads_it_without_another_step(tmp_path):
    """The Trainer, resumed from a checkpoint at max_steps, would train one step more and overwrite final."""
    ds = tiny_dataset()
    sid = tiny_sid(ds.catalog)
    path = tiny_base_model(tmp_path / "base", ds.catalog)
    recipe = tiny_recipe(tmp_path / "run", path, max_steps=4, save_steps=2)
    train_sft(recipe, dataset=ds, sid=sid)
    assert (tmp_path / "run" / "checkpoint-4").is_dir()
    before = adapter_tensors(tmp_path / "run" / "final")
    again = train_sft(recipe, resume=True, dataset=ds, sid=sid)
    after = adapter_tensors(tmp_path / "run" / "final")
    assert not list((tmp_path / "run").glob("checkpoint-5*"))
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert again.catalog.ids == ds.catalog.ids


@pytest.mark.slow
def test_gpu_recipe_code_path_runs_at_tiny_scale(tmp_path):
    """recipes/beauty_smollm2_qlora_gpu.yaml as written (NF4, bf16, its task mix), on a tiny model."""
    pytest.importorskip("bitsandbytes")
    ds = tiny_dataset()
    recipe = SFTRecipe.from_yaml(RECIPES / "beauty_smollm2_qlora_gpu.yaml")
    assert (recipe.model.quantization, recipe.model.dtype, recipe.train.bf16) == ("nf4", "bfloat16", True)
    recipe.override("model.base_model", tiny_base_model(tmp_path / "base", ds.catalog, tied=False, hidden=64))
    for key, value in {
        "train.output_dir": str(tmp_path / "run"),
        "train.max_steps": 2,
        "train.per_device_train_batch_size": 4,
        "train.dataloader_num_workers": 0,  # worker processes only cost start-up time here
        "train.report_to": "none",
        "data.eval_users": 4,
    }.items():
        recipe.override(key, value)
    rec = train_sft(recipe, dataset=ds, sid=tiny_sid(ds.catalog))
    assert (
        type(rec.model.get_base_model().model.layers[0].self_attn.q_proj.base_layer).__name__ == "Linear4bit"
    )
    loaded = GenerativeRecommender.from_pretrained(tmp_path / "run" / "final", ds.catalog)
    assert (
        loaded.generate([1, 2], num_items=3).indices.tolist()
        == rec.generate([1, 2], num_items=3).indices.tolist()
    )


def test_two_step_sft_with_seqrec_and_explanation(tmp_path):
    ds = tiny_dataset()
    sid = tiny_sid(ds.catalog)
    path = tiny_base_model(tmp_path / "base", ds.catalog, tied=False)
    recipe = tiny_recipe(tmp_path / "run", path, max_steps=2, save_steps=100)
    recipe.data.tasks = {"seqrec": 1.0, "explanation": 0.5}
    rec = build_recommender(recipe, ds.catalog, sid)
    targets = explanation_examples(recipe, rec, ds)
    assert targets is not None and len(targets) == sum(len(s) - 1 for s in ds.train_sequences())
    trainer = build_trainer(recipe, rec, ds)
    assert sum(c.startswith(('"', "This item")) for c in trainer.train_dataset["completion"]) > 0
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 2 and all(np.isfinite(losses))
    out = rec.generate([1, 2], num_items=2, explain=True, explanation=ExplanationConfig(max_new_tokens=4))
    assert len(out.explanations) == 2
    loaded = GenerativeRecommender.from_pretrained(rec.save_pretrained(tmp_path / "rec"), ds.catalog)
    assert "explanation" in loaded.templates  # saved with the model, so generate(explain=True) works after


def test_explanation_source_is_checked(tmp_path):
    ds = tiny_dataset()
    path = tiny_base_model(tmp_path / "base", ds.catalog)
    recipe = tiny_recipe(tmp_path / "run", path)
    recipe.data.tasks = {"seqrec": 1.0, "explanation": 1.0}
    rec = build_recommender(recipe, ds.catalog, tiny_sid(ds.catalog))
    recipe.data.explanation_source = "reviews"  # the synthetic dataset has no review file
    with pytest.raises(DataFormatError, match="data.explanation_reviews"):
        explanation_examples(recipe, rec, ds)
    recipe.data.explanation_source = "templates"
    with pytest.raises(ValueError, match="grounding', 'reviews' or 'teacher', got 'templates'"):
        explanation_examples(recipe, rec, ds)
    recipe.data.tasks = {"seqrec": 1.0, "explanation": 0.0}  # loaded but not trained: no targets needed
    assert explanation_examples(recipe, rec, ds) is None


def test_lora_on_top_layers_only_trains_those_layers(tmp_path):
    ds = tiny_dataset()
    sid = tiny_sid(ds.catalog)
    path = tiny_base_model(tmp_path / "base", ds.catalog)
    recipe = tiny_recipe(tmp_path / "run", path, max_steps=2, save_steps=100)
    recipe.override("lora.top_layers", 1)
    recipe.override("lora.train_sid_tokens", False)
    rec = build_recommender(recipe, ds.catalog, sid)
    layers = rec.model.get_base_model().config.num_hidden_layers
    adapted = {
        int(re.search(r"layers\.(\d+)\.", n).group(1))
        for n, _ in rec.model.named_parameters()
        if "lora_" in n
    }
    assert adapted == {layers - 1}
    before = {n: p.detach().clone() for n, p in rec.model.named_parameters() if "lora_B" in n}
    build_trainer(recipe, rec, ds).train()
    assert all(not torch.equal(p, before[n]) for n, p in rec.model.named_parameters() if "lora_B" in n)
    recipe.override("lora.top_layers", layers + 1)
    with pytest.raises(ValueError, match="top_layers"):
        build_recommender(recipe, ds.catalog, sid)
