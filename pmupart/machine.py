"""A whole machine: the host (topology, PEs, perf, PMU drivers) and KVM on it.

``Machine.from_preset("tensor-g1", reserved_host_counters=2)`` builds one from a preset in
:mod:`pmupart.host.topology`; ``Machine.from_topology(topology, ...)`` from any topology.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field

from pmupart.arch.policy import Policies
from pmupart.host.arm_pmuv3 import AllocOrder, ArmPmu, Reservation
from pmupart.host.kernel import HostCosts, HostKernel
from pmupart.host.topology import Topology, get_preset
from pmupart.kvm.kvm import Kvm
from pmupart.kvm.options import KvmCosts, KvmOptions
from pmupart.kvm.revision import Revision, get_revision


@dataclass
class MachineStats:
    """Totals over the machine (``m.stats``): host and every vCPU."""

    exits: Counter[str] = field(default_factory=Counter)
    traps: Counter[str] = field(default_factory=Counter)
    el2_cycles: int = 0
    el2_cycles_by_reason: Counter[str] = field(default_factory=Counter)
    perf_events_created: int = 0
    perf_events_released: int = 0
    host_events_squeezed_out: int = 0
    pinned_host_events_squeezed_out: int = 0
    pmu_irqs: int = 0
    irqs_injected: int = 0


def _revision(revision: str | Revision | None, kvm_options: KvmOptions | None) -> Revision:
    """``revision=`` by name or value; ``kvm_options=`` is its older spelling."""
    if revision is not None and kvm_options is not None:
        raise ValueError("give revision= or kvm_options=, not both (they are the same thing)")
    if isinstance(revision, str):
        return get_revision(revision)
    return revision or kvm_options or Revision()


class Machine:
    """A host with its guests.  ``m.host.pmus`` are the PMUs (``.name``, ``.type``, ``.cpus``,
    ``.num_counters``); ``m.kvm.create_vm()`` makes VMs.  ``revision`` picks the kernel
    revision KVM models (``"upstream"``, ``"v8"`` (default), ``"intent"``, or a
    :class:`~pmupart.kvm.revision.Revision` variant); ``m.kvm.revision`` reads it back."""

    def __init__(self, topology: Topology, *, reserved_host_counters: int = -1,
                 reservation: Reservation | str = Reservation.DYNAMIC,
                 alloc_order: AllocOrder | str = AllocOrder.HIGH_TO_LOW,
                 kvm_options: KvmOptions | None = None, kvm_costs: KvmCosts | None = None,
                 host_costs: HostCosts | None = None, policies: Policies | None = None,
                 mux_interval_ms: int = 4, revision: str | Revision | None = None) -> None:
        if isinstance(reserved_host_counters, bool) or not isinstance(reserved_host_counters, int):
            raise TypeError("reserved_host_counters must be an int, not "
                            f"{type(reserved_host_counters).__name__}")
        if reserved_host_counters < -1:
            raise ValueError("arm_pmuv3.reserved_host_counters must be -1 (no partition) or "
                             f"0..N, not {reserved_host_counters}")
        rev = _revision(revision, kvm_options)
        if not rev.partitioning and reserved_host_counters != -1:
            # Mainline's arm_pmuv3 has no such parameter (series v8 07/21 adds it): the kernel
            # boots, warns about an unknown command-line parameter, and does not partition.
            logging.getLogger("pmupart.host").warning(
                "arm_pmuv3.reserved_host_counters=%d is not a parameter of revision %r; the "
                "host PMU is not partitioned", reserved_host_counters, rev.name)
            reserved_host_counters = -1
        self.topology = topology
        cores = []
        for cpu in topology.cpus:
            cl = topology.cluster_of(cpu)
            core = topology.core_of(cpu)
            if cl.freq_mhz is not None and cl.freq_mhz != core.freq_mhz:
                core = dataclasses.replace(core, freq_mhz=cl.freq_mhz)
            cores.append(core)
        pmus = [(p.name, p.type, p.cpus, p.core) for p in topology.pmus()]
        self.host = HostKernel(cores, pmus, reserved_host_counters=reserved_host_counters,
                               reservation=Reservation(reservation),
                               alloc_order=AllocOrder(alloc_order), costs=host_costs,
                               policies=policies, mux_interval_ms=mux_interval_ms)
        self.kvm = Kvm(self.host, rev, kvm_costs)

    @classmethod
    def from_preset(cls, name: str, reserved_host_counters: int = -1, **kw: object) -> Machine:
        return cls(get_preset(name), reserved_host_counters=reserved_host_counters,
                   **kw)  # type: ignore[arg-type]

    @classmethod
    def from_topology(cls, topology: Topology, reserved_host_counters: int = -1,
                      **kw: object) -> Machine:
        return cls(topology, reserved_host_counters=reserved_host_counters,
                   **kw)  # type: ignore[arg-type]

    @property
    def pmus(self) -> list[ArmPmu]:
        return self.host.pmus

    @property
    def stats(self) -> MachineStats:
        s = MachineStats()
        h = self.host.stats
        s.perf_events_created = h.perf_events_created
        s.perf_events_released = h.perf_events_released
        s.host_events_squeezed_out = h.squeezed_out
        s.pinned_host_events_squeezed_out = h.pinned_squeezed_out
        s.pmu_irqs = h.pmu_irqs
        s.el2_cycles_by_reason = Counter(h.el2_cycles)
        s.el2_cycles = sum(h.el2_cycles.values())
        for vm in self.kvm.vms:
            for v in vm.vcpus:
                s.exits.update(v.stats.exits)
                s.traps.update(v.stats.traps)
                s.irqs_injected += v.stats.irqs_injected
        return s
