"""Compact SID Llama: tokenizer, save/load round trip, decoding, whole-sequence training and resume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback
from walk import N_ITEMS, walk_dataset

from genrec.data.dataset import Catalog, Item, SequenceDataset
from genrec.errors import CheckpointMismatchError
from genrec.model.compact import (
    CompactConfig,
    CompactRecommender,
    CompactTrainingConfig,
    _training_args,
    build_sid_tokenizer,
    train_compact,
)
from genrec.utils import read_json

TINY = CompactConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_items=6)


def item_tokens() -> list[list[str]]:
    i = np.arange(N_ITEMS)
    return [[f"<a_{a}>", f"<b_{b}>", f"<c_{c}>"] for a, b, c in zip(i // 16, (i // 4) % 4, i % 4)]


@pytest.fixture(scope="module")
def dataset() -> SequenceDataset:
    return walk_dataset()


def test_tokenizer_maps_sid_tokens_and_round_trips(tmp_path):
    tok = build_sid_tokenizer(["<a_0>", "<a_1>", "<b_0>"])
    assert tok.convert_tokens_to_ids(["<pad>", "<bos>", "<eos>", "<unk>"]) == [0, 1, 2, 3]
    assert tok("<a_1> <b_0>", add_special_tokens=False)["input_ids"] == [5, 6]
    assert tok("<zzz>", add_special_tokens=False)["input_ids"] == [tok.unk_token_id]
    tok.save_pretrained(tmp_path)
    again = type(tok).from_pretrained(tmp_path)
    assert again.get_vocab() == tok.get_vocab() and again.padding_side == "left"
    with pytest.raises(ValueError, match="duplicate"):
        build_sid_tokenizer(["<a_0>", "<a_0>"])


def test_save_load_round_trip(tmp_path, dataset):
    rec = CompactRecommender.from_item_tokens(item_tokens(), TINY, dataset.catalog.fingerprint())
    hist = dataset.test_examples().histories[:5]
    items, scores = rec.recommend(hist, k=5, num_beams=8)
    rec.save_pretrained(tmp_path)
    again = CompactRecommender.from_pretrained(tmp_path, catalog=dataset.catalog)
    np.testing.assert_array_equal(again.item_token_ids, rec.item_token_ids)
    assert again.config == rec.config
    items2, scores2 = again.recommend(hist, k=5, num_beams=8)
    np.testing.assert_array_equal(items, items2)
    np.testing.assert_allclose(scores, scores2, atol=1e-5)
    other = Catalog([Item(f"x{i}") for i in range(N_ITEMS)])
    with pytest.raises(CheckpointMismatchError, match="catalog"):
        CompactRecommender.from_pretrained(tmp_path, catalog=other)


def test_prompts_are_left_padded_and_truncated(dataset):
    rec = CompactRecommender.from_item_tokens(item_tokens(), TINY)
    ids, mask = rec.encode_histories([np.array([1]), np.arange(10)])
    assert ids.shape == (2, 1 + 3 * TINY.max_items)
    assert mask[0].sum() == 4 and mask[0, -4:].all() and mask[1].all()
    np.testing.assert_array_equal(ids[1, 1:4].numpy(), rec.item_token_ids[10 - TINY.max_items])
    ids, mask = rec.encode_histories([np.array([], dtype=np.int64), np.array([1])])
    assert ids[0, -1] == rec.tokenizer.bos_token_id and mask[0].tolist() == [0, 0, 0, 1]


def test_cold_start_generates_the_most_likely_items_after_bos(dataset):
    """``generate([])`` decodes from ``<bos>`` alone, the prompt whole-sequence training gives every
    user's first item; each score is the model's log-probability of that item's tokens from there."""
    from llm_tiny import tiny_sid

    from genrec.model import GenerativeRecommender

    sid = tiny_sid(dataset.catalog)
    tokens = [sid.item_tokens(i) for i in range(N_ITEMS)]
    compact = CompactRecommender.from_item_tokens(tokens, TINY, dataset.catalog.fingerprint(), seed=3)
    rec = GenerativeRecommender.from_compact(compact, dataset.catalog, sid)
    out = rec.generate([], num_items=6, num_beams=12)
    assert len(set(out.indices.tolist())) == 6 and all(0 <= i < N_ITEMS for i in out.indices)
    assert out.item_ids == [dataset.catalog[i].id for i in out.indices]
    compact.model.eval()  # no attention dropout, as in decoding
    with torch.no_grad():
        paths = torch.tensor(
            [[compact.tokenizer.bos_token_id, *compact.item_token_ids[i]] for i in range(N_ITEMS)]
        )
        log_probs = torch.log_softmax(compact.model(input_ids=paths).logits[:, :-1].float(), dim=-1)
        item_lp = log_probs.gather(-1, paths[:, 1:, None]).sum(dim=(1, 2)).numpy()
    np.testing.assert_allclose(out.scores, item_lp[out.indices], atol=1e-4)
    assert out.scores[0] == pytest.approx(item_lp.max(), abs=1e-4)  # beam 12 finds the best item here
    batch = rec.generate([[], [1, 2, 3]], num_items=6, num_beams=12)  # left-padded beside a longer prompt
    assert batch[0].indices.tolist() == out.indices.tolist()


def test_whole_sequence_batch_supervises_every_item_token():
    """One sample per user: every item's tokens are targets (the causal shift drops only <bos>)."""
    from genrec.model.compact import _batch

    rec = CompactRecommender.from_item_tokens(item_tokens(), TINY)
    batch = _batch(rec, [np.array([3, 4, 5]), np.array([7])])
    assert batch["input_ids"].shape == (2, 1 + 3 * 3)
    assert batch["input_ids"][0, 0] == rec.tokenizer.bos_token_id
    np.testing.assert_array_equal(batch["labels"][0, 1:].numpy(), rec.item_token_ids[[3, 4, 5]].reshape(-1))
    assert (batch["labels"][1, 4:] == -100).all() and (batch["attention_mask"][1, 4:] == 0).all()
    # HF shifts labels left by one: 3 items x 3 tokens supervised for user 0, 3 for user 1.
    assert int((batch["labels"][:, 1:] != -100).sum()) == 9 + 3


def train_config(tmp_path, epochs: int, max_minutes: float | None = None) -> CompactTrainingConfig:
    return CompactTrainingConfig(
        output_dir=str(tmp_path),
        compact=TINY,
        epochs=epochs,
        batch_size=32,
        learning_rate=2e-2,
        warmup_steps=0,  # transformers warms up from lr 0: a lost step in these 12-step runs
        eval_users=32,
        eval_beams=10,
        patience=100,
        max_minutes=max_minutes,
        num_threads=1,  # tiny matrices: more threads only add contention
    )


class Killed(Exception):
    pass


class KillAtStep(TrainerCallback):
    """Ends training at ``step`` as a crash would: an exception out of ``train``, nothing saved."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed(f"step {self.step}")


def final_weights(folder) -> dict[str, torch.Tensor]:
    (checkpoint,) = folder.glob("checkpoint-*")  # only the latest is kept
    return load_file(str(checkpoint / "model.safetensors"))


def test_training_learns_and_resume_replays_exactly(tmp_path, dataset):
    """A run killed mid-epoch, resumed, stopped by its time budget and resumed again ends with the same
    weights, and the same per-epoch history, as a run that was never interrupted."""
    straight = train_compact(dataset, item_tokens(), train_config(tmp_path / "a", epochs=4))
    # 96 users in batches of 32: 3 steps an epoch. Killed at step 5, only epoch 1's checkpoint is left.
    with pytest.raises(Killed):
        train_compact(dataset, item_tokens(), train_config(tmp_path / "b", epochs=4), [KillAtStep(5)])
    assert [p.name for p in (tmp_path / "b").glob("checkpoint-*")] == ["checkpoint-3"]
    # max_minutes=0: the resumed call stops after the first epoch it trains (epoch 2)
    train_compact(dataset, item_tokens(), train_config(tmp_path / "b", epochs=4, max_minutes=0))
    assert [p.name for p in (tmp_path / "b").glob("checkpoint-*")] == ["checkpoint-6"]
    resumed = train_compact(dataset, item_tokens(), train_config(tmp_path / "b", epochs=4))

    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=name)  # the best models, too
    history_a = read_json(tmp_path / "a" / "trainer_state.json")["history"]
    history_b = read_json(tmp_path / "b" / "trainer_state.json")["history"]
    assert [h["epoch"] for h in history_b] == [1, 2, 3, 4]
    for h, g in zip(history_a, history_b):
        assert h["loss"] == pytest.approx(g["loss"], abs=1e-6)
        assert h["valid_ndcg@10"] == g["valid_ndcg@10"] and h["tokens_per_s"] > 0

    # A finished run trains no further: calling again returns the same best model.
    again = train_compact(dataset, item_tokens(), train_config(tmp_path / "a", epochs=4))
    for (name, p), q in zip(straight.model.state_dict().items(), again.model.state_dict().values()):
        torch.testing.assert_close(p, q, atol=0, rtol=0, msg=name)
    # The walk is learnable: the trained model beats chance (10/48 recall@10) by a wide margin.
    from genrec.eval import evaluate_topk

    test = dataset.test_examples()
    top, _ = straight.recommend(test.histories, k=10, num_beams=10)
    recall = evaluate_topk(top, test.targets)["recall@10"]
    assert recall > 0.4, recall


def test_resume_with_other_architecture_raises(tmp_path, dataset):
    train_compact(dataset, item_tokens(), train_config(tmp_path, epochs=1))
    config = train_config(tmp_path, epochs=2)
    config.compact = CompactConfig(
        hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_items=6
    )
    with pytest.raises(CheckpointMismatchError, match="compact config"):
        train_compact(dataset, item_tokens(), config)


def test_training_config_rejects_unknown_fields():
    config = CompactTrainingConfig.from_dict(
        {"epochs": 2, "compact": {"hidden_size": 64}, "sid": {"modalities": ["text", "behaviour"]}}
    )
    assert config.compact.hidden_size == 64 and config.sid.modalities == ["text", "behaviour"]
    with pytest.raises(ValueError, match="unknown"):
        CompactTrainingConfig.from_dict({"epoch": 2})
    with pytest.raises(ValueError, match="sid.modalities"):
        CompactTrainingConfig.from_dict({"sid": {"modalities": ["audio"]}})


def test_embedding_and_residual_dropout_act_in_training_only():
    plain = CompactRecommender.from_item_tokens(item_tokens(), TINY, seed=0)
    config = dataclasses.replace(TINY, embedding_dropout=0.5, residual_dropout=0.5)
    dropped = CompactRecommender.from_item_tokens(item_tokens(), config, seed=0)
    ids, mask = plain.encode_histories([np.array([1, 2, 3])])
    with torch.no_grad():
        assert torch.equal(
            plain.model.eval()(ids, attention_mask=mask).logits,
            dropped.model.eval()(ids, attention_mask=mask).logits,
        )  # same weights, and dropout is off when decoding
        dropped.model.train()
        a, b = (dropped.model(ids, attention_mask=mask).logits for _ in range(2))
    assert not torch.equal(a, b)
    hooks = dropped.model.model.layers[0].mlp.down_proj._forward_hooks
    assert len(hooks) == 1 and not plain.model.model.layers[0].mlp.down_proj._forward_hooks
    assert _training_args(CompactTrainingConfig(label_smoothing=0.1)).label_smoothing_factor == 0.1


def test_eval_unseen_last_leaves_validation_users_last_training_item_out(tmp_path, dataset):
    """Only the sampled validation users lose their last training item; their validation examples keep it
    as the history's last item, which is how test histories end (in an item never trained in context)."""
    from genrec.model.compact import training_sequences, validation_users

    config = dataclasses.replace(train_config(tmp_path, 1), eval_users=10, eval_unseen_last=True)
    sampled = validation_users(dataset, config)
    assert len(sampled) == 10 and len(set(sampled.tolist())) == 10
    full, trained = dataset.train_sequences(), training_sequences(dataset, config)
    for i, (seq, kept) in enumerate(zip(full, trained)):
        np.testing.assert_array_equal(kept, seq[:-1] if i in sampled else seq)
    valid = dataset.valid_examples().subset(sampled)
    for history, seq in zip(valid.histories, [full[i] for i in sampled]):
        np.testing.assert_array_equal(history, seq)  # validation history: the unshortened sequence
    plain = dataclasses.replace(config, eval_unseen_last=False)
    assert all(np.array_equal(a, b) for a, b in zip(training_sequences(dataset, plain), full))
    # the training seed does not move them (models of other seeds validate on the same users); eval_seed does
    np.testing.assert_array_equal(validation_users(dataset, dataclasses.replace(config, seed=7)), sampled)
    assert not np.array_equal(validation_users(dataset, dataclasses.replace(config, eval_seed=7)), sampled)


def test_train_windows_make_every_training_item_a_target_once(tmp_path):
    from genrec.model.compact import training_sequences

    catalog = Catalog([Item(str(i)) for i in range(N_ITEMS)])
    # training sequences (the last two items are validation and test): 13, 6 and 3 items
    seqs = [np.arange(15), np.arange(20, 28), np.arange(40, 45)]
    walk = SequenceDataset("long", catalog, ["a", "b", "c"], seqs)
    config = dataclasses.replace(train_config(tmp_path, 1), train_windows=True)  # max_items 6
    windows = [w.tolist() for w in training_sequences(walk, config)]
    assert windows == [
        list(range(7, 13)),
        list(range(1, 7)),
        [0],
        list(range(20, 26)),
        [40, 41, 42],
    ]
    plain = training_sequences(walk, dataclasses.replace(config, train_windows=False))
    assert [len(s) for s in plain] == [13, 6, 3]  # without windows the model sees only the last 6 of 13


HEAD = dataclasses.replace(TINY, item_head_weight=1.0)


def test_item_head_reads_the_state_where_each_item_starts():
    """The batch's item labels line up with the items its tokens hold: label j sits where item j starts."""
    from genrec.model.compact import _batch

    rec = CompactRecommender.from_item_tokens(item_tokens(), HEAD)
    batch = _batch(rec, [np.array([3, 4, 5]), np.array([7])])
    assert batch["item_labels"].tolist() == [[3, 4, 5], [7, -100, -100]]
    width = rec.tokens_per_item
    for row, labels in zip(batch["input_ids"], batch["item_labels"]):
        for j, item in enumerate(labels.tolist()):
            if item >= 0:  # the tokens after position j * width are the item's own
                assert row[j * width + 1 : (j + 1) * width + 1].tolist() == rec.item_token_ids[item].tolist()
    # the loss is the token loss plus the item head's, which is ~log(48) untrained
    out = rec.model(**batch)
    token_loss = rec.model(**{k: v for k, v in batch.items() if k != "item_labels"}).loss
    assert float((out.loss - token_loss).detach()) == pytest.approx(np.log(N_ITEMS), abs=0.5)
    # an item never trained on still has a vector: the sum of its codes' embeddings
    assert torch.count_nonzero(rec.model.item_residual.weight) == 0


def test_item_head_learns_reranks_and_round_trips(tmp_path, dataset):
    config = dataclasses.replace(train_config(tmp_path, epochs=4), compact=HEAD)
    rec = train_compact(dataset, item_tokens(), config)
    test = dataset.test_examples()
    ids, mask = rec.encode_histories(test.histories)
    head = rec.model.item_log_probs(ids, mask)
    # the head alone learned the walk: the next item is in its top 10 for nearly every user (chance 10/48)
    assert (head.topk(10).indices.numpy() == test.targets[:, None]).any(1).mean() > 0.9
    beam, beam_scores = rec.recommend(test.histories, k=10, num_beams=10, item_weight=0.0)
    fused, fused_scores = rec.recommend(test.histories, k=10, num_beams=10)
    # 12 steps in, the re-ranked list puts the next item first 3x as often as the beam's order (.24 vs .07)
    assert (fused[:, 0] == test.targets).mean() > 2 * (beam[:, 0] == test.targets).mean()
    # the same ten items, re-scored as beam log-probability + head log-probability and re-sorted
    np.testing.assert_array_equal(np.sort(beam, 1), np.sort(fused, 1))
    expected = beam_scores + np.take_along_axis(head.numpy(), beam, 1)
    np.testing.assert_allclose(np.sort(fused_scores, 1), np.sort(expected, 1), atol=1e-4)
    assert (np.diff(fused_scores, axis=1) <= 1e-6).all()
    with pytest.raises(ValueError, match="num_beams >= k"):
        rec.recommend(test.histories[:2], k=10, num_beams=5)
    # generate() on the wrapped model re-ranks the same way, by item id
    from llm_tiny import tiny_sid

    from genrec.model import GenerativeRecommender

    wrapped = GenerativeRecommender.from_compact(rec, dataset.catalog, tiny_sid(dataset.catalog))
    histories = [[dataset.catalog[i].id for i in h] for h in test.histories[:8]]
    for weight, expected_top in ((1.0, fused), (0.0, beam)):
        out = wrapped.generate(histories, num_items=10, num_beams=10, item_weight=weight)
        assert [o.indices.tolist() for o in out] == expected_top[:8].tolist()

    rec.save_pretrained(tmp_path / "saved")
    loaded = CompactRecommender.from_pretrained(tmp_path / "saved", catalog=dataset.catalog)
    torch.testing.assert_close(loaded.model.item_log_probs(ids, mask), head)
    assert loaded.recommend([[]], k=5, num_beams=10)[0].shape == (1, 5)  # the cold-start prompt too
    swapped = rec.item_token_ids[[1, 0, *range(2, N_ITEMS)]]
    with pytest.raises(CheckpointMismatchError, match="item head"):
        CompactRecommender(loaded.model, loaded.tokenizer, swapped, loaded.config)


def test_item_head_rejects_label_smoothing():
    with pytest.raises(ValueError, match="label_smoothing"):
        CompactTrainingConfig.from_dict({"label_smoothing": 0.1, "compact": {"item_head_weight": 1.0}})
