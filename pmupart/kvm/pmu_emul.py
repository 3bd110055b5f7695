"""The emulated vPMU: models ``arch/arm64/kvm/pmu-emul.c`` (upstream, 6.16+).

Every guest PMU register access traps (MDCR_EL2.TPM/TPMCR, HPMN = the CPU's N) and is
emulated against the virtual registers (:class:`~pmupart.kvm.vcpu_pmu.VcpuPmu`).  Each
programmed guest counter is backed by a pinned host perf event on the vCPU thread
(``kvm_pmu_create_perf_event``: ``exclude_host``, ``exclude_hv``, EL0/EL1 exclusion from the
guest's filter, 64-bit when the counter is, ``sample_period`` from ``compute_period``), created
*disabled* while the counter is not enabled and recreated on every event-type and counter
write, so guest counters compete with host events and can be multiplexed or squeezed out.
The counter value is the stored register plus the perf event's count
(``kvm_pmu_get_pmc_value``); SW_INCR and CHAIN get no perf event and are emulated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pmupart.arch.events import Event
from pmupart.arch.pe import CYCLE_IDX, Access
from pmupart.arch.sysreg import RegDef
from pmupart.host.perf_event import EventState, PerfEvent, PerfEventAttr
from pmupart.kvm.debug import kvm_arm_setup_mdcr_el2, kvm_vcpu_load_fgt
from pmupart.kvm.options import Backend
from pmupart.kvm.vcpu_pmu import EXCLUDE_EL0, EXCLUDE_EL1, M32, M64, PMCR_E, VcpuPmu

if TYPE_CHECKING:
    from pmupart.kvm.kvm import VCPU

_CYCLES = int(Event.CPU_CYCLES)
_NO_PERF = (int(Event.SW_INCR), int(Event.CHAIN))


class EmulatedPmu(VcpuPmu):
    """One vCPU's emulated PMU: ``struct kvm_pmu`` with its ``kvm_pmc`` array."""

    backend = Backend.EMULATED

    def __init__(self, vcpu: VCPU) -> None:
        super().__init__(vcpu)
        self.perf: dict[int, PerfEvent] = {}
        self._host_userenr = 0

    # ------------------------------------------------------------------ values
    def _width(self, idx: int) -> int:
        return M64 if self.is_64bit(idx) else M32

    def counter_value(self, idx: int) -> int:
        """``kvm_pmu_get_pmc_value``: stored value plus the backing event's count."""
        base = super().counter_value(idx)
        ev = self.perf.get(idx)
        if ev is not None:
            count, _, _ = self.host.perf_event_read(ev)
            base += count
        return base & self._width(idx)

    def set_counter_value(self, idx: int, value: int) -> None:
        """``kvm_pmu_set_pmc_value``: stop the counter (release its event), store, recreate."""
        self._release(idx)
        self.store_counter(idx, value)
        self._create(idx)

    def store_counter(self, idx: int, value: int) -> None:
        ev = self.perf.get(idx)
        if ev is not None:  # keep stored + count == value
            count, _, _ = self.host.perf_event_read(ev)
            value = value - count
        super().store_counter(idx, value)

    # ------------------------------------------------------------------ perf events
    def _enabled(self, idx: int) -> bool:
        """``kvm_pmu_counter_is_enabled``: PMCR.E and the PMCNTENSET bit."""
        return bool(self.pmcr & PMCR_E) and bool((self.cnten >> idx) & 1) \
            and bool((self.implemented_mask() >> idx) & 1)

    def compute_period(self, idx: int, value: int) -> int:
        """``compute_period`` (pmu-emul.c): ``(-value)`` masked to 64 bits for a 64-bit counter
        with 64-bit overflow (``kvm_pmc_is_64bit && kvm_pmc_has_64bit_overflow``), else to
        32.  There is no case for 0: a counter at 0 gives ``sample_period`` 0, a counting
        (non-sampling) perf event, whose overflows ``__perf_event_overflow`` ignores, so KVM
        never hears of them (spec kernel-code-deltas §3.8)."""
        wide = self.is_64bit(idx) and self.has_64bit_overflow(idx)
        return (-value) & (M64 if wide else M32)

    def _create(self, idx: int) -> None:
        """``kvm_pmu_create_perf_event``: stop the counter (``kvm_pmu_stop_counter``), then
        create its perf event whether or not the counter is enabled, disabled when it is not
        (``attr.disabled = !kvm_pmu_counter_is_enabled``); reprogramming enables it later
        (spec kernel-code-deltas §3.9, §5.7)."""
        self._release(idx)
        if self.vm.arm_pmu is None:
            return
        typer = self.ccfiltr if idx == CYCLE_IDX else self.evtyper[idx]
        event = _CYCLES if idx == CYCLE_IDX else typer & self.evmask()
        if event in _NO_PERF or not self.vm.event_allowed(event):
            return  # SW_INCR and CHAIN are emulated; a filtered event gets no perf event
        if event > 0xFFFF:
            return
        value = self.counter_value(idx)
        attr = PerfEventAttr(
            type=self.vm.arm_pmu.type, config=event, long=self.is_64bit(idx),
            exclude_user=bool(typer & EXCLUDE_EL0), exclude_kernel=bool(typer & EXCLUDE_EL1),
            exclude_hv=True, exclude_host=True, pinned=True, disabled=not self._enabled(idx),
            sample_period=self.compute_period(idx, value))
        cpu = self.vcpu.cpu
        ev = self.host.perf_event_open(attr, cpu=-1, task=self.vcpu.task,
                                       overflow_handler=self._overflow,
                                       owner=self.vcpu.name, charge_cpu=cpu)
        self.perf[idx] = ev
        self.vcpu.stats.perf_events_created += 1
        if cpu is not None:
            self.host.charge(cpu, self.vm.kvm.costs.pmu_reprogram, "kvm_pmu_reprogram")

    def _release(self, idx: int) -> None:
        """``kvm_pmu_release_perf_event`` after ``kvm_pmu_stop_counter`` saved the value."""
        ev = self.perf.pop(idx, None)
        if ev is None:
            return
        count, _, _ = self.host.perf_event_read(ev)
        raw = super().counter_value(idx) + count
        super().store_counter(idx, raw & self._width(idx))
        self.host.perf_event_release(ev, charge_cpu=self.vcpu.cpu)
        self.vcpu.stats.perf_events_released += 1

    def counter_increment(self, mask: int, event: int, el: int | None) -> None:
        """``kvm_pmu_counter_increment``: PMCR.E, PMCNTENSET and the event type decide; the
        counter's EL filter does not (unless ``KvmOptions.emulated_swinc_el_filter``), so a
        guest's SW_INCR counts whatever P/U say, where the architecture filters it by the EL
        of the write (ARM §D13.7.3.2)."""
        if not self.vm.kvm.options.emulated_swinc_el_filter:
            el = None
        super().counter_increment(mask, event, el)

    def on_evtyper_change(self, idx: int) -> None:
        """``kvm_pmu_set_counter_event_type``: a new event means a new perf event."""
        self._create(idx)

    def reprogram(self) -> None:
        """``kvm_pmu_reprogram_counter_mask``: an enabled counter gets its perf event
        (``kvm_pmu_create_perf_event``) or has it enabled again (``perf_event_enable``); a
        disabled one has its event disabled (``perf_event_disable``), kept for later."""
        enable: list[PerfEvent] = []
        # kvm_pmu_counter_is_enabled for every counter at once (PMCR.E, PMCNTENSET, implemented)
        on = self.cnten & self.implemented_mask() if self.pmcr & PMCR_E else 0
        perf = self.perf
        for idx in [*range(self.nr), CYCLE_IDX]:
            ev = perf.get(idx)
            if (on >> idx) & 1:
                if ev is None:
                    self._create(idx)
                elif ev.state is EventState.OFF:
                    enable.append(ev)
            elif ev is not None and ev.state is not EventState.OFF:
                self.host.perf_event_disable(ev, charge_cpu=self.vcpu.cpu)
        self.host.perf_event_enable_many(enable, charge_cpu=self.vcpu.cpu)

    def _overflow(self, ev: PerfEvent) -> None:
        """``kvm_pmu_perf_overflow``: set the guest's overflow flag, chain, re-arm and request
        the interrupt.  The new period is ``compute_period`` of the perf event's own count
        since it was created (``local64_read(&perf_event->count)``), not of the guest's
        counter value: for a counter first written to S, the first callback comes at the
        wrap, the second S events later (not 2^32), and when the count is a multiple of
        2^32 the period is 0 and the event stops calling back
        (spec kernel-code-deltas §3.8; the model's earlier re-arm from the guest value is gone)."""
        idx = next((i for i, e in self.perf.items() if e is ev), None)
        if idx is None:
            return
        count, _, _ = self.host.perf_event_read(ev)
        ev.sample_period = self.compute_period(idx, count)
        ev.period_left = ev.sample_period  # period_left = 0, then armpmu_start adds the period
        if ev.state is EventState.ACTIVE:
            ev.pmu.set_period(ev)
        self.ovs |= 1 << idx
        if idx % 2 == 0 and idx + 1 < CYCLE_IDX and not self.has_64bit_overflow(idx):
            self.counter_increment(1 << (idx + 1), int(Event.CHAIN), None)

    # ------------------------------------------------------------------ load / put
    def load(self, cpu: int) -> None:
        """Upstream load: every PMU access traps (TPM/TPMCR, HPMN = N), and PMUSERENR_EL0 is
        opened in hardware so that EL0 accesses reach EL2 and the virtual PMUSERENR decides
        (``__activate_traps_common``)."""
        kvm_arm_setup_mdcr_el2(self.vcpu, cpu, guest_owned=False)
        kvm_vcpu_load_fgt(self.vcpu, cpu, hw_partition=False)
        pe = self.host.cpus[cpu].pe
        with pe.at_el(2):
            self._host_userenr = pe.read("PMUSERENR_EL0").value or 0
            pe.write("PMUSERENR_EL0", 0xF)

    def put(self, cpu: int) -> None:
        pe = self.host.cpus[cpu].pe
        with pe.at_el(2):
            pe.write("PMUSERENR_EL0", self._host_userenr)

    # ------------------------------------------------------------------ traps
    def handle_trap(self, reg: RegDef, write: bool, value: int, el: int) -> Access:
        acc = self.virtual_access(reg, write, value, el)
        self.sync_irq()
        return acc

    def release_all(self) -> None:
        for idx in list(self.perf):
            self._release(idx)


__all__ = ["EmulatedPmu"]
