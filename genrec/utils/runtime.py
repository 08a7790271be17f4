"""Process-level knobs: thread counts (CPU throughput depends on them), seeds and logging."""

from __future__ import annotations

import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_LOAD_SAMPLE_SECONDS = 0.04  # /proc/stat counts 10 ms ticks: ~4 per CPU, enough to see a CPU-bound process


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads and return the count: the argument, else ``$GENREC_THREADS``, else auto.

    Auto counts the CPUs this process can actually use now (affinity, cgroup quota, minus CPUs other
    processes keep busy) rather than ``os.cpu_count()``: a torch thread on a CPU another process holds
    stalls every parallel region (issue 14 measured a 9x slowdown on a half-busy 2-core machine).
    """
    import torch

    if num_threads is not None:
        reason = "argument"
    elif os.environ.get("GENREC_THREADS", "").strip():
        env = os.environ["GENREC_THREADS"].strip()
        try:
            num_threads = int(env)
        except ValueError:
            raise ValueError(f"GENREC_THREADS must be an integer, got {env!r}") from None
        reason = "GENREC_THREADS"
    else:
        num_threads, reason = choose_num_threads(*_measure_cpus())
    num_threads = max(1, int(num_threads))
    torch.set_num_threads(num_threads)
    logger.info("torch intra-op threads: %d (%s)", num_threads, reason)
    return num_threads


def choose_num_threads(affinity: int, quota: float | None, busy: float) -> tuple[int, str]:
    """Threads for ``affinity`` usable CPUs, a cgroup ``quota`` in CPUs (None: none) and ``busy`` CPUs.

    ``busy`` is CPU held by other processes. A CPU counts as free when at least half of it is idle, and
    the quota caps the count rounded down: one thread too many costs far more than one too few.
    Returns the count and a reason for the log.
    """
    threads = math.floor(affinity - busy + 0.5)
    reason = f"auto: {affinity} CPUs in affinity, {busy:.1f} busy with other work"
    if quota is not None:
        threads = min(threads, math.floor(quota))
        reason += f", cgroup quota {quota:g} CPUs"
    return max(1, min(affinity, threads)), reason


def _measure_cpus() -> tuple[int, float | None, float]:
    """``(affinity CPU count, cgroup quota in CPUs or None, CPUs busy with other processes)``."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = list(range(os.cpu_count() or 1))
    return len(cpus), _cgroup_cpu_quota(), _busy_cpus(cpus)


def _busy_cpus(cpus: list[int]) -> float:
    """CPUs among ``cpus`` busy with other processes, from two ``/proc/stat`` samples 40 ms apart.

    A sample says what is busy now, where the 1-minute load average lags. This process's own CPU time
    (threads still spinning after a torch region) is subtracted. Without /proc, the load average.
    """
    try:
        stat = Path("/proc/stat")
        busy0, total0 = _stat_ticks(stat.read_text(), cpus)
        own0, wall0 = time.process_time(), time.monotonic()
        time.sleep(_LOAD_SAMPLE_SECONDS)
        busy1, total1 = _stat_ticks(stat.read_text(), cpus)
        own = (time.process_time() - own0) / (time.monotonic() - wall0)
    except (OSError, ValueError):  # no /proc (macOS) or a format we do not know
        try:
            return min(float(len(cpus)), os.getloadavg()[0])
        except (AttributeError, OSError):  # Windows has no load average
            return 0.0
    if total1 <= total0:
        return 0.0
    return max(0.0, len(cpus) * (busy1 - busy0) / (total1 - total0) - own)


def _stat_ticks(stat: str, cpus: list[int]) -> tuple[int, int]:
    """Busy and total ticks of ``cpus`` in ``/proc/stat`` text (idle and iowait are not busy; steal is)."""
    wanted = {f"cpu{c}" for c in cpus}
    busy = total = 0
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] in wanted:
            # user nice system idle iowait irq softirq steal; guest time is already in user and nice
            ticks = [int(v) for v in fields[1:9]]
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, total


def _cgroup_cpu_quota(
    root: Path = _CGROUP_ROOT, self_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """CPUs the cgroup CPU quota allows (the tightest along this process's cgroup path), None if unlimited.

    Containers cap CPU with a quota rather than affinity. cgroup v2 ``cpu.max`` from this process's
    cgroup up to the root; else cgroup v1 ``cpu.cfs_quota_us``. Missing files mean no quota.
    """
    try:
        own = next(line[3:] for line in self_cgroup.read_text().splitlines() if line.startswith("0::"))
    except (OSError, StopIteration):
        own = "/"
    folder = root / own.strip().lstrip("/")
    quotas = []
    for parent in (folder, *folder.parents):
        if parent.is_relative_to(root):
            quotas.append(_read_quota(parent / "cpu.max"))
    quotas.append(_read_quota(root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"))
    return min((q for q in quotas if q is not None), default=None)


def _read_quota(quota_file: Path, period_file: Path | None = None) -> float | None:
    """v2 ``"<quota|max> <period>"`` in one file, or v1 quota (``-1``: none) and period in two."""
    try:
        values = quota_file.read_text().split()
        if period_file is not None:
            values += period_file.read_text().split()
        quota, period = float(values[0]), float(values[1])
    except (OSError, IndexError, ValueError):  # no file, or "max": no quota
        return None
    return quota / period if quota > 0 and period > 0 else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency, but keep data layer importable
        return
    torch.manual_seed(seed)


def get_logger(name: str) -> logging.Logger:
    """Library loggers stay silent unless the application configures logging (the CLI does)."""
    return logging.getLogger(name)
