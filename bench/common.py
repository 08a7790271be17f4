"""Shared recording for benchmarks: one JSON per benchmark plus a readable row in docs/benchmarks.md.

Every benchmark calls :func:`record` once at the end with metrics measured side by side against a
baseline in the same run.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import json
import os
import platform
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from genrec.utils.io import atomic_write, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
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
