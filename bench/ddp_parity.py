"""Distributed SFT parity: 2 gloo processes (torchrun) vs 1 process at one global batch, on a tiny Llama.

Runs the real trainer (``tests/dist/sft_worker.py``: LoRA + trainable SID rows, SID-restricted loss,
padding-free batches, 3 SGD steps, global batch 16) once with ``torchrun --nproc_per_node 2`` (8 per rank)
and once as a single process (16), then compares every trainable tensor:

    python -m bench.ddp_parity

``max_rank_weight_diff`` is 0 when DDP keeps the ranks in step (a loss computed outside the DDP wrapper
lets each rank drift off on its own gradients); ``max_diff_vs_single_process`` is the float-order noise
against one process. ``tests/test_train_distributed.py`` asserts the same numbers in CI.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "dist" / "sft_worker.py"
GLOBAL_BATCH = 16


def run_worker(base: str, out: Path, processes: int) -> None:
    """One training run of the worker; raises with its stderr when it fails."""
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        if processes > 1
        else [sys.executable]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [*launcher, str(WORKER), base, str(out), "--batch", str(GLOBAL_BATCH // processes)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")


def parity(work: Path, world_size: int = 2) -> dict:
    """Train the tiny model both ways under ``work``; the weight differences and what was compared."""
    sys.path.insert(0, str(ROOT / "tests"))
    from llm_tiny import tiny_base_model, tiny_dataset

    base = tiny_base_model(work / "base", tiny_dataset().catalog)
    run_worker(base, work / "single", 1)
    run_worker(base, work / "ddp", world_size)
    single = load_file(work / "single" / "rank0.safetensors")
    ranks = [load_file(work / "ddp" / f"rank{r}.safetensors") for r in range(world_size)]
    if any(set(r) != set(single) for r in ranks):
        raise RuntimeError("ranks saved different tensors")
    return {
        "max_rank_weight_diff": max(
            (r[k] - ranks[0][k]).abs().max().item() for r in ranks[1:] for k in single
        ),
        "max_diff_vs_single_process": max((ranks[0][k] - single[k]).abs().max().item() for k in single),
        "world_size": world_size,
        "tensors_compared": sorted(single),
        "largest_weight": max(w.abs().max().item() for w in single.values()),
        # LoRA's B matrices start at zero: above zero means training really moved the compared weights
        "smallest_lora_b_change": min(w.abs().max().item() for k, w in single.items() if "lora_B" in k),
    }


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    from bench.common import record

    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = parity(Path(tmp))
    wall = time.perf_counter() - t
    metrics = {k: result[k] for k in ("max_rank_weight_diff", "max_diff_vs_single_process", "world_size")}
    summary = (
        f"Tiny Llama (2 layers) + LoRA r=4 + trainable SID rows, SID-restricted loss, padding-free batches, "
        f"3 SGD steps at global batch {GLOBAL_BATCH}: {result['world_size']} gloo processes (torchrun) vs 1. "
        f"Every one of the {len(result['tensors_compared'])} trainable tensors is compared.\n\n"
        f"| | value |\n|---|---|\n"
        f"| max weight difference between ranks | {metrics['max_rank_weight_diff']:.2e} |\n"
        f"| max weight difference, 2 processes vs 1 | {metrics['max_diff_vs_single_process']:.2e} |\n"
        f"| largest trained weight (scale) | {result['largest_weight']:.3f} |\n"
    )
    print(summary)
    record(
        "ddp_parity",
        dataset="synthetic (tests/llm_tiny.py)",
        metrics=metrics,
        baselines={"single process": {"world_size": 1}},
        wall_times={"total": wall},
        summary=summary,
        extra={"tensors_compared": result["tensors_compared"]},
    )


if __name__ == "__main__":
    main()
