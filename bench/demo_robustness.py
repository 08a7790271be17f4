"""Does the demo keep its pace when another CPU-bound process shares the machine?

    python -m bench.demo_robustness [--quick] [--naive]

Runs ``genrec demo`` (fresh output folders under ``--work-dir``) three ways, one after another:
  1. idle: nothing else running, threads chosen automatically (``genrec.utils.configure_threads``);
  2. loaded: a pure-Python busy loop holds one CPU for the whole run, threads chosen automatically;
  3. with ``--naive``, loaded again with as many threads as ``os.cpu_count()`` (what torch does by default).
Per stage, the slowdown is the loaded time over the idle time. The goal: no stage slower than 2x.
Each run resumes from its folder if interrupted (the demo's stages resume where their trainers do).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench.common import markdown_table, record
from genrec.demo import DemoConfig, run_demo
from genrec.utils import read_json

NAME = "demo_robustness"


def run(out: Path, quick: bool, threads: int | None, busy: bool) -> dict:
    """One demo run (reused if its metrics exist); returns its metrics.json."""
    if not (out / "metrics.json").is_file():
        competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            run_demo(DemoConfig(output_dir=out, quick=quick, threads=threads))
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()
    return read_json(out / "metrics.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", default="runs/demo_robustness")
    parser.add_argument("--quick", action="store_true", help="time `genrec demo --quick` instead")
    parser.add_argument("--naive", action="store_true", help="also run loaded with os.cpu_count() threads")
    args = parser.parse_args()
    work = Path(args.work_dir) / ("quick" if args.quick else "full")

    runs = {
        "idle": run(work / "idle", args.quick, None, busy=False),
        "loaded": run(work / "loaded", args.quick, None, busy=True),
    }
    if args.naive:
        runs[f"loaded, {os.cpu_count()} threads"] = run(work / "naive", args.quick, os.cpu_count(), busy=True)
    idle = runs["idle"]["stage_seconds"]
    rows, slowdowns = [], {}
    for stage, seconds in idle.items():
        row = {"stage": stage, "idle_s": seconds, "idle_threads": runs["idle"]["stage_threads"][stage]}
        for name, result in runs.items():
            if name == "idle":
                continue
            row[f"{name}_s"] = result["stage_seconds"][stage]
            row[f"{name}_slowdown"] = result["stage_seconds"][stage] / seconds
            row[f"{name}_threads"] = result["stage_threads"][stage]
        slowdowns[stage] = row["loaded_slowdown"]
        rows.append(row)
    totals = {name: result["total_seconds"] for name, result in runs.items()}
    metrics = {
        "max_stage_slowdown": max(slowdowns.values()),
        "demo_seconds_idle": totals["idle"],
        "demo_seconds_loaded": totals["loaded"],
        "stage_slowdown": slowdowns,
    }
    baselines = {}
    if args.naive:
        naive = f"loaded, {os.cpu_count()} threads"
        baselines["naive threads"] = {
            "max_stage_slowdown": max(r[f"{naive}_slowdown"] for r in rows),
            "demo_seconds_loaded": totals[naive],
        }
    columns = list(rows[0])
    summary = (
        f"`genrec demo{' --quick' if args.quick else ''}` stage times, idle and beside a CPU-bound busy loop "
        f"(threads chosen per stage by `configure_threads`):\n\n{markdown_table(rows, columns)}\n"
        f"Totals: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in totals.items()) + ". "
        f"Largest stage slowdown under load: {metrics['max_stage_slowdown']:.2f}x (goal <= 2x)."
    )
    print(summary)
    record(
        NAME,
        dataset="synthetic (demo quick)" if args.quick else "synthetic (demo)",
        metrics=metrics,
        baselines=baselines,
        wall_times=totals,
        summary=summary,
        extra={"stages": rows, "cpu_count": os.cpu_count()},
    )


if __name__ == "__main__":
    main()
