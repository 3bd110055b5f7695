"""The description of a run, as plain frozen values: what the scenario loader builds and what
:class:`~pmupart.sim.engine.Engine` runs.  Everything here is data; nothing runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from functools import lru_cache
from typing import Any, Literal

from pmupart.arch.events import event_number


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of a workload with steady behaviour.

    ``rates`` are events per instruction (``{"L1D_CACHE": 0.4}``); ``cpi`` overrides the
    core's typical CPI (per core name, or ``"*"`` for all); ``kernel_fraction`` is the share
    of time in the kernel (EL1 for a guest, EL2 for the VHE host kernel).
    """

    duration_ns: int | None = None  #: None: until the workload ends
    rates: tuple[tuple[int, float], ...] = ()
    cpi: tuple[tuple[str, float], ...] = ()
    kernel_fraction: float = 0.0
    #: per core type, rates that replace ``rates`` key by key on that core (a little core
    #: misses its caches more often, say)
    core_rates: tuple[tuple[str, tuple[tuple[int, float], ...]], ...] = ()

    def cpi_for(self, core: str, default: float) -> float:
        d = dict(self.cpi)
        return d.get(core, d.get("*", default))

    def rates_for(self, core: str) -> tuple[tuple[int, float], ...]:
        """The events per instruction on ``core``."""
        for name, over in self.core_rates:
            if name == core:
                merged = dict(self.rates)
                merged.update(over)
                return tuple(sorted(merged.items()))
        return self.rates


@dataclass(frozen=True, slots=True)
class Workload:
    """A rate-based program: phases, looped; optionally a fixed amount of work (instructions)
    after which it is done (so overheads lengthen its run time)."""

    name: str
    phases: tuple[Phase, ...] = (Phase(),)
    instructions: int | None = None  #: total work; None: runs for the whole scenario
    #: how often the guest scheduler switches the workload's task out for another and back
    #: in (per second); a guest's per-task perf session is scheduled out and in each time
    ctx_switch_hz: float = 0.0

    @staticmethod
    def rates_of(m: dict[str | int, float]) -> tuple[tuple[int, float], ...]:
        return tuple(sorted((event_number(k), float(v)) for k, v in m.items()))

    def changes(self) -> list[int]:
        """Indexes ``i`` where phase ``i`` behaves differently from the one before it (rates,
        CPI, kernel share; the duration aside), the phases looping when all have a duration:
        where the workload really changes (``[]``: it never does)."""
        return list(_changes(self.phases))

    def steady_until(self, t: int) -> int | None:
        """The workload time of the first change after workload time ``t`` (:meth:`changes`;
        the engine's fast-forward skips no further), or None when it never changes again.
        A phase without a duration lasts to the end; with all durations set the phases loop
        (as ``Context.phase_at`` takes them)."""
        durs = [p.duration_ns or 0 for p in self.phases]
        n = len(durs)
        loops = all(p.duration_ns for p in self.phases)
        starts = [sum(durs[:i]) for i in range(n)]
        total = sum(durs)
        base = 0
        changes = self.changes()
        if loops:
            base = t - t % total
        else:
            # the first phase without a duration lasts to the end: none after it is reached
            last = next((i for i, p in enumerate(self.phases) if p.duration_ns is None), n)
            changes = [i for i in changes if i <= last]
        if not changes:
            return None
        for _ in range(2):  # this lap of the loop, then the next
            for i in changes:
                if base + starts[i] > t:
                    return base + starts[i]
            if not loops:
                return None
            base += total
        return None  # pragma: no cover - a loop has a change in each lap


@lru_cache(maxsize=256)
def _changes(phases: tuple[Phase, ...]) -> tuple[int, ...]:
    """:meth:`Workload.changes`, once per tuple of phases (the fast-forward asks at every
    window it opens and every snapshot it takes)."""
    ph = [replace(p, duration_ns=None) for p in phases]
    out = [i for i in range(1, len(ph)) if ph[i] != ph[i - 1]]
    if all(p.duration_ns for p in phases) and out and ph[0] != ph[-1]:
        out.insert(0, 0)
    return tuple(out)


class PerfMode(Enum):
    STAT = "stat"  #: perf stat: counting
    RECORD = "record"  #: perf record -F: sampling


@dataclass(frozen=True, slots=True)
class PerfSession:
    """A ``perf stat -e ...`` or ``perf record -F <freq> -e ...`` session.

    For the host: ``scope`` is ``"system"`` (``-a``) or ``"task:<name>"`` (``-p``).  In a
    guest, ``"system"`` covers the whole guest (its kernel's driver programs the vPMU) and
    ``"task:<name>"`` is ``perf ... -- <cmd>``: per task, so the guest scheduler takes its
    events off the PMU and puts them back at each switch of the workload's task
    (:attr:`Workload.ctx_switch_hz`).
    """

    events: tuple[int, ...]
    mode: PerfMode = PerfMode.STAT
    freq: int = 0  #: samples per second per event (record)
    period: int = 0  #: fixed sample period (record), when freq is 0
    scope: str = "system"
    exclude_user: bool = False
    exclude_kernel: bool = False
    exclude_guest: bool = False
    exclude_host: bool = False
    pinned: bool = False


@dataclass(frozen=True, slots=True)
class EventFilterSpec:
    action: Literal["allow", "deny"]
    base_event: int
    nevents: int


@dataclass(frozen=True, slots=True)
class VmSpec:
    """A VM and what its VMM does with the PMU attributes before the first run."""

    name: str
    vcpus: int = 1
    pmu: bool = True
    irqchip: bool = True
    irq: int = 23
    partition: bool = False  #: KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION
    set_pmu: str | int | None = None  #: PMU name or sysfs type
    nr_counters: int | None = None  #: SET_NR_COUNTERS
    filters: tuple[EventFilterSpec, ...] = ()
    affinity: tuple[int, ...] | None = None  #: CPUs the vCPU threads may run on
    vcpu_affinity: tuple[tuple[int, ...], ...] = ()  #: per-vCPU pinning (overrides)
    workload: str = "idle"
    perf: PerfSession | None = None
    #: a guest program each vCPU runs once, when first scheduled: an AArch64 assembly file
    #: (``*.S``) or ELF image (``*.elf``), or a Python ``module:function`` taking the guest
    #: CPU (KVM's ``program(cpu)``)
    program: str | None = None
    #: the physical CPU the VMM thread runs KVM_ARM_VCPU_INIT on: KVM gives a VM without
    #: SET_PMU the PMU of that CPU (``kvm_arm_set_default_pmu``, kernel-code-deltas §5.11)
    init_cpu: int = 0
    #: the vCPU feature KVM_ARM_VCPU_PMU_V3_STRICT (mainline 7.3, kernel-code-deltas §3.13)
    pmu_strict: bool = False


@dataclass(frozen=True, slots=True)
class HostTaskSpec:
    name: str
    count: int = 1
    affinity: tuple[int, ...] | None = None
    workload: str = "idle"


class MigrationPolicy(Enum):
    NONE = "none"
    PERIODIC = "periodic"  #: every interval, each movable thread goes to its next allowed CPU
    RANDOM = "random"  #: every interval, each movable thread goes to a random allowed CPU
    LOAD_BALANCE = "load-balance"  #: every interval, one thread moves busiest -> idlest


@dataclass(frozen=True, slots=True)
class MigrationSpec:
    policy: MigrationPolicy = MigrationPolicy.NONE
    interval_ns: int = 10_000_000
    #: only vCPU threads migrate (host tasks stay) unless this is set
    host_tasks: bool = False


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """A whole run: machine, kernel options, guests, host work, duration, seed."""

    name: str
    machine: Any  #: a Topology, or a preset name
    duration_ns: int
    seed: int = 0
    slice_ns: int = 1_000_000  #: the scheduler's time slice
    guest_tick_ns: int = 4_000_000  #: guest kernel HZ=250: its perf rotation timer
    #: kernel.perf_event_max_sample_rate (host and guests): the ``perf record`` frequency
    #: limit and, per tick, the interrupt throttling limit
    perf_event_max_sample_rate: int = 100_000
    description: str = ""
    machine_options: dict[str, Any] = field(default_factory=dict)
    vms: tuple[VmSpec, ...] = ()
    host_tasks: tuple[HostTaskSpec, ...] = ()
    host_perf: tuple[PerfSession, ...] = ()
    workloads: dict[str, Workload] = field(default_factory=dict)
    migration: MigrationSpec = MigrationSpec()
    source: str = ""  #: the file it came from (for reports)
