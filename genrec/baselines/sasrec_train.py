"""Training loop for :class:`SASRec`: cross-entropy over all items, early stopping, checkpoint/resume.

Layout of ``output_dir``::

    config.json, model.safetensors      best model so far (SASRec.from_pretrained(output_dir))
    trainer_state.json                  epoch counter, history, early-stopping state; names the checkpoint
    checkpoint-<epoch>/                 latest weights + optimizer state (the one trainer_state.json names)

``trainer_state.json`` is replaced atomically only after its checkpoint folder is complete, so a run
killed at any moment resumes from the last finished epoch. Each epoch seeds its own shuffling and
dropout from ``seed + epoch``, so a resumed run follows the same trajectory as an uninterrupted one.
"""

from __future__ import annotations

import copy
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from genrec.baselines.sasrec import ARCHITECTURE_FIELDS, SASRec, SASRecConfig
from genrec.data.dataset import SequenceDataset
from genrec.errors import CheckpointMismatchError
from genrec.eval.recommender import evaluate_recommender
from genrec.utils.io import atomic_write, atomic_write_json, read_json
from genrec.utils.runtime import configure_threads, get_logger

logger = get_logger(__name__)

STATE_NAME = "trainer_state.json"
VALID_METRIC = "ndcg@10"


def training_arrays(train_sequences: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded inputs (item + 1, 0 = pad) and next-item targets (-100 = pad), each (U, max_len).

    Every position of a training sequence predicts the item after it; sequences longer than
    ``max_len + 1`` keep their most recent items. Users with fewer than 2 training items give no pair.
    """
    rows = [s[-(max_len + 1) :] for s in train_sequences if len(s) >= 2]
    if not rows:
        raise ValueError("no training sequence has 2 or more items: nothing to learn from")
    inputs = np.zeros((len(rows), max_len), dtype=np.int64)
    targets = np.full((len(rows), max_len), -100, dtype=np.int64)
    for r, s in enumerate(rows):
        n = len(s) - 1
        inputs[r, max_len - n :] = s[:-1] + 1
        targets[r, max_len - n :] = s[1:]
    return inputs, targets


def length_bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Batches of users with similar lengths (little padding), in random order, shuffled within lengths."""
    order = np.lexsort((rng.random(len(lengths)), lengths))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _train_epoch(
    model: SASRec,
    optimizer: torch.optim.Optimizer,
    inputs: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
) -> float:
    model.train()
    lengths = (inputs > 0).sum(1)
    total, count = 0.0, 0
    for idx in length_bucketed_batches(lengths, batch_size, rng):
        width = int(lengths[idx].max())
        x = torch.from_numpy(inputs[idx, -width:])
        y = torch.from_numpy(targets[idx, -width:])
        real = y >= 0
        hidden = model(x)[real]
        loss = F.cross_entropy(hidden @ model.item_embeddings.T, y[real])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = int(real.sum())
        total += loss.item() * n
        count += n
    return total / count


def _save_checkpoint(output_dir: Path, model: SASRec, optimizer: torch.optim.Optimizer, state: dict) -> None:
    ckpt = output_dir / f"checkpoint-{state['epoch']}"
    if ckpt.exists():
        shutil.rmtree(ckpt)
    ckpt.mkdir(parents=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(ckpt / "model.safetensors", mode="wb") as fh:
        fh.write(save(tensors))
    with atomic_write(ckpt / "optimizer.pt", mode="wb") as fh:
        torch.save(optimizer.state_dict(), fh)
    state = {**state, "checkpoint": ckpt.name}
    atomic_write_json(output_dir / STATE_NAME, state)
    for old in output_dir.glob("checkpoint-*"):
        if old.name != ckpt.name:
            shutil.rmtree(old)


def _check_resumable(state: dict, model: SASRec, path: Path) -> None:
    saved = state["config"]
    for name in ARCHITECTURE_FIELDS:
        if saved[name] != getattr(model.config, name):
            raise CheckpointMismatchError(
                f"{path}: checkpoint has {name}={saved[name]}, config asks {getattr(model.config, name)}"
            )
    if state["num_items"] != model.num_items or state["catalog_fingerprint"] != model.catalog_fingerprint:
        raise CheckpointMismatchError(
            f"{path}: checkpoint was trained on another catalog ({state['num_items']} items, "
            f"fingerprint {state['catalog_fingerprint']}); this one has {model.num_items} "
            f"(fingerprint {model.catalog_fingerprint})"
        )


def train_sasrec(
    dataset: SequenceDataset,
    config: SASRecConfig | None = None,
    output_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
) -> SASRec:
    """Train on ``dataset.train_sequences()``, early-stop on validation NDCG@10, return the best model.

    With ``output_dir``, the best model and a resumable checkpoint are written there after every
    epoch, and an existing checkpoint is resumed (unless ``resume=False``, which starts over). Raising
    ``config.epochs`` and calling again continues a finished run. The per-epoch log is returned as
    ``model.history`` (a list of dicts) and kept in ``trainer_state.json``.
    """
    config = config or SASRecConfig()
    threads = configure_threads(config.num_threads)
    torch.manual_seed(config.seed)
    model = SASRec(dataset.num_items, config, catalog_fingerprint=dataset.catalog.fingerprint())
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98)
    )
    state: dict = {
        "epoch": 0,
        "best_epoch": 0,
        "best_metric": -1.0,
        "bad_evals": 0,
        "stopped": False,
        "history": [],
        "num_items": model.num_items,
        "catalog_fingerprint": model.catalog_fingerprint,
    }
    best_weights = copy.deepcopy(model.state_dict())

    out = Path(output_dir) if output_dir is not None else None
    if out is not None and (out / STATE_NAME).is_file():
        if resume:
            state = read_json(out / STATE_NAME)
            _check_resumable(state, model, out / STATE_NAME)
            ckpt = out / state["checkpoint"]
            model.load_state_dict(load_file(ckpt / "model.safetensors"))
            optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
            for group in optimizer.param_groups:  # a resumed run may change the learning schedule
                group["lr"], group["weight_decay"] = config.lr, config.weight_decay
            best_weights = load_file(out / "model.safetensors") if state["best_epoch"] else model.state_dict()
            best_weights = copy.deepcopy(best_weights)
            logger.info(
                "resuming %s from epoch %d (best %s %.4f at epoch %d)",
                out,
                state["epoch"],
                VALID_METRIC,
                state["best_metric"],
                state["best_epoch"],
            )
        else:
            for old in [out / STATE_NAME, *out.glob("checkpoint-*")]:
                shutil.rmtree(old) if old.is_dir() else old.unlink()

    inputs, targets = training_arrays(dataset.train_sequences(), config.max_len)
    valid = dataset.valid_examples()
    logger.info(
        "SASRec: %d training sequences, %d items, %d threads", len(inputs), dataset.num_items, threads
    )

    bar = tqdm(total=config.epochs, initial=state["epoch"], desc="sasrec", unit="epoch", disable=not progress)
    session_start, last_epoch_s = time.perf_counter(), 0.0
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        if state["stopped"]:
            break
        elapsed = time.perf_counter() - session_start
        # at least one epoch per call; then stop before an epoch that would overrun the budget
        if (
            config.time_budget_s is not None
            and last_epoch_s
            and elapsed + last_epoch_s > config.time_budget_s
        ):
            logger.info(
                "time budget %.0fs reached after epoch %d; call again to resume",
                config.time_budget_s,
                epoch - 1,
            )
            break
        torch.manual_seed(config.seed + epoch)
        start = time.perf_counter()
        loss = _train_epoch(
            model, optimizer, inputs, targets, config.batch_size, np.random.default_rng(config.seed + epoch)
        )
        entry = {"epoch": epoch, "loss": loss, "train_s": time.perf_counter() - start}
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            start = time.perf_counter()
            metrics = evaluate_recommender(model, valid, ks=(10,))
            entry.update({f"valid_{k}": v for k, v in metrics.items()}, eval_s=time.perf_counter() - start)
            if metrics[VALID_METRIC] > state["best_metric"]:
                state.update(best_metric=metrics[VALID_METRIC], best_epoch=epoch, bad_evals=0)
                best_weights = copy.deepcopy(model.state_dict())
                if out is not None:
                    model.save_pretrained(out)
            else:
                state["bad_evals"] += 1
                state["stopped"] = state["bad_evals"] >= config.patience
            logger.info(
                "epoch %d loss %.4f valid %s %.4f (best %.4f @ %d)",
                epoch,
                loss,
                VALID_METRIC,
                metrics[VALID_METRIC],
                state["best_metric"],
                state["best_epoch"],
            )
        state["epoch"] = epoch
        state["history"].append(entry)
        state["config"] = asdict(config)
        if out is not None:
            _save_checkpoint(out, model, optimizer, state)
        last_epoch_s = time.perf_counter() - session_start - elapsed
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", best=f"{state['best_metric']:.4f}")
        if state["stopped"]:
            logger.info(
                "early stop at epoch %d: no better %s for %d evaluations",
                epoch,
                VALID_METRIC,
                config.patience,
            )
    bar.close()

    model.load_state_dict(best_weights)
    model.eval()
    model.history = state["history"]
    return model
