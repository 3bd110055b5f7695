"""The engine benchmark's scenario (issue 4): built as specified, deterministic."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_engine.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_engine", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scenario_shape() -> None:
    b = bench()
    s = b.spec("contended", 0.01)
    assert len(s.vms) == 4 and all(v.vcpus == 2 for v in s.vms)
    assert all(len(v.perf.events) == 6 for v in s.vms)
    assert len(s.host_perf) == 1 and len(s.host_perf[0].events) == 4
    assert s.slice_ns == 1_000_000
    assert [c["count"] for c in s.machine["cluster"]] == [4, 4]
    assert len(b.spec("uncontended", 0.01, cpus=32).vms) == 16


def test_same_seed_same_digest() -> None:
    b = bench()
    _, r1 = b.timed(b.spec("contended", 0.02, seed=3))
    _, r2 = b.timed(b.spec("contended", 0.02, seed=3))
    assert b.digest(r1) == b.digest(r2)
    assert r1.machine.host.stats.rotations > 0  # the contended case multiplexes
