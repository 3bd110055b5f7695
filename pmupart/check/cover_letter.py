"""The series' cover-letter measurements, reproduced on the model (``pmupart experiment
cover-letter``).

The v1 cover letter of "ARM64 PMU Partitioning" (spec kvm-partitioning §3) compared two
identical 10-counter machines, one guest each, emulated vs partitioned vPMU:

1. ``time perf record -e <15 events> -F 1000 -- gzip -c <64 MiB>``: real and system time;
2. ``time perf stat -dd -- <SPECint2017>``: system time (and real time);
3. one vCPU pinned, ``perf record -e <15 events> -F 4000 -- stress-ng --cpu 0``: the host's
   ``mpstat`` shares, host kernel vs guest.

Here each is a scenario on a machine of two Cortex-A720 CPUs (FEAT_FGT, PMUv3p7) whose
``PMCR_EL0.N`` is overridden to 10, with one single-vCPU VM pinned to CPU 0, once on the
emulated vPMU and once partitioned (``reserved_host_counters = 0``, so both guests see 10
counters and the cycle counter).  The costs are the defaults of
:class:`~pmupart.kvm.options.KvmCosts` and :class:`~pmupart.host.kernel.HostCosts`, one set
for all three (docs/costs.md); nothing is fitted per experiment.

Workloads are rate models, scaled down so the whole experiment runs in seconds: a fixed
amount of work for 1 and 2 (overheads lengthen the run), a fixed duration for 3.  Only the
emulated-vs-partitioned ratios are compared with the published ones.

How the figures are read off the run (the model's accounting, documented in docs/costs.md):

* real time: when the vCPU retired its last instruction (it starts at 0, alone on its CPU);
* system time: the guest's kernel (EL1) share of the workload plus every EL2 nanosecond spent
  on the VM's behalf (traps, KVM's emulation and the host perf calls it makes, PMU
  interrupts, virtual interrupt injection, load/put swaps);
* system time, tick-accounted: what a guest's ``time`` would show with tick-based
  accounting: EL2 time under the guest's interrupt handlers is charged to the interrupted
  context, so only the kernel fraction of it is system time (the perf session's setup, in
  process context, counts in full);
* host kernel share: EL2 time on the vCPU's CPU over elapsed time; guest share: the
  vCPU's own work (EL0 and EL1) over elapsed time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pmupart.arch.events import Event, event_number
from pmupart.kvm.revision import REVISIONS
from pmupart.machine import Machine
from pmupart.report.experiment import PUBLISHED, ComparisonRow, Published
from pmupart.sim.session import RunResult, run_scenario
from pmupart.sim.spec import PerfMode, PerfSession, Phase, ScenarioSpec, VmSpec, Workload

__all__ = ["BACKENDS", "EXPERIMENTS", "Measurement", "cover_letter", "machine", "scenario"]

BACKENDS = ("emulated", "partitioned")

#: The cover letter's machine: 10 general-purpose counters.  Cortex-A720 (FGT, PMUv3p7,
#: 3 GHz in the catalogue) with PMCR_EL0.N given as 10 for this machine.
MACHINE: dict[str, Any] = {
    "name": "cover-letter-10-counters",
    "cluster": [{"core": "cortex-a720", "count": 2, "num_counters": 10}],
}
_FREQ_HZ = 3_000_000_000


def machine() -> dict[str, Any]:
    """The topology mapping of the experiment's machine (a fresh copy)."""
    return {"name": MACHINE["name"], "cluster": [dict(c) for c in MACHINE["cluster"]]}


def _ev(*names: str) -> tuple[int, ...]:
    return tuple(event_number(n) for n in names)


#: 15 hardware events for ``perf record -e`` (the cover letter does not list them; these are
#: the common PMUv3 ones a profile asks for).
EVENTS_15 = _ev("CPU_CYCLES", "INST_RETIRED", "BR_RETIRED", "BR_MIS_PRED_RETIRED",
                "L1D_CACHE", "L1D_CACHE_REFILL", "L1I_CACHE", "L1I_CACHE_REFILL", "L2D_CACHE",
                "L2D_CACHE_REFILL", "LL_CACHE_RD", "LL_CACHE_MISS_RD", "L1D_TLB_REFILL",
                "L1I_TLB_REFILL", "MEM_ACCESS")

#: ``perf stat -dd``'s hardware events as arm_pmuv3 maps them (armv8_pmuv3_perf_map and the
#: cache map): cycles, instructions, branches, branch-misses, stalled-cycles-frontend/backend;
#: -d: L1-dcache-loads/-load-misses, LLC-loads/-load-misses; -dd: L1-icache-loads/-load-misses,
#: dTLB-loads/-load-misses, iTLB-loads/-load-misses.  16 events on 10 + 1 counters.
EVENTS_DD = _ev("CPU_CYCLES", "INST_RETIRED", "BR_RETIRED", "BR_MIS_PRED", "STALL_FRONTEND",
                "STALL_BACKEND", "L1D_CACHE", "L1D_CACHE_REFILL", "LL_CACHE_RD",
                "LL_CACHE_MISS_RD", "L1I_CACHE", "L1I_CACHE_REFILL", "L1D_TLB",
                "L1D_TLB_REFILL", "L1I_TLB", "L1I_TLB_REFILL")

_RATES = Workload.rates_of({
    "BR_RETIRED": 0.17, "BR_MIS_PRED_RETIRED": 0.008, "BR_MIS_PRED": 0.008,
    "L1D_CACHE": 0.42, "L1D_CACHE_REFILL": 0.012, "L1I_CACHE": 0.26, "L1I_CACHE_REFILL": 0.002,
    "L2D_CACHE": 0.03, "L2D_CACHE_REFILL": 0.004, "LL_CACHE_RD": 0.004,
    "LL_CACHE_MISS_RD": 0.001, "L1D_TLB": 0.42, "L1D_TLB_REFILL": 0.001, "L1I_TLB": 0.26,
    "L1I_TLB_REFILL": 0.0002, "MEM_ACCESS": 0.42, "STALL_FRONTEND": 0.15,
    "STALL_BACKEND": 0.35})


@dataclass(frozen=True, slots=True)
class _Exp:
    key: str
    title: str
    workload: Workload
    session: PerfSession
    #: fixed work (instructions at scale 1), or None for a fixed duration
    work_s: float | None
    duration_s: float
    kernel_fraction: float


#: How often the guest's scheduler switches the benchmark's task out and back in, per
#: second: background wakeups (kworkers, RCU, timers, the shell and perf itself) on an
#: otherwise idle single-vCPU guest, each one preempting the CPU-bound task once.  An
#: assumption, not a measurement (docs/costs.md "Guest kernel"): no published switch rate
#: for these runs exists; it is the same for all three experiments and was set before they
#: were run.
GUEST_SWITCH_HZ = 100.0


def _workload(name: str, cpi: float, kernel_fraction: float, seconds: float | None,
              scale: float) -> Workload:
    inst = None if seconds is None else int(seconds * scale * _FREQ_HZ / cpi)
    return Workload(name, (Phase(rates=_RATES, cpi=(("*", cpi),),
                                 kernel_fraction=kernel_fraction),), instructions=inst,
                    ctx_switch_hz=GUEST_SWITCH_HZ)


def _experiments(scale: float) -> list[_Exp]:
    # 1. gzip: IPC ~2 on a big core; ~3% of its time in read()/write() (the published
    #    partitioned sys/real is 3.5%, perf's own work included).
    # 2. SPECint: IPC ~1.25, almost no kernel time (published partitioned sys/real 0.45%).
    # 3. stress-ng --cpu: pure user-space arithmetic.
    return [
        _Exp("gzip", "1 perf record -F 1000, 15 ev, gzip",
             _workload("gzip", 0.5, 0.03, 0.1, scale),
             PerfSession(EVENTS_15, mode=PerfMode.RECORD, freq=1000, scope="task:gzip"),
             0.1 * scale,
             0.5 * scale, 0.03),
        _Exp("spec", "2 perf stat -dd, SPECint",
             _workload("specint", 0.8, 0.004, 0.2, scale),
             PerfSession(EVENTS_DD, scope="task:specint"), 0.2 * scale, 0.5 * scale, 0.004),
        _Exp("stress", "3 perf record -F 4000, 15 ev, stress-ng",
             _workload("stress-ng", 1.0, 0.001, None, scale),
             PerfSession(EVENTS_15, mode=PerfMode.RECORD, freq=4000, scope="task:stress-ng"),
             None,
             0.04 * scale, 0.001),
    ]


EXPERIMENTS = ("gzip", "spec", "stress")


def scenario(key: str, backend: str, scale: float = 1.0, seed: int = 0) -> ScenarioSpec:
    """The scenario of experiment ``key`` (``gzip``, ``spec``, ``stress``) on ``backend``
    (``emulated`` or ``partitioned``) at ``scale`` (1.0: about 0.1 s of gzip work)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, not {scale!r}")
    exp = next((e for e in _experiments(scale) if e.key == key), None)
    if exp is None:
        raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, not {key!r}")
    part = backend == "partitioned"
    vm = VmSpec("vm0", vcpus=1, workload=exp.workload.name, partition=part, affinity=(0,),
                perf=exp.session)
    return ScenarioSpec(
        name=f"cover-letter-{key}-{backend}", machine=machine(),
        duration_ns=int(exp.duration_s * 1e9), seed=seed,
        description=f"{exp.title} ({backend} vPMU)",
        # the cover letter measured its own design: the intent (pmupart.kvm.revision)
        machine_options={"kvm_options": REVISIONS["intent"],
                         **({"reserved_host_counters": 0} if part else {})},
        vms=(vm,), workloads={exp.workload.name: exp.workload})


@dataclass
class Measurement:
    """What one run of one experiment gave (times in simulated ns)."""

    key: str
    backend: str
    real_ns: int  #: when the workload finished (fixed work), or the elapsed time
    sys_ns: int  #: guest kernel work + EL2 time for the VM
    #: as a guest's tick-based accounting would see it: EL2 time in the session's setup
    #: (perf_event_open: process context) is system time, while EL2 time under the guest's
    #: interrupt handlers (PMU overflow, the multiplexing hrtimer) goes to whatever the
    #: interrupted context was: system time for the kernel fraction only
    sys_tick_ns: int
    el2_ns: int  #: EL2 time on the VM's behalf
    #: EL2 time in host interrupt context (the host's PMU and timer interrupts and the world
    #: switch of the exits they cause), which the host's accounting does not show as system
    #: time: ``kvm_arch_vcpu_ioctl_run`` takes pending host interrupts before
    #: ``guest_timing_exit_irqoff``, so a tick there counts as guest time, and with
    #: CONFIG_IRQ_TIME_ACCOUNTING the handler's time is %irq
    irq_el2_ns: int
    guest_ns: int  #: the vCPU's own work (EL0 + EL1), the guest kernel's perf work included
    elapsed_ns: int
    finished: bool
    traps: int
    perf_events_created: int
    pmu_irqs: int
    virqs: int
    samples: int
    wall_s: float
    el2_by_reason: dict[str, int] = field(default_factory=dict)

    #: guest kernel perf work by kind (GuestWork.count / cycles) and its process-context ns
    guest_work: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def host_kernel_share(self) -> float:
        """mpstat's %sys on the vCPU's CPU: EL2 time outside host interrupt context."""
        return 100.0 * (self.el2_ns - self.irq_el2_ns) / max(1, self.elapsed_ns)

    @property
    def host_irq_share(self) -> float:
        return 100.0 * self.irq_el2_ns / max(1, self.elapsed_ns)

    @property
    def guest_share(self) -> float:
        return 100.0 * self.guest_ns / max(1, self.elapsed_ns)


#: EL2 reasons that are host interrupt context (see :attr:`Measurement.irq_el2_ns`)
IRQ_REASONS = ("pmu_irq", "kvm_irq_exit", "host_timer_irq", "vgic_maintenance")


def measure(key: str, backend: str, result: RunResult, kernel_fraction: float,
            el2_at_done: dict[tuple[str, str], int] | None = None,
            el2_at_start: dict[tuple[str, str], int] | None = None) -> Measurement:
    """Read an experiment's figures off its run (the rules in the module docstring).
    ``el2_at_done``: the EL2 time by (party, reason) when the workload finished (so the
    perf session's teardown after it is not counted); ``el2_at_start``: when it started
    (after the session's setup), for the tick-accounted system time."""
    ctx = next(c for c in result.contexts if c.vcpu is not None)
    vm = ctx.vcpu.vm.name if ctx.vcpu is not None else "vm0"
    host = result.machine.host
    by_reason: dict[str, int] = {}
    el2_ns = el2_at_done if el2_at_done is not None else dict(host.stats.el2_ns)
    for (party, reason), ns in sorted(el2_ns.items()):
        if party == vm:
            by_reason[reason] = by_reason.get(reason, 0) + ns
    el2 = sum(by_reason.values())
    setup = sum(ns for (party, _r), ns in (el2_at_start or {}).items() if party == vm)
    finished = ctx.finish_ns is not None
    elapsed = ctx.finish_ns if ctx.finish_ns is not None else host.cpus[0].now_ns
    # The vCPU's own execution time, from the cycles it retired (exact; the engine's
    # work_ns counts the whole last block even when the work ends inside it).
    freq = host.cpus[ctx.affinity[0]].freq_mhz
    drv = ctx.driver
    gw = drv.work if drv is not None else None
    # the workload's own cycles: the ground truth less the guest kernel's perf work
    work = (ctx.truth.get(int(Event.CPU_CYCLES), 0)
            - (sum(gw.cycles.values()) if gw else 0)) * 1000 // freq
    kernel = int(work * kernel_fraction)
    stats = ctx.vcpu.stats if ctx.vcpu is not None else None
    # The guest kernel's perf work: in interrupt context (PMU interrupt entry, samples, the
    # tick) and in process context (task switches, whose traps' EL2 time is in process_ns).
    irq_kernel = sum(c for k, c in gw.cycles.items() if k != "ctx_switch_kernel") \
        * 1000 // freq if gw else 0
    proc_kernel = gw.cycles.get("ctx_switch_kernel", 0) * 1000 // freq if gw else 0
    proc_el2 = max(0, (gw.process_ns if gw else 0) - proc_kernel)
    irq_el2 = sum(by_reason.get(r, 0) for r in IRQ_REASONS)
    # Tick accounting in the guest: process-context kernel time is system time; time under
    # an interrupt handler (EL2 time of its traps included) goes to the interrupted context,
    # which is the kernel for the workload's kernel fraction only.
    in_irq = max(0, el2 - setup - proc_el2) + irq_kernel
    return Measurement(
        key, backend, real_ns=elapsed, sys_ns=kernel + el2 + irq_kernel + proc_kernel,
        sys_tick_ns=kernel + setup + proc_kernel + proc_el2 + int(kernel_fraction * in_irq),
        el2_ns=el2, irq_el2_ns=irq_el2,
        guest_ns=work + irq_kernel + proc_kernel, elapsed_ns=elapsed, finished=finished,
        traps=sum(stats.traps.values()) if stats else 0,
        perf_events_created=stats.perf_events_created if stats else 0,
        pmu_irqs=host.stats.pmu_irqs, virqs=stats.irqs_injected if stats else 0,
        samples=sum(drv.samples) if drv else 0, wall_s=result.wall_s,
        el2_by_reason=by_reason,
        guest_work={k: (n, gw.cycles.get(k, 0)) for k, n in sorted(gw.count.items())}
        if gw else {})


def run_one(key: str, backend: str, scale: float = 1.0, seed: int = 0, *,
            fast_forward: bool = True) -> Measurement:
    """Run experiment ``key`` on ``backend`` and measure it; ``fast_forward=False`` runs it
    in full detail (the engine's sampling windows skip ahead on long runs otherwise)."""
    exp = next(e for e in _experiments(scale) if e.key == key)
    t0 = time.perf_counter()
    at_done: dict[tuple[str, str], int] = {}
    seen: list[Machine] = []

    at_first: dict[tuple[str, str], int] = {}
    started: list[bool] = []

    class OnDone:
        """Notes the EL2 time when the workload starts and ends (engine events only)."""

        engine_events_only = True

        def __call__(self, kind: str, data: dict[str, Any]) -> None:
            if kind == "start":
                seen.append(data["machine"])
            elif kind == "retire" and seen and not started:
                started.append(True)  # the perf session is set up: the workload starts
                at_first.update(seen[0].host.stats.el2_ns)
            elif kind == "done" and seen and not at_done:
                at_done.update(seen[0].host.stats.el2_ns)

    r = run_scenario(scenario(key, backend, scale, seed), listeners=[OnDone()],
                     fast_forward=fast_forward)
    m = measure(key, backend, r, exp.kernel_fraction, at_done or None, at_first)
    m.wall_s = time.perf_counter() - t0
    if exp.work_s is not None and not m.finished:
        raise RuntimeError(f"{key}/{backend}: the workload did not finish in "
                           f"{exp.duration_s:.3f} simulated s; raise the duration")
    return m


def _pub(metric: str, exp_prefix: str) -> Published:
    return next(p for p in PUBLISHED if p.metric == metric and p.experiment.startswith(
        exp_prefix))


#: ``--full``: the published durations, as scales of the experiments (scale 1 is 0.1 s of
#: gzip work, 0.2 s of SPECint work, 40 ms of stress-ng): 4 s of gzip work, 60 s of SPECint
#: work (the published run took an hour; 60 s is the issue's floor), 30 s of stress-ng
#: (``--timeout 30``).
FULL_SCALES: dict[str, float] = {"gzip": 40.0, "spec": 300.0, "stress": 750.0}


def cover_letter(scale: float = 1.0, seed: int = 0,
                 progress: Callable[[str], None] | None = None,
                 scales: Mapping[str, float] | None = None, jobs: int = 1
                 ) -> tuple[list[ComparisonRow], dict[str, dict[str, Measurement]]]:
    """Run all three experiments on both backends; the comparison rows and the raw
    measurements (``[key][backend]``).  ``scales``: a scale per experiment (overrides
    ``scale``; :data:`FULL_SCALES` for the published durations); ``jobs`` > 1 runs that many
    at once in worker processes (each run is deterministic, so the results are the same)."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, not {jobs}")
    todo = [(key, backend, (scales or {}).get(key, scale)) for key in EXPERIMENTS
            for backend in BACKENDS]
    runs: dict[str, dict[str, Measurement]] = {}
    if jobs == 1:
        for key, backend, sc in todo:
            if progress is not None:
                progress(f"{key} on the {backend} vPMU (scale {sc:g})")
            runs.setdefault(key, {})[backend] = run_one(key, backend, sc, seed)
    else:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futs = {(key, backend): pool.submit(run_one, key, backend, sc, seed)
                    for key, backend, sc in todo}
            for (key, backend), fut in futs.items():
                runs.setdefault(key, {})[backend] = fut.result()
                if progress is not None:
                    progress(f"{key} on the {backend} vPMU: done")
    g, s, st = runs["gzip"], runs["spec"], runs["stress"]
    ms = 1e-6
    rows = [
        ComparisonRow(_pub("real time", "1"), g["emulated"].real_ns * ms,
                      g["partitioned"].real_ns * ms, "ms"),
        ComparisonRow(_pub("sys time", "1"), g["emulated"].sys_ns * ms,
                      g["partitioned"].sys_ns * ms, "ms"),
        ComparisonRow(_pub("sys time", "1"), g["emulated"].sys_tick_ns * ms,
                      g["partitioned"].sys_tick_ns * ms, "ms", "sys time, tick-accounted"),
        ComparisonRow(_pub("real time", "2"), s["emulated"].real_ns * ms,
                      s["partitioned"].real_ns * ms, "ms"),
        ComparisonRow(_pub("sys time", "2"), s["emulated"].sys_ns * ms,
                      s["partitioned"].sys_ns * ms, "ms"),
        ComparisonRow(_pub("sys time", "2"), s["emulated"].sys_tick_ns * ms,
                      s["partitioned"].sys_tick_ns * ms, "ms", "sys time, tick-accounted"),
        ComparisonRow(_pub("host kernel share", "3"), st["emulated"].host_kernel_share,
                      st["partitioned"].host_kernel_share),
        ComparisonRow(_pub("guest share", "3"), st["emulated"].guest_share,
                      st["partitioned"].guest_share),
    ]
    return rows, runs


def format_runs(runs: dict[str, dict[str, Measurement]]) -> str:
    """What the model did in each run: traps, perf events, interrupts, EL2 time by reason."""
    head = ("run", "traps", "perf ev created", "PMU IRQs", "vIRQs", "samples", "EL2 ms",
            "top EL2 reasons (ms)")
    body: list[tuple[str, ...]] = []
    for key in EXPERIMENTS:
        for backend in BACKENDS:
            m = runs[key][backend]
            top = sorted(m.el2_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
            body.append((f"{key}/{backend}", str(m.traps), str(m.perf_events_created),
                         str(m.pmu_irqs), str(m.virqs), str(m.samples),
                         f"{m.el2_ns / 1e6:.3f}",
                         ", ".join(f"{r} {ns / 1e6:.2f}" for r, ns in top)))
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i in (0, 7) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(head), "  ".join("-" * w for w in widths),
                      *(line(b) for b in body)]) + "\n"
