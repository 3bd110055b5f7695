"""Benchmark sweeps: serial against a Dask LocalCluster, the scheduler's cost per task, and
memory over a long sweep of tiny runs.

Not a test: run ``python benchmarks/bench_sweep.py`` and read the figures.  Three parts:

1. **Speed-up.**  A 200-point sweep (``--points``; runs of 50 ms or more: the 6-CPU
   ``rk3399`` machine, a partitioned or emulated guest on ``perf stat`` with 4 events, the
   host's ``perf stat -a``, random migrations every 2 ms so that the engine's fast-forward
   has no steady stretch to skip, 200 ms simulated) runs serially in this process
   (``execute(workers=0)``); then, for the ceiling, in as many plain processes as workers
   (``multiprocessing``, no Dask), each running its share serially; then on a
   ``LocalCluster`` of ``--workers`` processes (default 2) with the automatic batch size.
   The cluster is started and its workers have imported pmupart before the clock starts (a
   one-off cost, printed apart).  The issue's target on this 2-core machine: at least 1.8x
   the serial rate.  Both tables must be identical.
2. **Scheduler overhead per task.**  The same sweep with one run per task (``batch = 1``,
   the worst case): overhead per task = (workers x wall - the runs' own time) / tasks, as a
   share of the mean run time.  Target: under 5% for runs of 50 ms or more.  (Part 1 prints
   the same figure per run with the automatic batches.)  Idle time the workers spend waiting
   for a CPU the scheduler and this process hold counts as overhead here.
3. **Memory.**  A ``--memory-points`` (default 10,000) sweep of tiny runs (1 ms simulated)
   on the cluster: the resident memory of this process (client and scheduler) and of each
   worker, sampled as rows arrive, at 10%, 50% and 100%.

Wall times depend on the machine and on its load (the machine is shared: the load average is
printed at the start and the end, and how many cores' worth of time two bare busy loops get
at once: 2.0 on an idle 2-core machine).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any

from pmupart.sweep import execute, load_sweep_text
from pmupart.sweep.executor import auto_batch

BASE = """\
[sweep]
name = "bench"
seed = 1
{extra}

[base.scenario]
name = "bench"
duration = "{duration}"

[base.machine]
preset = "rk3399"

[base.workload.compute]
rates = {{ L1D_CACHE = 0.4, BR_RETIRED = 0.15 }}

[base.workload.daemon]
kernel_fraction = 0.3
rates = {{ L1D_CACHE = 0.3 }}

[[base.host.task]]
name = "daemon"
affinity = "0-3"
workload = "daemon"

[[base.vm]]
name = "vm0"
partition = true
affinity = "0-3"
workload = "compute"
perf = {{ events = ["CPU_CYCLES", "INST_RETIRED", "L1D_CACHE", "BR_RETIRED"] }}

[[base.host.perf]]
scope = "system"
events = ["CPU_CYCLES", "INST_RETIRED", "L1D_CACHE"]
exclude_guest = true

[base.migration]
policy = "random"
interval = "2ms"

[[axis]]
key = "machine.reserved_host_counters"
name = "reserved"
range = {{ first = 0, last = 3 }}

[[axis]]
key = "vm[0].partition"
values = [true, false]

[[axis]]
key = "seed"
sample = {{ count = {replicas}, seed = 2, low = 0, high = 1000000000 }}

[[metric]]
name = "guest_cycles"
path = "vms[vm0].perf_stat[cpu_cycles].counter-value"
relative_to = "vms[vm0].perf_stat[cpu_cycles].retired"
"""


def sweep_of(points: int, duration: str, extra: str = "") -> Any:
    replicas = max(1, -(-points // 8))
    sw = load_sweep_text(BASE.format(duration=duration, replicas=replicas, extra=extra),
                         "bench_sweep.toml")
    import dataclasses
    return dataclasses.replace(sw, points=sw.points[:points])


def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def loadavg() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.2f} {b:.2f} {c:.2f}"


def rss_mb(pid: int) -> float:
    import psutil

    return float(psutil.Process(pid).memory_info().rss) / 2**20


def _spin(n: int) -> float:
    t = time.perf_counter()
    x = 0
    for i in range(n):
        x += i * i
    return time.perf_counter() - t


def cores_free(workers: int) -> float:
    """How many cores this machine gives ``workers`` busy loops at once just now (``workers``
    on an idle machine)."""
    import multiprocessing as mp

    n = 10_000_000
    alone = _spin(n)
    with mp.get_context("spawn").Pool(workers) as pool:
        together = pool.map(_spin, [n] * workers)
    return workers * alone / statistics.fmean(together)


def _warm(_: int) -> None:
    execute(sweep_of(2, "1ms"), workers=0)


def _run_points(arg: tuple[int, str, list[int]]) -> None:
    points, duration, which = arg
    import dataclasses
    sw = sweep_of(points, duration)
    execute(dataclasses.replace(sw, points=tuple(sw.points[i] for i in which)), workers=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--duration", default="200ms", help="simulated time of each speed-up run")
    ap.add_argument("--memory-points", type=int, default=10_000)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--worker-profile", action="store_true",
                    help="leave Dask's worker profiler on (pmupart sweep turns it off)")
    args = ap.parse_args()

    from distributed import LocalCluster

    print(f"load average at start: {loadavg()} ({os.cpu_count()} CPUs); {args.workers} busy "
          f"loops at once get {cores_free(args.workers):.2f} cores' worth now")
    sw = sweep_of(args.points, args.duration)
    execute(sweep_of(4, args.duration), workers=0)  # warm this process's imports
    t0 = time.perf_counter()
    serial = execute(sw, workers=0)
    t_serial = time.perf_counter() - t0
    runs = [r["wall_s"] for r in serial]
    mean_run = statistics.fmean(runs)
    print(f"\n1. {len(sw.points)} points, runs of {1e3 * mean_run:.1f} ms mean "
          f"(min {1e3 * min(runs):.1f}, max {1e3 * max(runs):.1f})")
    print(f"   serial (in-process):           {t_serial:7.2f} s  "
          f"{len(runs) / t_serial:6.1f} runs/s")

    import multiprocessing as mp

    halves = [sw.points[i::args.workers] for i in range(args.workers)]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        pool.map(_warm, range(args.workers))
        t0 = time.perf_counter()
        pool.map(_run_points, [(args.points, args.duration, [p.index for p in h])
                               for h in halves])
        t_mp = time.perf_counter() - t0
    print(f"   {args.workers} plain processes (no Dask):  {t_mp:7.2f} s  "
          f"{len(runs) / t_mp:6.1f} runs/s  = {t_serial / t_mp:.2f}x serial (what this "
          "machine gives two processes now: the ceiling for Dask)")

    t0 = time.perf_counter()
    import dask

    profile = {"distributed.worker.profile.enabled": args.worker_profile}
    with dask.config.set(profile), \
            LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                         dashboard_address=":0", silence_logs=logging.ERROR) as cluster:
        execute(sweep_of(2 * args.workers, "1ms"), scheduler=cluster.scheduler_address,
                batch=1)  # every worker imports pmupart
        t_start = time.perf_counter() - t0
        t0 = time.perf_counter()
        par = execute(sw, scheduler=cluster.scheduler_address, workers=args.workers)
        t_par = time.perf_counter() - t0
        assert strip(par) == strip(serial), "the cluster's table differs from the serial one"
        speed = t_serial / t_par
        print(f"   LocalCluster({args.workers}), auto batch:  {t_par:7.2f} s  "
              f"{len(par) / t_par:6.1f} runs/s  = {speed:.2f}x serial "
              f"(target >= 1.8x; cluster start + imports {t_start:.1f} s apart; "
              f"{speed * t_par / (t_par + t_start):.2f}x counting them)")
        own_par = sum(r["wall_s"] for r in par)
        per_run = (args.workers * t_par - own_par) / len(par)
        print(f"   tables identical: yes; cost beyond the runs: {1e3 * per_run:.2f} ms per run "
              f"= {100 * per_run / statistics.fmean(r['wall_s'] for r in par):.1f}% of the mean "
              f"run, batches of {auto_batch(len(par), args.workers)}")

        t0 = time.perf_counter()
        one = execute(sw, scheduler=cluster.scheduler_address, workers=args.workers, batch=1)
        t_one = time.perf_counter() - t0
        own = sum(r["wall_s"] for r in one)
        per_task = (args.workers * t_one - own) / len(one)
        print(f"\n2. one run per task ({len(one)} tasks): {t_one:.2f} s wall, "
              f"{own:.2f} s in the runs over {args.workers} workers")
        print(f"   scheduler overhead per task: {1e3 * per_task:.2f} ms = "
              f"{100 * per_task / statistics.fmean(r['wall_s'] for r in one):.1f}% of the mean "
              f"run ({1e3 * statistics.fmean(r['wall_s'] for r in one):.1f} ms; target < 5%)")
        assert strip(one) == strip(serial)

        if not args.skip_memory:
            big = sweep_of(args.memory_points, "1ms")
            pids = {name: w.process.pid for name, w in cluster.workers.items()}
            marks = {max(1, len(big.points) * k // 10): f"{10 * k}%" for k in (1, 5, 10)}
            seen: list[str] = []

            def sample(rows: list[dict[str, Any]], done: int, total: int) -> None:
                hit = [m for m in marks if done >= m and marks[m] not in {s.split()[0]
                                                                          for s in seen}]
                for m in hit:
                    ws = " ".join(f"{rss_mb(p):.0f}" for p in pids.values())
                    seen.append(f"{marks[m]} ({done} rows): this process "
                                f"{rss_mb(os.getpid()):.0f} MiB, workers {ws} MiB")

            ck_dir = Path(os.environ.get("TMPDIR", "/tmp"))
            from pmupart.sweep import Checkpoint
            ck = Checkpoint(ck_dir / f"bench_sweep_{os.getpid()}.ckpt.jsonl", big)
            t0 = time.perf_counter()
            rows = execute(big, scheduler=cluster.scheduler_address, workers=args.workers,
                           checkpoint=ck, on_rows=sample)
            t_big = time.perf_counter() - t0
            ck.remove()
            print(f"\n3. {len(rows)} tiny runs (1 ms simulated) in {t_big:.1f} s on the "
                  f"cluster ({len(rows) / t_big:.0f} runs/s), checkpointed; resident memory:")
            for s in seen:
                print(f"   {s}")
    print(f"\nload average at end: {loadavg()}")


if __name__ == "__main__":
    main()
