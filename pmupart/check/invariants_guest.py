"""Invariants about what a guest's own kernel decided: its EL0 access rights, its software
increments, and whose overflows reach its virtual PMOVSSET.  Added for the findings on the
series v8 as posted (issue 9, ``examples/findings/``); each rule holds for any correct
design, whatever the revision.
"""

from __future__ import annotations

from typing import Any

from pmupart.arch.pe import C_BIT
from pmupart.arch.sysreg import BY_NAME
from pmupart.check.invariants import Invariant, _bits
from pmupart.host.perf_event import EventState

_TPM = BY_NAME["MDCR_EL2"].field("TPM").mask
_USERENR = 0xF
_NAMES = {1: "EN", 2: "SW", 4: "CR", 8: "ER"}
_M32 = (1 << 32) - 1
_EXCL_EL1, _EXCL_EL0 = 1 << 31, 1 << 30


def _host_active(c: Any, cpu: int) -> int:
    """The counters active host events hold on ``cpu``."""
    mask = 0
    for idx, ev in c.host.pmu_of_cpu(cpu).hw[cpu].events.items():
        if ev.state is EventState.ACTIVE:
            mask |= 1 << idx
    return mask


def _flags(v: int) -> str:
    return "|".join(n for b, n in _NAMES.items() if v & b) or "0"


class El0RightsAreTheKernels(Invariant):
    """A guest's EL0 PMU access rights are those its kernel set.

    The guest kernel grants or denies EL0 access with PMUSERENR_EL0 (EN, SW, CR, ER; Arm ARM
    §D24.5 PMUSERENR_EL0).  Wherever the guest's EL0 accesses reach the hardware (its vCPU
    loaded with MDCR_EL2.TPM clear, so nothing traps to KVM's virtual check), the hardware
    PMUSERENR_EL0 must grant no more than the guest's last write.  Checked at every vcpu
    load, at every guest counter load and around every guest access."""

    name = "el0-rights"
    rule = "a guest's EL0 access rights are those its kernel set"
    source = ("Arm ARM §D24.5 PMUSERENR_EL0 (EL0 access controls, set by EL1); spec "
              "kvm-partitioning §2.6 (PMUSERENR untrapped for a partitioned guest)")
    events = frozenset({"guest_access", "vcpu_load", "guest_counters_loaded"})

    def __init__(self, checker: Any) -> None:
        super().__init__(checker)
        self.kernel_set: dict[str, int] = {}  #: vCPU -> PMUSERENR its kernel last wrote

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        cpu = data.get("cpu")
        name = data.get("vcpu")
        if not isinstance(cpu, int) or not isinstance(name, str):
            return
        if kind == "guest_access" and data.get("reg") == "PMUSERENR_EL0" and data["write"] \
                and data.get("el") == 1 and data["access"].ok:
            self.kernel_set[name] = int(data["value"]) & _USERENR
        self._check(cpu, name)

    def _check(self, cpu: int, name: str) -> None:
        want = self.kernel_set.get(name)
        vcpu = self.c.vcpu(name)
        if want is None or vcpu is None or self.c.loaded(cpu) is not vcpu:
            return
        s = self.c.pe(cpu).snapshot()
        if s.mdcr_el2 & _TPM:
            return  # EL0 PMU accesses trap: KVM checks its virtual copy
        hw = self.c.pe(cpu).read_el2("PMUSERENR_EL0") & _USERENR
        extra = hw & ~want
        if extra:
            self.report(cpu, name, "guest EL0 may use the PMU beyond what its kernel allowed "
                        "(hardware PMUSERENR_EL0 grants more than the guest wrote)",
                        key=("el0", extra), kernel_set=_flags(want), hardware=_flags(hw),
                        extra=_flags(extra))


class SwIncrementsItsCounters(Invariant):
    """A write to PMSWINC_EL0 increments by one each counter it names that is enabled
    (PMCR_EL0.E, PMCNTENSET_EL0) and counts SW_INCR at the writer's EL, as the guest sees
    it, whatever the backend; no event filter applies (vcpu.rst FILTER: "software increment
    is never filtered")."""

    name = "sw-incr"
    rule = "a PMSWINC_EL0 write increments each enabled SW_INCR counter it names by one"
    source = ("Arm ARM §D24.5 PMSWINC_EL0, §D13.7 (SW_INCR, event 0x00); "
              "Documentation/virt/kvm/devices/vcpu.rst KVM_ARM_VCPU_PMU_V3_FILTER")
    events = frozenset({"guest_access_begin", "guest_access"})

    def __init__(self, checker: Any) -> None:
        super().__init__(checker)
        self._pre: dict[int, tuple[str, list[int]]] = {}

    def _values(self, vcpu: Any) -> list[int]:
        pmu = vcpu.pmu
        return [pmu.counter_value(i) for i in range(pmu.nr)]

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if data.get("reg") != "PMSWINC_EL0" or not data["write"]:
            return
        at = self.where(data)
        if at is None:
            return
        cpu, vcpu = at
        if vcpu.pmu is None:
            return
        if kind == "guest_access_begin":
            self._pre[cpu] = (vcpu.name, self._values(vcpu))
            return
        pre = self._pre.pop(cpu, None)
        if pre is None or pre[0] != vcpu.name or not data["access"].ok:
            return
        pmu = vcpu.pmu
        el = int(data.get("el", 1))
        if self.c.in_hw(vcpu, cpu):
            pe = self.c.pe(cpu)
            pmcr = pe.read_el2("PMCR_EL0")
            cnten = pe.read_el2("PMCNTENSET_EL0")
        else:
            pmcr, cnten = pmu.pmcr, pmu.cnten
        post = self._values(vcpu)
        value = int(data["value"])
        for i in range(pmu.nr):
            if not (value >> i) & 1:
                continue
            typer = pmu.evtyper[i]
            if typer & pmu.evmask() != 0:
                continue
            if typer & (_EXCL_EL0 if el == 0 else _EXCL_EL1):
                continue  # the EL filter: KVM's emulation may or may not apply it (upstream)
            want = 1 if (pmcr & 1 and (cnten >> i) & 1) else 0
            got = (post[i] - pre[1][i]) & _M32
            if got != want:
                self.report(cpu, vcpu.name, f"guest PMSWINC_EL0 write moved counter {i} by "
                            f"{got}, not {want}", key=("swinc", i), counter=i, before=pre[1][i],
                            after=post[i], pmcr_e=pmcr & 1, enabled=(cnten >> i) & 1,
                            in_hardware=self.c.in_hw(vcpu, cpu))


class OverflowFlagsFromOwnCounters(Invariant):
    """A vCPU's virtual overflow flags come only from overflows of its own counters: the bits
    KVM's PMU-interrupt hook (``kvm_pmu_handle_guest_irq``) moves into a vCPU's virtual
    PMOVSSET must be counters that vCPU has in this CPU's hardware, and none of them may be
    a host event's counter."""

    name = "ovf-source"
    rule = "a vCPU's virtual overflow flags come only from its own counters' overflows"
    source = ("spec kvm-partitioning §2.9 (guest bits of the host PMU interrupt go to the vCPU "
              "that owns them); pmuv3 §7 (one PMUIRQ per PE, PMOVSSET per counter)")
    events = frozenset({"guest_overflow"})

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        at = self.where(data)
        bits = int(data.get("bits", 0))
        if at is None or not bits:
            return
        cpu, vcpu = at
        own = self.c.share(vcpu, cpu) if self.c.in_hw(vcpu, cpu) else 0
        host = _host_active(self.c, cpu)
        foreign = bits & ~own
        if foreign:
            whose = "a host event's" if foreign & host else "no counter of this vCPU's"
            self.report(cpu, vcpu.name, f"overflow of {whose} counter delivered into the "
                        "vCPU's virtual PMOVSSET", key=("ovf", foreign),
                        counters=_bits(foreign), vcpu_in_hardware=_bits(own & (_M32 | C_BIT)),
                        host_events=_bits(host), backend=vcpu.pmu.backend.value
                        if vcpu.pmu else None)


class HostPmuBackAfterPut(Invariant):
    """When KVM puts a vCPU's PMU state (``kvm_pmu_put``), the PMU controls it changed are
    the host's again: PMCR_EL0.E is set while host events are active on that CPU.  The host
    driver sets PMCR_EL0.E only in ``armv8pmu_start`` (when it adds events or rotates), so a
    guest's E = 0 left in hardware stops every host counter until then."""

    name = "host-pmu-back"
    rule = "after a vCPU's PMU state is put, PMCR_EL0 is the host's again"
    source = ("drivers/perf/arm_pmuv3.c armv8pmu_start (the only writer of PMCR_EL0.E); spec "
              "kvm-partitioning §2.7 (kvm_pmu_put hands the counters back)")
    events = frozenset({"guest_counters_saved"})

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        cpu = data.get("cpu")
        if not isinstance(cpu, int):
            return
        active = _host_active(self.c, cpu)
        pmcr = self.c.pe(cpu).read_el2("PMCR_EL0")
        if active and not pmcr & 1:
            self.report(cpu, str(data.get("vcpu")), "PMCR_EL0.E is clear after the vCPU's "
                        "PMU state was put while host events are active: their counters stop "
                        "until the host driver next starts the PMU", key=("pmcr-e",),
                        pmcr=hex(pmcr), host_counters=_bits(active))


GUEST_INVARIANTS: tuple[type[Invariant], ...] = (
    El0RightsAreTheKernels,
    SwIncrementsItsCounters,
    OverflowFlagsFromOwnCounters,
    HostPmuBackAfterPut,
)

__all__ = ["GUEST_INVARIANTS", "El0RightsAreTheKernels", "HostPmuBackAfterPut",
           "OverflowFlagsFromOwnCounters", "SwIncrementsItsCounters"]

