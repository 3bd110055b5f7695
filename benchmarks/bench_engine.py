"""Benchmark the engine on the issue-4 scenario (a whole host with its guests).

Not a test: run ``python benchmarks/bench_engine.py [SECONDS]`` and read the figures.

The scenario: 8 CPUs in two clusters (4x Cortex-A720, 4x Cortex-A520, both FEAT_FGT), 4 VMs
of 2 vCPUs each on the partitioned vPMU (``--backend emulated`` for the upstream one), each
guest running ``perf stat`` on 6 events, the host ``perf stat -a`` on 4 events, 1 ms time
slices, a compute workload everywhere.  Two configurations:

* uncontended: 10-counter cores, ``reserved_host_counters = 4``: every event has a counter
  (the guests get 6 + the cycle counter, the host 4);
* contended: 6-counter cores, ``reserved_host_counters = 2``: the guests multiplex 6 events
  on 4 + 1 counters, the host 4 events on 2 (perf rotates them every 4 ms);
* phased (``--configs phased``, not run by default): the contended machine running a workload
  of two phases, 2 s and 1 s, repeated (fast-forward skips inside each phase);
* migrating (``--configs migrating``, not run by default): the contended machine with every
  vCPU moved to its next CPU each 500 ms (fast-forward skips between migrations);
* host-record (``--configs host-record``, not run by default): the contended machine with the
  host running ``perf record -a -F 1000`` on cycles and instructions instead of ``perf
  stat`` (fast-forward skips by host sampling windows).

It prints, for each configuration: simulated seconds per wall second over SECONDS simulated
seconds (default 60; the issue's target is at least 100) with the engine's fast-forward on
(the default of ``run_scenario``), and over ``--detailed`` seconds (default 2) with it off;
the wall time at 1x, 4x and 16x a base duration (``--base``, default 0.1 s) and at 8, 32 and
128 CPUs (4, 16 and 64 VMs, the base duration), detailed (wall per unit of work relative to
the first point: 1.00 is linear) and with fast-forward (which skips steady stretches, so its
cost is mostly the detailed start of a run); and a determinism check: two runs with the same
seed give the same result digest (SHA-256 of the run's JSON report).

With 8 vCPUs on 8 CPUs each CPU runs one vCPU, so the 1 ms slice never preempts; the
contended case is what exercises perf's multiplexing (host and guest rotations).  Wall times
depend on the machine and its load: read the ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from typing import Any

from pmupart.arch.events import event_number
from pmupart.kvm.options import KvmOptions  # the intent design
from pmupart.sim.session import RunResult, run_scenario
from pmupart.sim.spec import (
    MigrationPolicy,
    MigrationSpec,
    PerfMode,
    PerfSession,
    Phase,
    ScenarioSpec,
    VmSpec,
    Workload,
)
from pmupart.sim.summary import to_json

GUEST_EVENTS = tuple(event_number(e) for e in (
    "CPU_CYCLES", "INST_RETIRED", "L1D_CACHE", "L1D_CACHE_REFILL", "BR_RETIRED",
    "BR_MIS_PRED"))
HOST_EVENTS = tuple(event_number(e) for e in (
    "CPU_CYCLES", "INST_RETIRED", "L1D_CACHE", "BR_RETIRED"))
COMPUTE = Workload("compute", (Phase(rates=Workload.rates_of(
    {"L1D_CACHE": 0.4, "L1D_CACHE_REFILL": 0.01, "BR_RETIRED": 0.15, "BR_MIS_PRED": 0.005}),
    kernel_fraction=0.05),))
#: the contended configuration's workload in two phases, repeated: 2 s of it, then 1 s with
#: 10x the cache refills and a quarter of the time in the kernel
PHASED = Workload("compute", (
    Phase(2_000_000_000, COMPUTE.phases[0].rates, kernel_fraction=0.05),
    Phase(1_000_000_000, Workload.rates_of(
        {"L1D_CACHE": 0.3, "L1D_CACHE_REFILL": 0.1, "BR_RETIRED": 0.1, "BR_MIS_PRED": 0.01}),
        kernel_fraction=0.25)))
CONFIGS: dict[str, dict[str, Any]] = {
    "uncontended": {"counters": 10, "reserved": 4},
    "contended": {"counters": 6, "reserved": 2},
    "phased": {"counters": 6, "reserved": 2, "workload": PHASED},
    "migrating": {"counters": 6, "reserved": 2,
                  "migration": MigrationSpec(MigrationPolicy.PERIODIC, 500_000_000)},
    "host-record": {"counters": 6, "reserved": 2, "host_perf": PerfSession(
        HOST_EVENTS[:2], mode=PerfMode.RECORD, freq=1000)},
}


def spec(config: str, seconds: float, cpus: int = 8, backend: str = "partitioned",
         seed: int = 0) -> ScenarioSpec:
    """The benchmark scenario with ``cpus`` CPUs (two equal clusters) and ``cpus / 2`` VMs."""
    c = CONFIGS[config]
    half = cpus // 2
    machine: dict[str, Any] = {"name": f"bench-{cpus}", "cluster": [
        {"core": "cortex-a720", "count": half, "num_counters": c["counters"]},
        {"core": "cortex-a520", "count": cpus - half, "num_counters": c["counters"]}]}
    part = backend == "partitioned"
    vms = tuple(VmSpec(f"vm{i}", vcpus=2, workload="compute", partition=part,
                       affinity=tuple(range(cpus)), perf=PerfSession(GUEST_EVENTS))
                for i in range(cpus // 2))
    return ScenarioSpec(
        name=f"bench-engine-{config}", machine=machine, duration_ns=int(seconds * 1e9),
        seed=seed, slice_ns=1_000_000,
        machine_options={"kvm_options": KvmOptions(),
                         **({"reserved_host_counters": c["reserved"]} if part else {})},
        vms=vms, host_perf=(c.get("host_perf", PerfSession(HOST_EVENTS)),),
        migration=c.get("migration", MigrationSpec()),
        workloads={"compute": c.get("workload", COMPUTE)})


def timed(s: ScenarioSpec, ff: bool = True) -> tuple[float, RunResult]:
    t0 = time.perf_counter()
    r = run_scenario(s, fast_forward=ff)
    return time.perf_counter() - t0, r


def digest(r: RunResult) -> str:
    doc = json.dumps(to_json(r), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def linearity(walls: list[float]) -> str:
    """Wall time per unit of work, relative to the first point (1.00 = linear; below 1 when
    a fixed cost, building the machine, weighs on the small run)."""
    base = walls[0]
    return " ".join(f"{w / (base * k):.2f}" for w, k in zip(walls, (1, 4, 16), strict=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seconds", nargs="?", type=float, default=60.0,
                    help="simulated seconds for the throughput figure (default 60)")
    ap.add_argument("--detailed", type=float, default=2.0,
                    help="simulated seconds for the throughput without fast-forward (default 2)")
    ap.add_argument("--base", type=float, default=0.1,
                    help="base simulated duration of the scaling runs (default 0.1 s)")
    ap.add_argument("--backend", choices=("partitioned", "emulated"), default="partitioned")
    ap.add_argument("--configs", default="uncontended,contended")
    ap.add_argument("--no-scaling", action="store_true", help="only the throughput figures")
    a = ap.parse_args()
    print(f"pmupart engine benchmark: 2 clusters (A720 + A520), 2-vCPU VMs ({a.backend}), "
          f"guest perf stat 6 events, host perf stat -a 4 events, 1 ms slices")
    for config in a.configs.split(","):
        c = CONFIGS[config]
        print(f"\n== {config}: {c['counters']}-counter cores, reserved_host_counters="
              f"{c['reserved']} ==")
        wall, r = timed(spec(config, a.seconds, backend=a.backend))
        host_rot = r.machine.host.stats.rotations
        guest_rot = sum(cx.driver.rotations for cx in r.contexts if cx.driver is not None)
        print(f"throughput, 8 CPUs, 4 VMs: {a.seconds:g} simulated s in {wall:.2f} s wall = "
              f"{a.seconds / wall:.1f} simulated s per wall s (fast-forward on; host "
              f"rotations {host_rot}, guest rotations {guest_rot})")
        wall, _ = timed(spec(config, a.detailed, backend=a.backend), ff=False)
        print(f"throughput, detailed: {a.detailed:g} simulated s in {wall:.2f} s wall = "
              f"{a.detailed / wall:.2f} simulated s per wall s (fast-forward off)")
        if not a.no_scaling:
            for label, specs in (
                    (f"duration {a.base:g}/{a.base * 4:g}/{a.base * 16:g} s",
                     [spec(config, a.base * k, backend=a.backend) for k in (1, 4, 16)]),
                    (f"CPUs 8/32/128 (4/16/64 VMs), {a.base:g} s",
                     [spec(config, a.base, cpus=n, backend=a.backend) for n in (8, 32, 128)])):
                det = [timed(x, ff=False)[0] for x in specs]
                fast = [timed(x)[0] for x in specs]
                print(f"{label}: detailed " + " ".join(f"{w:.2f}" for w in det)
                      + f" s wall (per unit of work vs 1x: {linearity(det)}); "
                      + "fast-forward " + " ".join(f"{w:.2f}" for w in fast) + " s")
        d1 = digest(timed(spec(config, a.base, seed=7, backend=a.backend))[1])
        d2 = digest(timed(spec(config, a.base, seed=7, backend=a.backend))[1])
        print(f"determinism: seed 7 twice -> {d1} {d2}: {'same' if d1 == d2 else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
