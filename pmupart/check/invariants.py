"""The invariants: each a class naming the rule it enforces and where the rule comes from.

Each invariant watches the run's events (``on_event``: the engine's, the host's and KVM's,
see :mod:`pmupart.check`), inspects the machine's state where the rule is about state
(MDCR_EL2, hardware PMU registers, the vCPU's virtual registers, perf's counter
allocation), and reports an :class:`InvariantViolation` with the simulated time, the CPU,
the vCPU and the values.  Rules that need the whole run (host counts against the ledger,
guest counts against the ledger) run in ``finish``.

Documented exceptions (not violations; reported as notes):

* a guest counts less than its ideal PMU would where its counters could not be in hardware
  (a CPU whose PMU cannot hold them: pmu_direct's fallback, spec kvm-partitioning §6), or
  were multiplexed by its own kernel (perf's rotation; ``time_running < time_enabled``);
* a vCPU whose VM uses the *default* PMU may run on a CPU outside that PMU: KVM leaves
  ``supported_cpus`` unrestricted on purpose and says counters "could stop working"
  (``kvm_arm_set_default_pmu``, spec kvm-partitioning §4.2);
* the cycle counter cannot be kept from counting at EL2 before PMUv3p5 (no MDCR_EL2.HCCD)
  unless PMCR.DP = 1; the guest is kept out of EL2 by KVM's filter instead (Oliver Upton on
  v1 10/17, spec kvm-partitioning §2.5; pmuv3 §5 item 5);
* EL2 work charged while a vCPU was loaded is retired on the PE at the next flush (host
  model, ``HostKernel.flush``), so it may land after the guest's counters were put.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pmupart.arch.events import Event, event_name
from pmupart.arch.features import PMUVer
from pmupart.arch.pe import C_BIT, CYCLE_IDX, PMUSnapshot
from pmupart.arch.sysreg import BY_NAME
from pmupart.host.perf_event import EventState

if TYPE_CHECKING:
    from pmupart.check import Checker
    from pmupart.kvm.kvm import VCPU
    from pmupart.sim.session import RunResult

_MDCR = BY_NAME["MDCR_EL2"]
HPMD = _MDCR.field("HPMD").mask
HCCD = _MDCR.field("HCCD").mask
NSH = 1 << 27  #: PMEVTYPER/PMCCFILTR.NSH: count at EL2 (spec pmuv3 §5 item 6; ARM §D24.5.12)
EXCL_EL1, EXCL_EL0 = 1 << 31, 1 << 30
PMCR_DP = 1 << 5
_M32 = (1 << 32) - 1
#: What a violation caused by a host mixing 32- and 64-bit event counters says (the finding
#: examples/findings/mixed-counter-width.toml; pmupart.check.findings.KNOWN_FINDINGS): a
#: 64-bit value loaded into a 32-bit counter (no-leak), or a guest told 64-bit counters whose
#: counters were in a CPU's 32-bit ones (own-work)
NARROW_LOAD = "does not fit this CPU's 32-bit event counters"
NARROW_RUN = "the VM's PMU advertises 64-bit event counters (PMUv3p5+) but the vCPU's " \
    "counters were in a CPU's 32-bit ones"
_INDEXED = re.compile(r"^PMEV(CNTR|TYPER)(\d+)_EL0$")
_BITMAPS = ("PMCNTENSET_EL0", "PMCNTENCLR_EL0", "PMINTENSET_EL1", "PMINTENCLR_EL1",
            "PMOVSSET_EL0", "PMOVSCLR_EL0")
_TYPERS = ("PMXEVTYPER_EL0", "PMCCFILTR_EL0")


@dataclass(frozen=True)
class InvariantViolation:
    """One broken rule: when, where, who, and the values that show it."""

    rule: str  #: the invariant's short name (``hpmn-legal``)
    t_ns: int
    cpu: int | None
    vcpu: str | None
    message: str
    values: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def details(self, source: bool = False) -> str:
        """One line: ``t=1.234567 ms cpu2 vm0:vcpu0 [hpmn-legal] message (k=v, ...)``, with
        `` — <source>`` when ``source``."""
        where = f"cpu{self.cpu}" if self.cpu is not None else "-"
        who = self.vcpu or "host"
        vals = ", ".join(f"{k}={_fmt(v)}" for k, v in self.values.items())
        src = f" — {self.source}" if source and self.source else ""
        return (f"t={self.t_ns / 1e6:.6f} ms {where} {who} [{self.rule}] {self.message}"
                + (f" ({vals})" if vals else "") + src)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int) and v > 0xFFFF:
        return hex(v)
    return str(v)


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.6f} ms"


def _bits(mask: int) -> str:
    out = [("C" if i == CYCLE_IDX else str(i)) for i in range(33) if (mask >> i) & 1]
    return "{" + ",".join(out) + "}"


class Invariant:
    """A rule.  ``name`` is short, ``rule`` says it in a sentence, ``source`` cites it."""

    name: ClassVar[str] = ""
    rule: ClassVar[str] = ""
    source: ClassVar[str] = ""
    events: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, checker: Checker) -> None:
        self.c = checker

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        """Called for each run event whose kind is in ``events``."""

    def check_state(self) -> None:
        """Check the machine's state now (the stateful tests call this after every step)."""

    def finish(self, result: RunResult | None) -> None:
        """Checks that need the whole run."""

    def report(self, cpu: int | None, vcpu: str | None, message: str,
               key: tuple[Any, ...] | None = None, **values: Any) -> None:
        self.c.report(self, cpu, vcpu, message, key, values)

    def where(self, data: dict[str, Any]) -> tuple[int, VCPU] | None:
        """The CPU and the vCPU an event names, or None if it names no CPU or no known
        vCPU."""
        cpu = data.get("cpu")
        vcpu = self.c.vcpu(str(data.get("vcpu")))
        if not isinstance(cpu, int) or vcpu is None:
            return None
        return cpu, vcpu


# ---------------------------------------------------------------------- 1. share
class GuestStaysInItsShare(Invariant):
    """A guest never reads or changes a counter outside its share.

    Its share is the counters KVM gives it: ``nr_pmu_counters`` general counters and the
    cycle counter; in hardware (partitioned, loaded) also only the counters this CPU's PMU
    set aside for guests (``max_guest_counters``, spec kvm §2.2, §2.7).  Checked on every
    guest access (an OK access to a counter outside the share, bitmap bits outside it,
    PMCR_EL0.N other than its ``nr``), on the hardware around each direct access (host
    counters' types, enables and values unchanged), and at load (no counter is both the
    guest's and a host event's)."""

    name = "share"
    rule = "a guest never reads or changes a counter outside its share"
    source = ("spec kvm-partitioning §2.1 (HPMN splits the counters; PMCR.N = HPMN), §2.7 "
              "(guest mask), §2.2 (max_guest_counters); pmuv3 §8.2")
    events = frozenset({"guest_access_begin", "guest_access", "trap", "guest_counters_loaded"})

    def __init__(self, checker: Checker) -> None:
        super().__init__(checker)
        #: cpu -> (vcpu, hw snapshot before the access or None, trapped)
        self._pre: dict[int, tuple[str, PMUSnapshot | None]] = {}
        self._trapped: set[int] = set()

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        cpu = data.get("cpu")
        if not isinstance(cpu, int):
            return
        if kind == "trap":
            self._trapped.add(cpu)
            return
        if kind == "guest_counters_loaded":
            self._overlap(cpu, str(data["vcpu"]))
            return
        vcpu = self.c.vcpu(str(data["vcpu"]))
        if vcpu is None:
            return
        if kind == "guest_access_begin":
            self._trapped.discard(cpu)
            snap = self.c.pe(cpu).snapshot() if self.c.in_hw(vcpu, cpu) else None
            self._pre[cpu] = (vcpu.name, snap)
            return
        pre = self._pre.pop(cpu, None)
        self._after(cpu, vcpu, data, pre[1] if pre else None, cpu in self._trapped)

    def _overlap(self, cpu: int, name: str) -> None:
        hc = self.c.host.cpus[cpu]
        pmu = self.c.host.pmu_of_cpu(cpu)
        host_used = 0
        for idx, ev in pmu.hw[cpu].events.items():
            host_used |= 1 << idx
            if ev.chained:
                host_used |= 1 << (idx - 1)
        both = hc.guest_counter_mask & host_used
        if both:
            self.report(cpu, name, "counters are both the guest's and a host event's",
                        key=("overlap", cpu, name), counters=_bits(both),
                        guest_mask=_bits(hc.guest_counter_mask),
                        host_events=_bits(host_used))

    def _after(self, cpu: int, vcpu: VCPU, data: dict[str, Any], pre: PMUSnapshot | None,
               trapped: bool) -> None:
        reg = str(data["reg"])
        acc = data["access"]
        write = bool(data["write"])
        if not acc.ok or reg.startswith("ID_"):
            return
        pmu = vcpu.pmu
        if pmu is None:
            self.report(cpu, vcpu.name, f"{reg} {'write' if write else 'read'} succeeded for a "
                        "vCPU without the PMU feature", key=("nopmu", reg), reg=reg)
            return
        hw = self.c.in_hw(vcpu, cpu)
        share = self.c.share(vcpu, cpu)
        m = _INDEXED.match(reg)
        idx: int | None = None
        if m:
            idx = int(m.group(2))
        elif reg in ("PMXEVCNTR_EL0", "PMXEVTYPER_EL0"):
            idx = (pre.pmselr & 0x1F) if pre is not None else (pmu.selr & 0x1F)
        if idx is not None and not (share >> idx) & 1:
            self.report(cpu, vcpu.name, f"guest {'wrote' if write else 'read'} counter {idx} "
                        "outside its share and the access succeeded", key=("idx", reg),
                        reg=reg, counter=idx, share=_bits(share), nr=pmu.nr,
                        hpmn=self.c.pe(cpu).hpmn, trapped=trapped)
        if not write and reg in _BITMAPS:
            v = (acc.value or 0) & (_M32 | C_BIT)
            if v & ~share:
                self.report(cpu, vcpu.name, f"guest read {reg} bits of counters outside its "
                            "share", key=("bits", reg), reg=reg, value=hex(v),
                            outside=_bits(v & ~share), share=_bits(share))
        if not write and reg == "PMCR_EL0":
            n = ((acc.value or 0) >> 11) & 0x1F
            if n != pmu.nr:
                self.report(cpu, vcpu.name, "guest reads PMCR_EL0.N other than the counters "
                            "KVM gave it", key=("pmcr_n", n), pmcr_n=n, nr=pmu.nr,
                            hpmn=self.c.pe(cpu).hpmn)
        if pre is None or not hw:
            return
        post = self.c.pe(cpu).snapshot()
        n = self.c.pe(cpu).num_counters
        for i in range(n):
            if (share >> i) & 1:
                continue
            what = []
            if pre.evtyper[i] != post.evtyper[i]:
                what.append(f"PMEVTYPER{i} {pre.evtyper[i]:#x}->{post.evtyper[i]:#x}")
            b = 1 << i
            for nm, a, z in (("PMCNTEN", pre.pmcnten, post.pmcnten),
                             ("PMINTEN", pre.pminten, post.pminten),
                             ("PMOVS", pre.pmovs, post.pmovs)):
                if (a ^ z) & b:
                    what.append(f"{nm}[{i}] {(a >> i) & 1}->{(z >> i) & 1}")
            if not trapped and pre.evcntr[i] != post.evcntr[i]:
                what.append(f"PMEVCNTR{i} {pre.evcntr[i]:#x}->{post.evcntr[i]:#x}")
            if what:
                self.report(cpu, vcpu.name, f"guest {reg} {'write' if write else 'read'} "
                            f"changed counter {i}, outside its share", key=("hwdiff", i, reg),
                            changes="; ".join(what), share=_bits(share), trapped=trapped)

    def check_state(self) -> None:
        for hc in self.c.host.cpus:
            v = hc.loaded_vcpu
            name = getattr(v, "name", None)
            if name is not None and hc.guest_counter_mask:
                self._overlap(hc.id, str(name))


# ---------------------------------------------------------------------- 2. no leaks
class NothingLeaksAcrossSwitches(Invariant):
    """No guest observes a value, flag or interrupt caused by another VM or by the host.

    At each load of a partitioned vCPU's counters (``kvm_pmu_load``) the hardware holds
    exactly its saved values and no overflow flag of its counters (the virtual PMOVSSET is
    canonical; stale bits would be read or interrupt as the guest's); the values it saved
    at its last put come back unchanged across a context switch or migration; a virtual
    interrupt is injected only into the vCPU loaded there and only when its own counters
    overflowed with the interrupt enabled; a flag found stale at load is followed until the
    guest observes it (a read of PMOVS, an interrupt)."""

    name = "no-leak"
    rule = "no guest observes a value, flag or interrupt caused by another VM or the host"
    source = ("spec kvm-partitioning §2.7 (kvm_pmu_load: clear guest PMOVS, virtual PMOVSSET "
              "canonical; v6 'PMOVS cleared on load'), §2.9 (kvm_pmu_part_overflow_status)")
    events = frozenset({"guest_counters_loaded", "guest_counters_saved", "virq",
                        "guest_access", "trap", "fast_forward"})

    def __init__(self, checker: Checker) -> None:
        super().__init__(checker)
        self._saved: dict[str, tuple[tuple[int, ...], int]] = {}
        self.taint: dict[str, int] = {}

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "fast_forward":
            # the engine advanced the saved counters of the threads it skipped ahead
            for ctx in data.get("contexts", ()):
                self._saved.pop(str(ctx), None)
            return
        name = str(data.get("vcpu"))
        vcpu = self.c.vcpu(name)
        cpu = data.get("cpu")
        if vcpu is None or vcpu.pmu is None or not isinstance(cpu, int):
            return
        pmu = vcpu.pmu
        if kind == "guest_counters_saved":
            self._saved[name] = (tuple(pmu.evcntr[:pmu.nr]), pmu.ccntr)
        elif kind == "trap":
            if not self.c.in_hw(vcpu, cpu):
                self._saved.pop(name, None)  # virtual accesses may change the values
        elif kind == "guest_counters_loaded":
            self._loaded(cpu, vcpu, int(str(data.get("mask", 0))))
        elif kind == "virq":
            self._virq(cpu, vcpu)
        elif kind == "guest_access":
            reg = str(data["reg"])
            t = self.taint.get(name, 0)
            if not t or reg not in ("PMOVSSET_EL0", "PMOVSCLR_EL0"):
                return
            acc = data["access"]
            if data["write"]:
                if reg == "PMOVSCLR_EL0":
                    self.taint[name] = t & ~int(data["value"])
            elif acc.ok and (acc.value or 0) & t:
                self.report(cpu, name, "guest reads an overflow flag another context left in "
                            "the hardware", key=("taint-read",), reg=reg,
                            flags=_bits((acc.value or 0) & t))

    def _loaded(self, cpu: int, vcpu: VCPU, mask: int) -> None:
        pmu = vcpu.pmu
        assert pmu is not None
        pe = self.c.pe(cpu)
        s = pe.snapshot()
        stale = s.pmovs & mask
        if stale:
            self.taint[vcpu.name] = self.taint.get(vcpu.name, 0) | stale
            self.report(cpu, vcpu.name, "overflow flags of the guest's counters are set in "
                        "hardware when its state is loaded", key=("stale", stale),
                        hw_pmovs=_bits(stale), virtual_pmovs=_bits(pmu.ovs & mask),
                        mdcr_el2=hex(s.mdcr_el2))
        n = min(pmu.nr, pe.num_counters)
        bad = [i for i in range(n) if s.evcntr[i] != pmu.evcntr[i]]
        if s.pmccntr != pmu.ccntr:
            bad.append(CYCLE_IDX)
        if bad:
            i = bad[0]
            hwv = s.pmccntr if i == CYCLE_IDX else s.evcntr[i]
            sv = pmu.ccntr if i == CYCLE_IDX else pmu.evcntr[i]
            if i != CYCLE_IDX and pe.pmuver < PMUVer.V3P5 and hwv == sv & _M32:
                # ARM §D13.3: before PMUv3p5 an event counter is 32 bits (bits [63:32] RES0);
                # the value was saved on a CPU with 64-bit counters (the finding
                # examples/findings/mixed-counter-width.toml)
                self.report(cpu, vcpu.name, f"the vCPU's saved counter {NARROW_LOAD}: bits "
                            "[63:32] are lost at load, so the guest's count jumps (a host "
                            "mixing 32- and 64-bit counters)",
                            key=("value", i), counter=i, hardware=hwv, saved=sv,
                            lost=sv & ~_M32, cpu_pmu=self.c.host.pmu_of_cpu(cpu).name,
                            cpu_pmuver=pe.pmuver.name)
            else:
                self.report(cpu, vcpu.name, "hardware counter differs from the vCPU's saved "
                            "value after load", key=("value", i), counter=i, hardware=hwv,
                            saved=sv)
        prev = self._saved.get(vcpu.name)
        if prev is not None:
            vals, cc = prev
            now = tuple(pmu.evcntr[:len(vals)])
            if now != vals or cc != pmu.ccntr:
                j = next((k for k in range(len(vals)) if now[k] != vals[k]), CYCLE_IDX)
                self.report(cpu, vcpu.name, "the vCPU's counters changed between put and load",
                            key=("saved", j), counter=j,
                            at_put=vals[j] if j != CYCLE_IDX else cc,
                            at_load=now[j] if j != CYCLE_IDX else pmu.ccntr)

    def _virq(self, cpu: int, vcpu: VCPU) -> None:
        pmu = vcpu.pmu
        assert pmu is not None
        loaded = self.c.host.cpus[cpu].loaded_vcpu
        if loaded is not vcpu:
            self.report(cpu, vcpu.name, "virtual PMU interrupt injected into a vCPU not loaded "
                        "on this CPU", key=("virq-where",),
                        loaded=getattr(loaded, "name", None))
            return
        if not pmu.overflow_status():
            self.report(cpu, vcpu.name, "virtual PMU interrupt without an enabled overflow of "
                        "the vCPU's own counters", key=("virq-none",), vpmovs=_bits(pmu.ovs),
                        vpminten=_bits(pmu.inten))
            return
        t = self.taint.get(vcpu.name, 0)
        own = pmu.ovs & ~t
        if t and pmu.ovs & t and not own:
            self.report(cpu, vcpu.name, "virtual PMU interrupt raised by an overflow flag "
                        "another context left in the hardware", key=("virq-taint",),
                        flags=_bits(pmu.ovs & t))


# ---------------------------------------------------------------------- 3. own work
class GuestCountsOnlyItsOwnWork(Invariant):
    """A guest's counters count its own work and nothing of the host's or of EL2.

    Checked three ways: (a) around every block of EL2 work retired while a partitioned
    vCPU's counters are in hardware, none of them moves; (b) whenever its counters are
    loaded or a filter register is written, no guest counter in hardware *can* count at
    EL2 (NSH set and not prohibited by MDCR_EL2.HPMD/HCCD) and none counts an event the
    VM's event filter denies (KVM's ``kvm_pmu_apply_event_filter`` at every load); (c) at
    the end, no guest perf event counted more than the vCPU really retired at the ELs it
    selected (the ledger).  Documented exceptions: see the module docstring."""

    name = "own-work"
    rule = "a guest's counters count its own work and nothing of the host's or of EL2"
    source = ("spec kvm-partitioning §2.5 (HPMD/HCCD), §2.8 (event filter at every load, "
              "no EL2); pmuv3 §5 (EL2 rule, NSH, consequences for partitioning)")
    events = frozenset({"el2_begin", "el2_end", "guest_counters_loaded", "guest_access"})

    def __init__(self, checker: Checker) -> None:
        super().__init__(checker)
        self._pre: dict[int, tuple[str, PMUSnapshot, int]] = {}
        #: vCPU -> a CPU with 32-bit event counters its counters were loaded on although
        #: its VM's PMU advertises PMUv3p5+ (64-bit counters)
        self._narrow: dict[str, int] = {}

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        cpu = data.get("cpu")
        if not isinstance(cpu, int):
            return
        if kind == "el2_begin":
            vcpu = self.c.loaded(cpu)
            if vcpu is not None and self.c.in_hw(vcpu, cpu):
                self._pre[cpu] = (vcpu.name, self.c.pe(cpu).snapshot(), self.c.share(vcpu, cpu))
            return
        if kind == "el2_end":
            pre = self._pre.pop(cpu, None)
            if pre is None:
                return
            name, s0, share = pre
            s1 = self.c.pe(cpu).snapshot()
            n = self.c.pe(cpu).num_counters
            for i in [*range(n), CYCLE_IDX]:
                if not (share >> i) & 1:
                    continue
                a = s0.pmccntr if i == CYCLE_IDX else s0.evcntr[i]
                b = s1.pmccntr if i == CYCLE_IDX else s1.evcntr[i]
                if a != b:
                    typer = s1.pmccfiltr if i == CYCLE_IDX else s1.evtyper[i]
                    ev = int(Event.CPU_CYCLES) if i == CYCLE_IDX else typer & 0xFFFF
                    self.report(cpu, name, f"guest counter {i} counted EL2 work done for "
                                f"{data.get('party')}", key=("el2count", i), counter=i,
                                event=_ev(ev), counted=(b - a) & ((1 << 64) - 1),
                                el2_cycles=data.get("cycles"), typer=hex(typer),
                                mdcr_el2=hex(s1.mdcr_el2))
            return
        name = str(data.get("vcpu"))
        vcpu = self.c.vcpu(name)
        if vcpu is None or not self.c.in_hw(vcpu, cpu):
            return
        if kind == "guest_counters_loaded" and name not in self._narrow and \
                self.c.pe(cpu).pmuver < PMUVer.V3P5 <= vcpu.vm.guest_pmuver():
            # Arm ARM D13.3: before PMUv3p5 an event counter is 32 bits (bits [63:32] RES0)
            self._narrow[name] = cpu
        if kind == "guest_access":
            reg = str(data["reg"])
            if not data["write"] or not (reg.startswith("PMEVTYPER") or reg in _TYPERS):
                return
        self._filters(cpu, vcpu)

    def _filters(self, cpu: int, vcpu: VCPU) -> None:
        pe = self.c.pe(cpu)
        s = pe.snapshot()
        share = self.c.share(vcpu, cpu)
        p1 = pe.pmuver >= PMUVer.V3P1
        p5 = pe.pmuver >= PMUVer.V3P5
        hpmd = bool(s.mdcr_el2 & HPMD) and p1
        for i in [*range(pe.num_counters), CYCLE_IDX]:
            if not (share >> i) & 1:
                continue
            if i == CYCLE_IDX:
                typer = s.pmccfiltr
                ev = int(Event.CPU_CYCLES)
                blocked = (bool(s.mdcr_el2 & HCCD) and p5) or (hpmd and bool(s.pmcr & PMCR_DP))
            else:
                typer = s.evtyper[i]
                ev = typer & (0xFFFF if p1 else 0x3FF)
                blocked = hpmd and i < pe.hpmn
            if typer & NSH and not blocked:
                self.report(cpu, vcpu.name, f"guest counter {i} can count at EL2 (NSH set in "
                            "hardware, not prohibited by HPMD/HCCD)", key=("nsh", i), counter=i,
                            typer=hex(typer), mdcr_el2=hex(s.mdcr_el2))
            if not vcpu.vm.event_allowed(ev) and \
                    (typer & (EXCL_EL0 | EXCL_EL1)) != (EXCL_EL0 | EXCL_EL1):
                self.report(cpu, vcpu.name, f"guest counter {i} counts {_ev(ev)}, which the "
                            "VM's event filter denies", key=("denied", i, ev), counter=i,
                            event=_ev(ev), typer=hex(typer))

    def finish(self, result: RunResult | None) -> None:
        if result is None:
            return
        for ctx in result.contexts:
            drv = ctx.driver
            if drv is None or ctx.vcpu is None or not drv.started:
                continue
            for i, r in enumerate(drv.results()):
                if not r.supported:
                    continue
                ev = drv.events[i]
                ideal = self.c.ledger.ideal_guest(ctx.name, ev, exclude_user=drv.exclude_user,
                                                  exclude_kernel=drv.exclude_kernel)
                slack = self.c.guest_slack
                if ctx.name in self.c.ff_contexts:
                    slack += int(self.c.ff_tol * ideal)
                narrow = self._narrow.get(ctx.name)
                if r.count > ideal + slack and narrow is not None and \
                        r.count - ideal > _M32:
                    # the guest's perf driver biases 64-bit counters to 2^63 and counts their
                    # deltas in 64 bits: what the 32-bit hardware dropped comes back as
                    # multiples of 2^32 (the finding examples/findings/mixed-counter-width)
                    pe = self.c.pe(narrow)
                    self.report(narrow, ctx.name, f"guest counted more {_ev(ev)} than the "
                                f"vCPU retired: {NARROW_RUN}, which lose bits [63:32] (a host "
                                "mixing 32- and 64-bit counters)", key=("more", ev),
                                event=_ev(ev), counted=r.count, retired=ideal,
                                excess=r.count - ideal,
                                cpu_pmu=self.c.host.pmu_of_cpu(narrow).name,
                                cpu_pmuver=pe.pmuver.name,
                                vm_pmuver=ctx.vcpu.vm.guest_pmuver().name)
                elif r.count > ideal + slack:
                    self.report(None, ctx.name, f"guest counted more {_ev(ev)} than the vCPU "
                                "retired", key=("more", ev), event=_ev(ev), counted=r.count,
                                retired=ideal, excess=r.count - ideal)
                elif r.count < ideal and r.time_running:
                    self.c.note(f"{ctx.name}: {_ev(ev)} counted {r.count} of {ideal} retired "
                                f"({100 * r.count / ideal:.2f}%; running "
                                f"{r.time_running}/{r.time_enabled} ns)")


def _ev(ev: int) -> str:
    try:
        return event_name(ev)
    except (KeyError, ValueError):
        return hex(ev)


class El2ProhibitedForGuestCounters(Invariant):
    """While a partitioned vCPU's counters are in hardware, MDCR_EL2.HPMD (PMUv3p1+) and
    MDCR_EL2.HCCD (PMUv3p5+) are set, so the guest's first-range counters and the cycle
    counter cannot count EL2 whatever their filters say (the architecture's guarantee, not
    only KVM's filter)."""

    name = "el2-prohibited"
    rule = "a partitioned guest's counters are prohibited from counting at EL2 (HPMD, HCCD)"
    source = ("spec kvm-partitioning §2.5 (v7 09/20, v8 10/21: HPMD|HCCD when partitioned; "
              "Oliver Upton lore:aD91vp8QXdIjs1Nh@linux.dev); pmuv3 §5 item 3 (EL2 rule)")
    events = frozenset({"guest_counters_loaded", "vcpu_load"})

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        at = self.where(data)
        if at is None or not self.c.in_hw(at[1], at[0]):
            return
        cpu, vcpu = at
        pe = self.c.pe(cpu)
        mdcr = pe.snapshot().mdcr_el2
        missing = []
        if pe.pmuver >= PMUVer.V3P1 and not mdcr & HPMD:
            missing.append("HPMD")
        if pe.pmuver >= PMUVer.V3P5 and not mdcr & HCCD:
            missing.append("HCCD")
        if missing:
            self.report(cpu, vcpu.name, f"MDCR_EL2.{'/'.join(missing)} clear while the guest's "
                        "counters are in hardware", key=("hpmd",), mdcr_el2=hex(mdcr),
                        pmuver=pe.pmuver.name)


# ---------------------------------------------------------------------- 4. host counts
class HostEventsKeepTheirCounts(Invariant):
    """Host events keep their counts while guests run, scaled where multiplexed, including
    while squeezed out.

    While an event holds a counter it must count exactly what its CPU retires at the ELs
    its attributes select (``armv8pmu_set_event_filter`` on a VHE host, the EL0 switch of
    ``kvm_vcpu_pmu_restore_guest/host``): the checker adds up, for every block the PE
    counts (work and EL2 work), what each active event should see, and compares at the
    end.  Whatever a guest does to a host counter (writes it, disables it, resets it, counts
    on it) shows as a difference.  Where the event was multiplexed or squeezed out, the
    rest is perf's own scaling (``count * enabled / running``): its error against the ledger,
    and an event that never ran at all (``<not counted>``), are reported as notes.

    Documented exception: while a partitioned vCPU is loaded, MDCR_EL2.HPMD and HCCD (set
    for it, spec kvm-partitioning §2.5) prohibit counting at EL2 by *range*, not by owner
    (pmuv3 §5 items 3 and 5): a host event still in the first range or on PMCCNTR (the lazy
    FREE state keeps HPMN = N; the windows in kvm_pmu_load before the host's events are
    moved and in kvm_pmu_put after they come back) does not see KVM's EL2 work then.  Those
    events are tallied in a note, not expected."""

    name = "host-counts"
    rule = "host events keep their counts (scaled where multiplexed) while guests run"
    source = ("spec kvm-partitioning §2.3 (host keeps the high range; v7 13/20 "
              "perf_pmu_resched_update, squeezed events), §2.5 (HPME: host counters keep "
              "counting while the guest runs), §5 (x86 contrast: host loses the PMU)")
    events = frozenset({"squeezed", "pe_count", "el2_end", "fast_forward"})

    def __init__(self, checker: Checker) -> None:
        super().__init__(checker)
        self.squeezed = 0
        self.expected: dict[int, int] = {}  #: event id -> what it should have counted
        self.ff: set[int] = set()  #: events whose counts the engine extrapolated
        self.squeezed_ids: set[int] = set()
        #: EL2 events host events did not count because KVM's MDCR_EL2.HPMD/HCCD prohibited
        #: their counter (documented exception)
        self.lost_el2: dict[int, int] = {}

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "squeezed":
            self.squeezed += 1
            ev = data.get("event")
            if ev is not None:
                self.squeezed_ids.add(int(getattr(ev, "id", 0)))
            return
        cpu = data["cpu"]
        if kind == "fast_forward":
            task = self.c.host.cpus[cpu].ctx.task
            for ev in self.c.host.events:
                if ev.cpu == cpu or (task is not None and ev.task is task):
                    self.ff.add(ev.id)
            return
        if kind == "el2_end":
            el = 2
            events: dict[int, int] = {int(Event.CPU_CYCLES): int(data["cycles"]),
                                      int(Event.INST_RETIRED): int(data["inst"])}
        else:
            el = int(data["el"])
            events = data["events"]
        hc = self.c.host.cpus[cpu]
        guest = hc.guest_loaded
        exp = self.expected
        blocked = 0  # counters KVM's MDCR_EL2 prohibits at EL2 (the documented exception)
        if el == 2 and guest:
            pe = hc.pe
            mdcr = pe.snapshot().mdcr_el2
            if mdcr & HPMD and pe.pmuver >= PMUVer.V3P1:
                blocked |= (1 << pe.hpmn) - 1
            if mdcr & HCCD and pe.pmuver >= PMUVer.V3P5:
                blocked |= C_BIT
        for ev in self.c.host.pmu_of_cpu(cpu).hw[cpu].events.values():
            if ev.state is not EventState.ACTIVE:
                continue
            n = events.get(ev.attr.config)
            if not n:
                continue
            a = ev.attr
            if el == 2:
                ok = not a.exclude_kernel and not a.exclude_host
                if ok and ev.hw_idx is not None and (blocked >> ev.hw_idx) & 1:
                    self.lost_el2[ev.id] = self.lost_el2.get(ev.id, 0) + n
                    continue
            elif el == 1:
                ok = guest and not a.exclude_guest and not a.exclude_kernel
            else:
                ok = ev.guest_el0 if guest else ev.host_el0
            if ok:
                exp[ev.id] = exp.get(ev.id, 0) + n

    def finish(self, result: RunResult | None) -> None:
        host = self.c.host
        for ev in host.events:
            if not ev.owner.startswith("host") or ev.state is EventState.DEAD:
                continue
            count, ena, run = host.perf_event_read(ev)
            want = self.expected.get(ev.id, 0)
            ideal = self.c.ledger.ideal_host(ev)
            cpu = ev.cpu if ev.cpu != -1 else None
            who = f"event {ev.id} {_ev(ev.attr.config)} ({ev.owner}"
            who += f", cpu{ev.cpu})" if ev.cpu != -1 else \
                f", task {ev.task.name if ev.task else '?'})"
            if ev.id not in self.ff and abs(count - want) > self.c.host_slack:
                self.report(cpu, None, f"host {who} did not count what its CPU retired while "
                            "it held a counter", key=("held", ev.id), count=count,
                            expected=want, difference=count - want, time_enabled=ena,
                            time_running=run)
            if ena == 0:
                continue
            if ev.id in self.ff and run >= ena and \
                    abs(count - ideal) > self.c.ff_tol * ideal + self.c.host_slack:
                self.report(cpu, None, f"host {who} count (fast-forwarded) is off the ledger",
                            key=("ff", ev.id), count=count, retired=ideal,
                            error=f"{100 * (count - ideal) / max(1, ideal):+.3f}%")
            if run == 0:
                if ideal > 0:  # perf prints <not counted>: honest, if a loss
                    why = "squeezed out by a guest" if ev.id in self.squeezed_ids else \
                        "no counter free for it (multiplexing, or none left to the host)"
                    self.c.note(f"host {who} never counted ({why}): {ideal} retired")
                continue
            if run < ena * 0.999 and ideal:
                scaled = count * ena // run
                self.c.note(f"host {who}: multiplexed ({100 * run / ena:.1f}% running), "
                            f"scaled {scaled} vs {ideal} retired "
                            f"({100 * (scaled - ideal) / ideal:+.2f}%: perf's scaling)")
        if self.squeezed:
            self.c.note(f"{self.squeezed} host events were squeezed out by guests "
                        "(perf_pmu_resched_update)")
        if self.lost_el2:
            self.c.note(f"{len(self.lost_el2)} host events did not count "
                        f"{sum(self.lost_el2.values())} EL2 events: MDCR_EL2.HPMD/HCCD set for "
                        "a partitioned vCPU prohibit the first range and PMCCNTR at EL2 whoever "
                        "owns them (lazy FREE state, fallback, the load/put windows; pmuv3 §5)")


# ---------------------------------------------------------------------- 5. interrupts
class OverflowReachesItsOwnerOnce(Invariant):
    """Every overflow interrupt reaches its owner exactly once: at each PMU interrupt, a
    pending overflow of a host event's counter is acknowledged by the host driver (its flag
    cleared, or it fires again), a pending overflow of a loaded guest's counter is moved to
    that vCPU's virtual PMOVSSET and cleared in hardware, and no counter belongs to both."""

    name = "irq-owner"
    rule = "every overflow interrupt reaches its owner exactly once"
    source = ("spec kvm-partitioning §2.9 (v7 15/20: host clears host bits, "
              "kvm_pmu_handle_guest_irq takes the guest's); pmuv3 §7 (one PMUIRQ per PE)")
    events = frozenset({"pmu_irq"})

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        cpu = data.get("cpu")
        pending = data.get("pending")
        if not isinstance(cpu, int) or not isinstance(pending, int) or not pending:
            return
        hc = self.c.host.cpus[cpu]
        pmu = self.c.host.pmu_of_cpu(cpu)
        post = hc.pe.snapshot().pmovs
        host_bits = 0
        for idx, ev in pmu.hw[cpu].events.items():
            if ev.state is EventState.ACTIVE:
                host_bits |= 1 << idx
        guest_bits = hc.guest_counter_mask
        vcpu = self.c.loaded(cpu)
        name = vcpu.name if vcpu is not None else None
        both = pending & host_bits & guest_bits
        if both:
            self.report(cpu, name, "an overflow is delivered both to a host event and to the "
                        "guest", key=("both", both), counters=_bits(both))
        unacked = pending & host_bits & ~guest_bits & post
        if unacked:
            self.report(cpu, name, "host overflow left pending after the host's handler (it "
                        "will be taken again)", key=("host-unacked", unacked),
                        counters=_bits(unacked))
        g = pending & guest_bits & ~host_bits
        if g and vcpu is not None and vcpu.pmu is not None:
            lost = g & ~vcpu.pmu.ovs
            again = g & post
            if lost or again:
                self.report(cpu, name, "guest overflow not moved exactly once to the vCPU's "
                            "virtual PMOVSSET", key=("guest-lost", g), counters=_bits(g),
                            not_in_virtual=_bits(lost), still_in_hw=_bits(again))


# ---------------------------------------------------------------------- 6. HPMN
class HpmnWithinTheCpu(Invariant):
    """MDCR_EL2.HPMN on each CPU is within that CPU's counters: never above PMCR_EL0.N, and
    0 only with FEAT_HPMN0 (else CONSTRAINED UNPREDICTABLE).  KVM must derive it from the
    CPU it runs on, not from the VM's PMU (the v1 06/17 review point)."""

    name = "hpmn-legal"
    rule = "MDCR_EL2.HPMN on each CPU is within that CPU's counters"
    source = ("spec pmuv3 §9 (HPMN > N or 0 without HPMN0: CONSTRAINED UNPREDICTABLE); "
              "kvm-partitioning §2.4 (Oliver Upton, lore:aD4llDZwb_sC_Ptj@linux.dev)")
    events = frozenset({"vcpu_load", "guest_counters_loaded", "guest_access", "vcpu_put"})

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        cpu = data.get("cpu")
        if isinstance(cpu, int):
            self._check(cpu, str(data.get("vcpu")))

    def _check(self, cpu: int, vcpu: str | None) -> None:
        pe = self.c.pe(cpu)
        if not pe.hpmn_constrained_unpredictable:
            return
        mdcr = pe.snapshot().mdcr_el2
        vc = self.c.vcpu(vcpu) if vcpu else None
        vm_pmu = vc.vm.arm_pmu if vc is not None else None
        self.report(cpu, vcpu, "MDCR_EL2.HPMN is CONSTRAINED UNPREDICTABLE on this CPU",
                    key=("hpmn", mdcr & 0x1F), hpmn=mdcr & 0x1F, cpu_counters=pe.num_counters,
                    hpmn0=pe.hpmn0, effective=pe.hpmn, cpu_pmu=self.c.host.pmu_of_cpu(cpu).name,
                    vm_pmu=vm_pmu.name if vm_pmu is not None else None)

    def check_state(self) -> None:
        for hc in self.c.host.cpus:
            self._check(hc.id, getattr(hc.loaded_vcpu, "name", None))


# ---------------------------------------------------------------------- 7. CPU coverage
class VcpuRunsOnlyWhereItsPmuIs(Invariant):
    """No vCPU enters a guest on a CPU its PMU does not cover: outside the VM's
    ``supported_cpus`` (the explicit PMU's CPUs after SET_PMU) KVM must fail the entry with
    KVM_EXIT_FAIL_ENTRY (CPU_UNSUPPORTED) instead of running the guest."""

    name = "pmu-covers-cpu"
    rule = "no vCPU enters a guest on a CPU its PMU does not cover"
    source = ("spec kvm-partitioning §4.2 (ON_UNSUPPORTED_CPU, KVM_EXIT_FAIL_ENTRY), §2.4 "
              "(Oliver Upton, lore:aECzTYoj1F6WHAUC@linux.dev)")
    events = frozenset({"guest_access", "guest_retire", "retire", "switch_in"})

    def __init__(self, checker: Checker) -> None:
        super().__init__(checker)
        self._noted: set[tuple[str, int]] = set()

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        cpu = data.get("cpu")
        name = data.get("vcpu") if "vcpu" in data else data.get("ctx")
        if not isinstance(cpu, int) or name is None:
            return
        vcpu = self.c.vcpu(str(name))
        if vcpu is None:
            return
        vm = vcpu.vm
        if cpu not in vm.supported_cpus:
            self.report(cpu, vcpu.name, "vCPU runs guest code on a CPU outside its VM's "
                        "supported CPUs", key=("unsupported", cpu), event=kind,
                        supported=sorted(vm.supported_cpus),
                        vm_pmu=vm.arm_pmu.name if vm.arm_pmu else None)
        elif vm.arm_pmu is not None and cpu not in vm.arm_pmu.cpus and \
                (vcpu.name, cpu) not in self._noted:
            self._noted.add((vcpu.name, cpu))
            self.c.note(f"{vcpu.name} runs on cpu{cpu}, outside its default PMU "
                        f"{vm.arm_pmu.name} (documented: kvm_arm_set_default_pmu leaves "
                        "supported_cpus unrestricted)")


# ---------------------------------------------------------------------- 8. one CPU at a time
class OneCpuAtATime(Invariant):
    """A vCPU thread (and any host task) runs on at most one physical CPU at any instant:
    it is switched in on a CPU only after it was switched out of the last one, no earlier
    in simulated time.  A thread is one Linux task, and a task is on one runqueue's CPU at
    a time (kernel/sched/core.c: ``set_task_cpu`` moves a task that is not running;
    KVM's ``kvm_arch_vcpu_load`` on the new CPU follows ``kvm_arch_vcpu_put`` on the old)."""

    name = "one-cpu"
    rule = "a vCPU or task runs on at most one CPU at any instant"
    source = ("kernel/sched/core.c (set_task_cpu: only a task that is not running "
              "migrates); arch/arm64/kvm/arm.c (kvm_arch_vcpu_put before the next "
              "kvm_arch_vcpu_load)")
    events = frozenset({"switch_in", "switch_out"})

    def __init__(self, checker: Checker) -> None:
        super().__init__(checker)
        self._on: dict[str, tuple[int, int]] = {}  #: ctx -> (cpu, switched in at)
        self._left: dict[str, tuple[int, int]] = {}  #: ctx -> (cpu, switched out at)

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        ctx, cpu, t = str(data["ctx"]), int(data["cpu"]), int(data["t"])
        who = ctx if ctx in self.c._guest_ctx else None
        if kind == "switch_in":
            if ctx in self._on and self._on[ctx][0] != cpu:
                other, since = self._on[ctx]
                self.report(cpu, who, f"{ctx} switched in while still running on another "
                            "CPU", key=("on", other), ctx=ctx, other_cpu=other,
                            running_since=_ms(since), switch_in=_ms(t))
            elif ctx in self._left and self._left[ctx][0] != cpu and \
                    self._left[ctx][1] > t:
                other, until = self._left[ctx]
                self.report(cpu, who, f"{ctx} runs on two CPUs at once",
                            key=("overlap", other), ctx=ctx, other_cpu=other,
                            other_until=_ms(until), switch_in=_ms(t), overlap_ns=until - t)
            self._on[ctx] = (cpu, t)
        else:
            self._on.pop(ctx, None)
            self._left[ctx] = (cpu, t)


# ---------------------------------------------------------------------- 9. perf times
class PerfTimesWithinElapsed(Invariant):
    """Every perf reading, the guests' and the host's, has time_running <= time_enabled <=
    the simulated time elapsed: perf's times only grow while the event is enabled
    (``time_enabled``) and, of that, while it is on a counter (``time_running``)
    (kernel/events/core.c: ``update_event_times``/``perf_event_update_time``; the
    ``perf_event_read_format`` of include/uapi/linux/perf_event.h)."""

    name = "perf-times"
    rule = "time_running <= time_enabled <= elapsed, for every perf reading"
    source = ("kernel/events/core.c (perf_event_update_time); include/uapi/linux/"
              "perf_event.h (PERF_FORMAT_TOTAL_TIME_ENABLED/RUNNING)")

    def finish(self, result: RunResult | None) -> None:
        if result is None or self.c.machine is None:
            return
        elapsed = max(hc.now_ns for hc in self.c.host.cpus)
        for ctx in result.contexts:
            drv = ctx.driver
            if drv is None:
                continue
            for i, ev in enumerate(drv.results()):
                self._check(ctx.name, ev.event, ev.time_enabled, ev.time_running, elapsed,
                            cpu=None, guest=True, index=i)
        for session, rows in result.host:
            for row in rows:
                for _count, ena, run, cpu in row.readings:
                    self._check(f"host {session.scope}", f"{row.pmu}/{row.event}/", ena, run,
                                elapsed, cpu=cpu, guest=False, index=0)

    def _check(self, who: str, event: str, enabled: int, running: int, elapsed: int, *,
               cpu: int | None, guest: bool, index: int) -> None:
        if running <= enabled <= elapsed:
            return
        what = ("time_running > time_enabled" if running > enabled
                else "time_enabled > the elapsed time")
        self.report(cpu, who if guest else None, f"{who}: {event}: {what}",
                    key=(who, event, cpu, index), time_enabled=_ms(enabled),
                    time_running=_ms(running), elapsed=_ms(elapsed))


ALL_INVARIANTS: tuple[type[Invariant], ...] = (
    GuestStaysInItsShare,
    NothingLeaksAcrossSwitches,
    GuestCountsOnlyItsOwnWork,
    El2ProhibitedForGuestCounters,
    HostEventsKeepTheirCounts,
    OverflowReachesItsOwnerOnce,
    HpmnWithinTheCpu,
    VcpuRunsOnlyWhereItsPmuIs,
    OneCpuAtATime,
    PerfTimesWithinElapsed,
)

__all__ = ["ALL_INVARIANTS", "El2ProhibitedForGuestCounters", "GuestCountsOnlyItsOwnWork",
           "GuestStaysInItsShare", "HostEventsKeepTheirCounts", "HpmnWithinTheCpu",
           "Invariant", "InvariantViolation", "NothingLeaksAcrossSwitches",
           "OneCpuAtATime", "OverflowReachesItsOwnerOnce", "PerfTimesWithinElapsed",
           "VcpuRunsOnlyWhereItsPmuIs"]
