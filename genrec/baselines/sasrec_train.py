"""Training loop for :class:`SASRec`: cross-entropy over all items, early stopping, checkpoint/resume.

Layout of ``output_dir``::

    config.json, model.safetensors      best model so far (SASRec.from_pretrained(output_dir))
    checkpoint-<epoch>/                 the latest epoch in genrec's checkpoint format
                                        (:mod:`genrec.utils.checkpoint`): weights, optimizer, and the
                                        epoch counter, history and early-stopping state

A run killed at any moment resumes from the last finished epoch. Each epoch seeds its own shuffling and
dropout from ``seed + epoch``, so a resumed run follows the same trajectory as an uninterrupted one.
"""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm.auto import tqdm

from genrec.baselines.sasrec import ARCHITECTURE_FIELDS, SASRec, SASRecConfig
from genrec.data.dataset import SequenceDataset
from genrec.eval.recommender import evaluate_recommender
from genrec.utils.checkpoint import checkpoint_steps, latest_checkpoint, load_checkpoint, save_checkpoint
from genrec.utils.runtime import configure_threads, get_logger

logger = get_logger(__name__)

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
    state: dict = {"epoch": 0, "best_epoch": 0, "best_metric": -1.0, "bad_evals": 0, "stopped": False}
    state["history"] = []
    best_weights = copy.deepcopy(model.state_dict())
    parts = {"modules": {"model": model}, "optimizers": {"optimizer": optimizer}}
    resume_key = {
        **{name: getattr(config, name) for name in ARCHITECTURE_FIELDS},
        "num_items": model.num_items,
        "catalog_fingerprint": model.catalog_fingerprint,
    }

    out = Path(output_dir) if output_dir is not None else None
    found = latest_checkpoint(out) if out is not None else None
    if found is not None and not resume:
        for _, old in checkpoint_steps(out):
            shutil.rmtree(old)
    elif found is not None:
        state = load_checkpoint(found, **parts, resume_key=resume_key).state
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
        if out is not None:
            save_checkpoint(out, epoch, **parts, resume_key=resume_key, state=state, keep=1)
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
