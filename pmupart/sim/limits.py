"""Run sizes: what the loader refuses and what deserves a warning before a long run.

* ``perf record -F`` above ``perf_event_max_sample_rate`` is refused, as perf_event_open()
  refuses it with EINVAL (kernel/events/core.c: ``attr.sample_freq >
  sysctl_perf_event_sample_rate``); the sysctl's default is 100000
  (``DEFAULT_MAX_SAMPLE_RATE``), a scenario sets it with ``[host]
  perf_event_max_sample_rate`` as ``/proc/sys/kernel/perf_event_max_sample_rate`` does.
* A sample period below :data:`MIN_PERIOD` events is refused: every sample is simulated
  one by one, and a smaller period makes a run of milliseconds take hours.
* :func:`check_sizes` estimates the wall time of a run and warns above
  :data:`WARN_WALL_S` seconds, with the estimate.  A guest sampling session on a CPU of its
  own is simulated in detail only until the engine's sampling windows have found it steady
  (about :data:`SAMPLING_WARMUP_S` after its start, after each migration and after each
  change of its workload's phase, ``pmupart/sim/fastforward.py``); the rest is skipped
  ahead.  A host ``perf record`` is skipped ahead the same way (host sampling windows).
"""

from __future__ import annotations

from pmupart.sim.spec import MigrationPolicy, PerfMode, ScenarioSpec

DEFAULT_MAX_SAMPLE_RATE = 100_000
MIN_PERIOD = 1_000
WARN_WALL_S = 60.0
#: rough simulation speeds on this project's reference machine (2 cores, loaded): samples
#: simulated per wall second, and CPU-seconds of simulated time per wall second
SAMPLES_PER_WALL_S = 20_000
CPU_S_PER_WALL_S = 20.0
#: ... and CPU-seconds skipped ahead per wall second by the fast-forward (measured: 4,500 on
#: the contended engine benchmark, 7,500 uncontended; benchmarks/bench_engine.py)
FF_CPU_S_PER_WALL_S = 2000.0
#: simulated seconds a sampling vCPU runs in detail before its sampling windows skip ahead:
#: a rotation cycle to settle and two alike windows (0.24-0.29 s on the cover-letter runs)
SAMPLING_WARMUP_S = 0.3


def estimate_wall_s(spec: ScenarioSpec, *, fast_forward: bool = True) -> float:
    """A rough wall-time estimate (seconds) of running ``spec`` (``fast_forward``: as
    ``run_scenario`` takes it)."""
    secs = spec.duration_ns / 1e9
    topo = spec.machine
    ncpus = len(getattr(topo, "cpus", ()) or ()) or 8
    if isinstance(topo, dict) and isinstance(topo.get("cluster"), list):  # a machine table
        ncpus = sum(int(c.get("count", 1)) for c in topo["cluster"] if isinstance(c, dict)) \
            or ncpus
    threads = sum(vm.vcpus for vm in spec.vms) + sum(t.count for t in spec.host_tasks)
    mig = spec.migration
    moves = secs / (mig.interval_ns / 1e9) if mig.policy is not MigrationPolicy.NONE else 0.0
    samples = 0.0
    # guest and host sampling windows do not mix: with both, every sample is in detail
    host_rec = any(p.mode is PerfMode.RECORD for p in spec.host_perf)
    guest_rec = any(vm.perf is not None and vm.perf.mode is PerfMode.RECORD for vm in spec.vms)
    for vm in spec.vms:
        p = vm.perf
        if p is not None and p.mode is PerfMode.RECORD:
            detailed = secs
            if fast_forward and threads <= ncpus and not host_rec:
                changes = _phase_changes(spec, vm.workload, secs)
                detailed = min(secs, SAMPLING_WARMUP_S * (1 + moves + changes))
            rate = p.freq if p.freq else 2e9 / max(1, p.period)
            samples += rate * len(p.events) * detailed * vm.vcpus
    # what runs in detail on each CPU: a warm-up after the start, each migration and each
    # change of phase (the rest is skipped ahead), or all of it
    host_detailed = secs
    if fast_forward:
        changes = max((_phase_changes(spec, w, secs) for w in spec.workloads), default=0.0)
        host_detailed = min(secs, SAMPLING_WARMUP_S * (1 + moves + changes))
    for p in spec.host_perf:
        if p.mode is PerfMode.RECORD:  # host sampling windows (fastforward.py)
            rate = p.freq if p.freq else 2e9 / max(1, p.period)
            samples += rate * len(p.events) * (secs if guest_rec else host_detailed) * ncpus
    return (samples / SAMPLES_PER_WALL_S + host_detailed * ncpus / CPU_S_PER_WALL_S
            + (secs - host_detailed) * ncpus / FF_CPU_S_PER_WALL_S)


def _phase_changes(spec: ScenarioSpec, workload: str, secs: float) -> float:
    """About how many times a workload changes phase in ``secs`` (its phases repeat when
    all have a duration; a phase without one lasts to the end)."""
    wl = spec.workloads.get(workload)
    if wl is None:
        return 0.0
    changes = wl.changes()  # phases alike but for their length are one
    durs = [ph.duration_ns for ph in wl.phases]
    if not all(durs):  # no loop: the changes before the first phase without a length
        last = next((i for i, d in enumerate(durs) if d is None), len(durs))
        return float(sum(1 for i in changes if i <= last))
    total = sum(d or 0 for d in durs) / 1e9
    return secs / total * len(changes) if total > 0 else 0.0


def check_sizes(spec: ScenarioSpec, *, fast_forward: bool = True) -> list[str]:
    """Warnings for a run whose estimated wall time is long."""
    est = estimate_wall_s(spec, fast_forward=fast_forward)
    if est <= WARN_WALL_S:
        return []
    return [f"this run may take about {est / 60:.0f} min of wall time "
            f"({spec.duration_ns / 1e9:g} s simulated; sampling sessions are simulated "
            "sample by sample): try a shorter --duration"]
