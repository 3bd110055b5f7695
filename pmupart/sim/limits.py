"""Run sizes: what the loader refuses and what deserves a warning before a long run.

* ``perf record -F`` above ``perf_event_max_sample_rate`` is refused, as perf_event_open()
  refuses it with EINVAL (kernel/events/core.c: ``attr.sample_freq >
  sysctl_perf_event_sample_rate``); the sysctl's default is 100000
  (``DEFAULT_MAX_SAMPLE_RATE``), a scenario sets it with ``[host]
  perf_event_max_sample_rate`` as ``/proc/sys/kernel/perf_event_max_sample_rate`` does.
* A sample period below :data:`MIN_PERIOD` events is refused: every sample is simulated
  one by one, and a smaller period makes a run of milliseconds take hours.
* :func:`check_sizes` estimates the wall time of a run and warns above
  :data:`WARN_WALL_S` seconds, with the estimate.
"""

from __future__ import annotations

from pmupart.sim.spec import PerfMode, ScenarioSpec

DEFAULT_MAX_SAMPLE_RATE = 100_000
MIN_PERIOD = 1_000
WARN_WALL_S = 60.0
#: rough simulation speeds on this project's reference machine (2 cores, loaded): samples
#: simulated per wall second, and CPU-seconds of simulated time per wall second
SAMPLES_PER_WALL_S = 20_000
CPU_S_PER_WALL_S = 20.0


def estimate_wall_s(spec: ScenarioSpec) -> float:
    """A rough wall-time estimate (seconds) of running ``spec``."""
    secs = spec.duration_ns / 1e9
    topo = spec.machine
    ncpus = len(getattr(topo, "cpus", ()) or ()) or 8
    samples = 0.0
    for vm in spec.vms:
        p = vm.perf
        if p is not None and p.mode is PerfMode.RECORD:
            rate = p.freq if p.freq else 2e9 / max(1, p.period)
            samples += rate * len(p.events) * secs * vm.vcpus
    for p in spec.host_perf:
        if p.mode is PerfMode.RECORD:
            rate = p.freq if p.freq else 2e9 / max(1, p.period)
            samples += rate * len(p.events) * secs * ncpus
    return samples / SAMPLES_PER_WALL_S + secs * ncpus / CPU_S_PER_WALL_S


def check_sizes(spec: ScenarioSpec) -> list[str]:
    """Warnings for a run whose estimated wall time is long."""
    est = estimate_wall_s(spec)
    if est <= WARN_WALL_S:
        return []
    return [f"this run may take about {est / 60:.0f} min of wall time "
            f"({spec.duration_ns / 1e9:g} s simulated; sampling sessions are simulated "
            "sample by sample): try a shorter --duration"]
