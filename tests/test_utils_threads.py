"""Thread policy: the decision from measured numbers, cgroup and /proc/stat parsing, and precedence.

No test reads this machine's load: ``_measure_cpus`` is replaced wherever the automatic choice runs.
"""

import logging

import pytest
import torch

from genrec.utils import configure_threads, runtime
from genrec.utils.runtime import choose_num_threads


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("affinity", "quota", "busy", "expected"),
    [
        (2, None, 0.0, 2),  # idle 2-core machine: both cores
        (2, None, 1.0, 1),  # 2 cores, another CPU-bound process: one thread (issue 14)
        (2, None, 0.4, 2),  # background noise under half a core does not cost a thread
        (2, None, 0.75, 1),  # most of a core taken: it is not free
        (2, None, 2.0, 1),  # fully busy: still at least one thread
        (2, None, 5.0, 1),  # load average above the CPU count
        (8, None, 3.0, 5),
        (1, None, 0.0, 1),
        (16, 4.0, 0.0, 4),  # container quota caps the affinity
        (16, 2.5, 0.0, 2),  # a fractional quota rounds down: a throttled thread stalls like a busy one
        (16, 0.5, 0.0, 1),
        (4, 8.0, 3.0, 1),  # load on the affinity CPUs counts even under a larger quota
    ],
)
def test_choose_num_threads_known_answers(affinity, quota, busy, expected):
    threads, reason = choose_num_threads(affinity, quota, busy)
    assert threads == expected
    assert f"{affinity} CPUs in affinity" in reason and ("quota" in reason) == (quota is not None)


def test_precedence_argument_then_env_then_auto(monkeypatch, caplog):
    monkeypatch.setattr(runtime, "_measure_cpus", lambda: (2, None, 1.0))
    monkeypatch.setenv("GENREC_THREADS", "3")
    with caplog.at_level(logging.INFO, logger="genrec.utils.runtime"):
        assert configure_threads(2) == 2 and torch.get_num_threads() == 2  # the argument wins
        assert configure_threads() == 3 and torch.get_num_threads() == 3  # then the environment
        monkeypatch.setenv("GENREC_THREADS", " ")
        assert configure_threads() == 1 and torch.get_num_threads() == 1  # then auto
        monkeypatch.delenv("GENREC_THREADS")
        assert configure_threads() == 1
    assert "torch intra-op threads: 2 (argument)" in caplog.text
    assert "torch intra-op threads: 3 (GENREC_THREADS)" in caplog.text
    assert "torch intra-op threads: 1 (auto: 2 CPUs in affinity, 1.0 busy with other work)" in caplog.text


def test_bad_env_value_is_named(monkeypatch):
    monkeypatch.setenv("GENREC_THREADS", "two")
    with pytest.raises(ValueError, match="GENREC_THREADS must be an integer, got 'two'"):
        configure_threads()


def test_stat_ticks_counts_only_affinity_cpus():
    stat = (
        "cpu  300 0 30 900 10 0 0 0 0 0\n"
        "cpu0 100 0 10 300 5 0 0 0 0 0\n"
        "cpu1 200 5 20 600 5 1 1 2 50 0\n"
        "cpu10 999 0 0 0 0 0 0 0 0 0\n"
        "intr 1 2 3\n"
    )
    assert runtime._stat_ticks(stat, [1]) == (229, 834)  # iowait is idle, steal is busy, guest is in user
    assert runtime._stat_ticks(stat, [0, 1]) == (339, 1249)


def test_cgroup_quota_v2_nested_v1_and_none(tmp_path):
    own = tmp_path / "self_cgroup"
    own.write_text("0::/user.slice/job.scope\n")
    assert runtime._cgroup_cpu_quota(tmp_path, own) is None  # no cgroup files at all
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "user.slice").mkdir()
    (tmp_path / "user.slice" / "cpu.max").write_text("300000 100000\n")
    (tmp_path / "user.slice" / "job.scope").mkdir()
    (tmp_path / "user.slice" / "job.scope" / "cpu.max").write_text("max 100000\n")
    assert runtime._cgroup_cpu_quota(tmp_path, own) == 3.0  # the parent's limit applies to the child
    v1 = tmp_path / "cpu"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("150000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert runtime._cgroup_cpu_quota(tmp_path, own) == 1.5
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert runtime._cgroup_cpu_quota(tmp_path, tmp_path / "missing") is None  # root "max", v1 -1: unlimited


def test_measure_cpus_returns_sane_numbers():
    affinity, quota, busy = runtime._measure_cpus()  # whatever the load here: only the types and ranges
    assert affinity >= 1 and busy >= 0.0 and (quota is None or quota > 0)
