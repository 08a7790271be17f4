"""The one checkpoint format: a save restores weights, optimizer, RNG and state exactly; a half-written
folder is never resumed; a mismatched run is refused with the fields named."""

from __future__ import annotations

import json

import pytest
import torch

from genrec.errors import CheckpointMismatchError
from genrec.utils.checkpoint import (
    TRAINER_STATE,
    checkpoint_steps,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2)
    return model, opt, sched, torch.Generator().manual_seed(seed)


def _train(model, opt, sched, gen, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        x = torch.randn(8, 4, generator=gen)
        loss = (model(torch.nn.functional.dropout(x, 0.5)) ** 2).mean()  # global RNG too
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def test_resumed_training_matches_an_uninterrupted_run(tmp_path):
    model, opt, sched, gen = _setup()
    straight = _train(model, opt, sched, gen, 6)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    model, opt, sched, gen = _setup()
    first = _train(model, opt, sched, gen, 3)
    parts = {"modules": {"model": model}, "optimizers": {"opt": opt, "sched": sched}}
    save_checkpoint(tmp_path, 3, **parts, generators={"data": gen}, state={"losses": first})

    model, opt, sched, gen = _setup(seed=1)  # a fresh process, other initial weights and RNG
    parts = {"modules": {"model": model}, "optimizers": {"opt": opt, "sched": sched}}
    ckpt = load_checkpoint(latest_checkpoint(tmp_path), **parts, generators={"data": gen})
    assert ckpt.step == 3 and ckpt.state["losses"] == first
    rest = _train(model, opt, sched, gen, 3)
    assert first + rest == straight
    for k, v in model.state_dict().items():
        assert torch.equal(v, expected[k])


def test_latest_skips_and_removes_half_written_folders_and_keeps_the_newest(tmp_path):
    model = torch.nn.Linear(2, 2)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, modules={"model": model}, keep=2)
    assert [s for s, _ in checkpoint_steps(tmp_path)] == [2, 3]
    save_checkpoint(tmp_path, 4, tensors={"best": {"w": torch.ones(2)}}, keep=0)  # keep=0: keep all
    (tmp_path / "checkpoint-4" / TRAINER_STATE).unlink()  # killed before the state was written
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-3"
    assert not (tmp_path / "checkpoint-4").exists()
    assert latest_checkpoint(tmp_path / "missing") is None


def test_mismatched_resume_key_names_every_differing_field(tmp_path):
    model = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path, 1, modules={"model": model}, resume_key={"lr": 0.1, "dims": (2, 2), "seed": 0})
    path = latest_checkpoint(tmp_path)
    load_checkpoint(path, modules={"model": model}, resume_key={"lr": 0.1, "dims": (2, 2)})  # tuples: fine
    with pytest.raises(
        CheckpointMismatchError, match=r"lr=0.1 \(this run: 0.2\); dims=\[2, 2\] \(this run: \(2, 3\)\)"
    ):
        load_checkpoint(path, modules={"model": model}, resume_key={"lr": 0.2, "dims": (2, 3), "seed": 0})
    assert json.loads((path / TRAINER_STATE).read_text())["step"] == 1
    ckpt = load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        ckpt.tensors("best")
