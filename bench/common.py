"""Shared recording for benchmarks: one JSON per benchmark plus a readable row in docs/benchmarks.md.

Every benchmark calls :func:`record` once at the end with metrics measured side by side against a
baseline in the same run. Benches that score the test split also call :func:`count_test_evaluation`
(how often the test split has been looked at, recorded in the result JSON) and, with
``--save-predictions PATH``, :func:`save_model_predictions` for every model they test.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import importlib.metadata as _md
import json
import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from genrec.data.dataset import Catalog
from genrec.decoding import merge_beams
from genrec.eval import save_predictions, topk_ranks
from genrec.model.compact import CompactRecommender
from genrec.utils.io import atomic_write, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
TEST_EVALUATIONS = ROOT / "bench" / "test_evaluations.json"  # a counter, not a bench result
_LIBS = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "diffusers",
    "sentence-transformers",
    "faiss-cpu",
)


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in _LIBS:
        try:
            out[lib] = _md.version(lib)
        except _md.PackageNotFoundError:
            pass
    return out


def machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def command_line() -> str:
    """The command as a user would type it from the repo root (``python -m bench.<name> ...``)."""
    script = Path(sys.argv[0]).resolve()
    head = (
        ["python", "-m", f"bench.{script.stem}"]
        if script.parent == ROOT / "bench"
        else ["python", sys.argv[0]]
    )
    return " ".join(shlex.quote(a) for a in [*head, *sys.argv[1:]])


def record(
    name: str,
    dataset: str,
    metrics: dict[str, Any],
    baselines: dict[str, Any],
    wall_times: dict[str, float],
    summary: str,
    extra: dict[str, Any] | None = None,
    command: str | None = None,
) -> Path:
    """Write ``bench/results/<name>.json`` and append ``summary`` (Markdown) under a dated heading."""
    result = {
        "name": name,
        "command": command or command_line(),
        "dataset": dataset,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "metrics": metrics,
        "baselines": baselines,
        "wall_times_s": wall_times,
        "versions": library_versions(),
        "machine": machine(),
        **(extra or {}),
    }
    path = RESULTS / f"{name}.json"
    atomic_write_json(path, result)
    _append_doc(name, result, summary)
    return path


def _append_doc(name: str, result: dict[str, Any], summary: str) -> None:
    text = (
        DOC.read_text(encoding="utf-8")
        if DOC.exists()
        else "# Benchmarks\n\nEvery row below comes from a real run.\n"
    )
    block = (
        f"\n## {name} — {result['date']}\n\n"
        f"```\n{result['command']}\n```\n\n"
        f"{summary.strip()}\n\n"
        f"Raw: [`bench/results/{name}.json`](../bench/results/{name}.json) · "
        f"machine: {result['machine']['cpu_count']} CPUs, torch threads {result['machine']['torch_threads']}"
        f"{', ' + result['machine']['cuda'] if result['machine']['cuda'] else ''}\n"
    )
    # a rerun replaces the benchmark's previous section (older runs stay in git history)
    sections = re.split(r"(?m)^(?=## )", text)
    kept = [sec for sec in sections if not sec.startswith(f"## {name} — ")]
    with atomic_write(DOC) as fh:
        fh.write("".join(kept).rstrip("\n") + "\n" + block)


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows of dicts as a Markdown table; floats print with 4 decimals."""

    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |\n" for r in rows)


def load_result(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def count_test_evaluation(name: str, config: dict[str, Any]) -> dict[str, int]:
    """Count one look at the test split by bench ``name`` with model ``config``; return the totals so far.

    Counts persist in ``bench/test_evaluations.json`` (kept in git), keyed by bench and by a hash
    of ``config``, which should hold every setting that changes the tested model and nothing that does
    not (paths, threads, wall-time budgets). Returns ``{"this_config": n, "all_configs": m}``: ``m`` also
    counts the bench's other configurations, so a setting tuned on test by trying several shows up there.
    Call it once per run, after the test metrics are computed and before they are printed or recorded.
    Counting started with this file; earlier runs are only in the git history of ``bench/results``.
    """
    canonical = json.dumps(config, sort_keys=True, default=str)
    key = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    folder = TEST_EVALUATIONS.parent
    folder.mkdir(parents=True, exist_ok=True)
    # Locking the folder (no lock file to clean up) makes read-increment-write safe for concurrent benches.
    lock = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        counts = json.loads(TEST_EVALUATIONS.read_text(encoding="utf-8")) if TEST_EVALUATIONS.exists() else {}
        configs = counts.setdefault(name, {})
        entry = configs.setdefault(key, {"count": 0, "config": json.loads(canonical)})
        entry["count"] += 1
        entry["last"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        atomic_write_json(TEST_EVALUATIONS, counts)
    finally:
        os.close(lock)  # releases the lock
    return {"this_config": entry["count"], "all_configs": sum(c["count"] for c in configs.values())}


def predictions_path(path: str | Path, model: str) -> Path:
    """Where ``--save-predictions PATH`` puts ``model``'s lists: the model's slug before the extension,
    ``preds.jsonl`` -> ``preds.sasrec.jsonl``, so one flag covers every model a bench tests."""
    path = Path(path)
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    return path.with_name(f"{path.stem}.{slug}{path.suffix or '.jsonl'}")


def save_model_predictions(
    path: str | Path | None, model: str, users: list[str], topk_items: np.ndarray, catalog: Catalog
) -> str | None:
    """Save ``model``'s test top-K lists at :func:`predictions_path` (nothing when ``path`` is None)."""
    if path is None:
        return None
    return str(save_predictions(predictions_path(path, model), users, topk_items, catalog))


class TimeLedger(TrainerCallback):
    """Keeps the wall time spent training across resumed calls in ``path``; stops (and saves) at ``minutes``.

    A budget per call would let a resumed run spend it again; the ledger makes "N CPU minutes" mean the
    whole run's training time, however many calls it took.
    """

    def __init__(self, path: Path, minutes: float):
        self.path, self.budget = Path(path), 60 * minutes
        self.spent = json.loads(self.path.read_text())["seconds"] if self.path.is_file() else 0.0
        self.last = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = time.monotonic()  # model loading and tokenization before the first step do not count

    def on_step_end(self, args, state, control, **kwargs):
        now = time.monotonic()
        self.spent, self.last = self.spent + now - self.last, now
        atomic_write_json(self.path, {"seconds": self.spent, "step": state.global_step})
        if self.spent > self.budget:
            control.should_training_stop = control.should_save = True
        return control


def per_user_hits(top: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Each user's recall@10 (0/1) and NDCG@10 for ``(U, k)`` lists: what paired bootstraps resample."""
    ranks = topk_ranks(top, targets).numpy()
    hit = ranks <= min(10, np.shape(top)[1])  # an absent target ranks width + 1, which may be <= 10
    return {"recall@10": hit.astype(float), "ndcg@10": np.where(hit, 1 / np.log2(ranks + 1), 0.0)}


def beam_candidates(
    model_dir: str | Path, histories: list[np.ndarray], catalog: Catalog, beams: int, cache_dir: str | Path
) -> dict[str, Any]:
    """One compact model's ``beams`` items and beam scores per history, and its item-head log-probabilities
    (None without a head): what :func:`merged_lists` re-ranks at any head weight without searching again.

    Cached in ``cache_dir`` under a key of the model's weights and the histories, so a retrained model or
    other users never read a stale cache: the heads once (float32, as the model ranks with them: ~200 MB
    for 4,000 users x 12k items), the beams per width.
    """
    model_dir, cache_dir = Path(model_dir), Path(cache_dir)
    key = hashlib.sha256((model_dir / "model.safetensors").read_bytes())
    for history in histories:
        key.update(np.asarray(history, dtype=np.int64).tobytes() + b"|")
    tag = key.hexdigest()[:12]
    path, head_path = cache_dir / f"beam{beams}-{tag}.npz", cache_dir / f"item_log_probs-{tag}.npy"
    if not path.is_file() or not head_path.is_file():
        rec = CompactRecommender.from_pretrained(model_dir, catalog=catalog)
        score_items = rec.model.has_item_head and not head_path.is_file()
        tops, beam_scores, heads = [], [], []
        t = time.perf_counter()
        for start in range(0, len(histories), 64):
            top, score, head = rec.beam_candidates(
                histories[start : start + 64], beams, beams, False, score_items
            )
            tops.append(top.numpy())
            beam_scores.append(score.numpy())
            heads.append(None if head is None else head.numpy())
        ms = 1000 * (time.perf_counter() - t) / len(histories)
        if score_items:
            with atomic_write(head_path, "wb") as fh:
                np.save(fh, np.concatenate(heads))
        elif not rec.model.has_item_head:
            with atomic_write(head_path, "wb") as fh:
                np.save(fh, np.zeros((0, 0), dtype=np.float32))  # marks "no head" for the cache
        with atomic_write(path, "wb") as fh:
            np.savez(fh, top=np.concatenate(tops), beam=np.concatenate(beam_scores), ms=ms)
    saved, head = np.load(path), np.load(head_path, mmap_mode="r")
    return {
        "top": saved["top"],
        "beam": saved["beam"],
        "head": head if head.size else None,
        "search_ms_per_user": float(saved["ms"]),
    }


def merged_lists(
    found: list[dict[str, Any]], weight: float, targets: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Top-10 per user of :func:`merge_beams` over :func:`beam_candidates` of one or more models, exactly
    as ``CompactRecommender.recommend`` and ``MultiChannelRecommender.recommend`` rank them with
    ``item_weight=weight``; and how often ``targets`` is among the union of the beams (nan without)."""
    heads = all(f["head"] is not None for f in found) and weight != 0
    lists, inside = [], []
    for start in range(0, len(found[0]["top"]), 500):
        part = slice(start, start + 500)
        tops = [torch.from_numpy(f["top"][part]) for f in found]
        top, _ = merge_beams(
            tops,
            [torch.from_numpy(f["beam"][part]) for f in found],
            [torch.from_numpy(np.asarray(f["head"][part], dtype=np.float32)) for f in found]
            if heads
            else None,
            weight,
            10,
        )
        lists.append(top.numpy())
        if targets is not None:
            union = torch.cat(tops, 1).numpy()
            inside.append((union == targets[part, None]).any(axis=1))
    return np.concatenate(lists), float(np.concatenate(inside).mean()) if inside else float("nan")
