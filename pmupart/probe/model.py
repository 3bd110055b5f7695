"""The model's side of a probe comparison: the image under the runner, and the prediction.

* :func:`pe_from_ids` configures a bare PE like the one a log ran on, from the ID registers
  of the log's preamble (spec §4 ID registers, §10 PMCEID; arch/arm64/tools/sysreg,
  ARM §D24.5.4/5).
* :func:`run_image` runs the image's EL1 part under the unicorn runner
  (:class:`pmupart.guest.aarch64.AArch64Program`) on a PE, with :class:`ProbeHypervisor`
  serving the EL2 monitor's hypercall ABI, or as a KVM guest on a vCPU; the results are
  read back from the image's log buffer in memory.
* :func:`predict` applies the catalogue's ops directly to the same register API
  (``read``/``write``/``count`` at an EL), without machine code: the model's own
  expectation.  The two must agree exactly: that is the self-consistency check of the
  runner, the PE and the KVM layer.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from enum import Enum
from typing import Any

from pmupart.arch.features import PMUVer
from pmupart.arch.pe import PE, Access
from pmupart.arch.pe import Outcome as AccOutcome
from pmupart.arch.policy import Policies
from pmupart.arch.sysreg import lookup
from pmupart.guest.aarch64.runner import (
    PSCI_SYSTEM_OFF,
    AArch64Program,
    HypResult,
    SysregTrap,
)
from pmupart.probe.catalogue import Op, outcomes
from pmupart.probe.image import (
    D_LOG,
    D_LOGPTR,
    DATA_SIZE,
    FN_IRQ,
    FN_READ,
    FN_TRAPQ,
    FN_WORK,
    FN_WRITE,
    WORK_ITERATIONS,
    ProbeImage,
)
from pmupart.probe.log import ProbeLog, ProbeLogError, format_result, parse_log

_UNDEF_ESR = 1 << 25  #: EC 0x00 (unknown reason), IL = 1 (ARM §D24.2 ESR_ELx)
_EC_SYSREG = 0x18
_RT = 1  #: the image moves PMU registers through x1
LOAD_BASE = 0x10000  #: where the model run loads the image
WORK_EVENTS: dict[str | int, int] = {"CPU_CYCLES": 2 * WORK_ITERATIONS,
                                     "INST_RETIRED": 2 * WORK_ITERATIONS}


def sysreg_esr(reg: str, write: bool, rt: int = _RT) -> int:
    """ESR of an MSR/MRS trapped with EC 0x18 (ARM §D24.2 ESR_EL1/ESR_EL2, ISS encoding for
    an exception from MSR, MRS or System instruction execution)."""
    op0, op1, crn, crm, op2 = lookup(reg).encoding
    iss = (op0 << 20) | (op2 << 17) | (op1 << 14) | (crn << 10) | (rt << 5) | (crm << 1) \
        | (0 if write else 1)
    return (_EC_SYSREG << 26) | (1 << 25) | iss


def encode(op: Op, acc: Access) -> str:
    """The log text of an op's outcome (see :mod:`pmupart.probe.log`)."""
    if acc.outcome is AccOutcome.OK:
        if op.kind == "w":
            return "ok"
        v = acc.value or 0
        return format_result("nz", v) if op.nz else format_result("v", v & op.mask)
    if acc.outcome is AccOutcome.UNDEFINED:
        return format_result("t2" if op.el == 2 else "t1", (op.el << 60) | _UNDEF_ESR)
    esr = sysreg_esr(op.reg, op.kind == "w") | (op.el << 60)
    return format_result("t1" if acc.outcome is AccOutcome.TRAP_EL1 else "t2", esr)


# ---------------------------------------------------------------------- configuration
def pmuver_of(dfr0: int) -> PMUVer:
    v = (dfr0 >> 8) & 0xF
    try:
        return PMUVer(v)
    except ValueError:
        raise ProbeLogError(f"ID_AA64DFR0_EL1.PMUVer = {v:#x}: no PMUv3 the model knows "
                            "(0x0 is no PMU, 0xf an IMPLEMENTATION DEFINED PMU)") from None


def events_of(pmceid0: int, pmceid1: int) -> frozenset[int]:
    """The events PMCEID0/1 advertise (spec §10 PMCEID mapping; ARM §D24.5.4/5)."""
    ev: set[int] = set()
    for n in range(32):
        if (pmceid0 >> n) & 1:
            ev.add(n)
        if (pmceid0 >> (32 + n)) & 1:
            ev.add(0x4000 + n)
        if (pmceid1 >> n) & 1:
            ev.add(0x20 + n)
        if (pmceid1 >> (32 + n)) & 1:
            ev.add(0x4020 + n)
    return frozenset(ev)


def pe_kwargs(ids: dict[str, int]) -> dict[str, Any]:
    """PE constructor arguments that reproduce the PE a log's preamble describes."""
    need = ("ID_AA64DFR0_EL1", "PMCR_EL0", "PMCEID0_EL0", "PMCEID1_EL0")
    missing = [r for r in need if r not in ids]
    if missing:
        raise ProbeLogError("the log's ID preamble lacks " + ", ".join(missing))
    dfr0 = ids["ID_AA64DFR0_EL1"]
    ver = pmuver_of(dfr0)
    mmfr0 = ids.get("ID_AA64MMFR0_EL1", 0)
    pfr0 = ids.get("ID_AA64PFR0_EL1", 0x11)
    fgt = (mmfr0 >> 56) & 0xF
    imp = (ids["PMCR_EL0"] >> 24) & 0xFF if ver < PMUVer.V3P7 else \
        (ids.get("MIDR_EL1", 0x41 << 24) >> 24) & 0xFF
    return dict(num_counters=(ids["PMCR_EL0"] >> 11) & 0x1F, pmuver=ver,
                fgt=fgt >= 1, fgt2=fgt >= 2, hpmn0=(dfr0 >> 60) & 0xF == 1,
                icntr=(ids.get("ID_AA64DFR1_EL1", 0) >> 36) & 0xF == 1,
                aarch32=(pfr0 & 0xF) == 2 or ((pfr0 >> 4) & 0xF) == 2,
                el2=((pfr0 >> 8) & 0xF) != 0,
                events=events_of(ids["PMCEID0_EL0"], ids["PMCEID1_EL0"]), implementer=imp)


def pe_from_ids(ids: dict[str, int], policies: Policies | None = None) -> PE:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a what-if combination is still what the log shows
        return PE(**pe_kwargs(ids), policies=policies)


def policy_alternatives() -> list[tuple[str, Policies]]:
    """Every single-choice departure from the default policies: ``("name=value", Policies)``
    (DESIGN.md decision 3: each CONSTRAINED UNPREDICTABLE case is a named policy)."""
    out: list[tuple[str, Policies]] = []
    base = Policies()
    for f in fields(Policies):
        default = getattr(base, f.name)
        if not isinstance(default, Enum):
            continue
        for member in type(default):
            if member is not default:
                out.append((f"{f.name}={member.value}",
                            Policies.from_mapping({f.name: member.value})))
    return out


# ---------------------------------------------------------------------- the EL2 monitor
class ProbeHypervisor:
    """The image's EL2 monitor, on the model's PE: the hypercall ABI of
    :mod:`pmupart.probe.image` and the record of the last exception taken to EL2."""

    def __init__(self, pe: PE, el2_regs: tuple[str, ...]) -> None:
        self.pe = pe
        self.el2_regs = el2_regs
        self.record = 0

    def sysreg_trap(self, cpu: Any, trap: SysregTrap) -> HypResult:
        # The monitor records ESR_EL2 and the EL the trap came from, and skips the access.
        self.record = trap.esr | (trap.el << 60)
        return HypResult(value=0)

    def hvc(self, cpu: Any, imm: int, x: list[int]) -> int | None:
        fn = x[0]
        if fn == PSCI_SYSTEM_OFF:
            return None
        pe = self.pe
        if fn in (FN_READ, FN_WRITE):
            if not 0 <= x[1] < len(self.el2_regs):
                return (1 << 64) - 1
            reg = self.el2_regs[x[1]]
            with pe.at_el(2):
                acc = pe.write(reg, x[2]) if fn == FN_WRITE else pe.read(reg)
            if not acc.ok:
                self.record = (2 << 60) | _UNDEF_ESR
                return fn  # the monitor's x0 is left as it was
            return 0 if fn == FN_WRITE else (acc.value or 0)
        if fn == FN_TRAPQ:
            r, self.record = self.record, 0
            return r
        if fn == FN_WORK:
            with pe.at_el(2):
                pe.count(WORK_EVENTS)
            return 0
        if fn == FN_IRQ:
            return int(pe.pmuirq)
        return (1 << 64) - 1


def monitor_boot(pe: PE) -> None:
    """What the image's EL2 monitor programs before it drops to EL1: HCR_EL2 = RW only (so
    E2H and TGE are 0) and MDCR_EL2.HPMN = N with no traps (as Linux's
    ``__init_el2_debug`` in arch/arm64/include/asm/el2_setup.h, spec §2)."""
    pe.write_el2("HCR_EL2", 1 << 31)
    pe.write_el2("MDCR_EL2", pe.num_counters)


def _results_from_memory(image: ProbeImage, mem: Callable[[int, int], bytes]) -> ProbeLog:
    data = LOAD_BASE + image.data
    n = int.from_bytes(mem(data + D_LOGPTR, 8), "little")
    text = mem(data + D_LOG, n).decode("ascii", "replace")
    return parse_log(text, "model run")


def _program(image: ProbeImage, hyp: Any) -> AArch64Program:
    code = image.with_console(None, False)
    size = LOAD_BASE + len(code) + DATA_SIZE + 0x10000
    size = (size + 0xFFFFF) & ~0xFFFFF
    return AArch64Program(code, base=LOAD_BASE, entry=LOAD_BASE + image.el1_entry, el=1,
                          mem_size=size, hypervisor=hyp, max_instructions=10**9)


def run_image_on_pe(image: ProbeImage, pe: PE) -> ProbeLog:
    """Run the image's EL1 part on ``pe`` under the runner; the EL2 monitor is Python."""
    if image.params.mode == "el2":
        monitor_boot(pe)
    prog = _program(image, ProbeHypervisor(pe, image.el2_regs))
    res = prog(pe)
    if res.mem is None:  # pragma: no cover - the runner always gives memory access
        raise RuntimeError("the runner returned no memory view")
    log = _results_from_memory(image, res.mem)
    if not log.complete:
        raise RuntimeError(f"the probe image stopped early under the model ({res.stop} at "
                           f"pc={res.pc:#x}): {log.errors}")
    return log


def run_image_on_cpu(image: ProbeImage, cpu: Any) -> ProbeLog:
    """Run a guest image on a KVM guest CPU (``vcpu.run`` gives it)."""
    prog = _program(image, None)
    res = prog(cpu)
    assert res.mem is not None
    log = _results_from_memory(image, res.mem)
    if not log.complete:
        raise RuntimeError(f"the probe image stopped early under the model ({res.stop} at "
                           f"pc={res.pc:#x}): {log.errors}")
    return log


# ---------------------------------------------------------------------- prediction
class _Target:
    """The register API ops run against: a bare PE (EL2 available) or a guest CPU."""

    def __init__(self, cpu: Any) -> None:
        self.cpu = cpu

    @contextmanager
    def at(self, el: int) -> Iterator[Any]:
        cpu = self.cpu
        if el == 2:
            with cpu.at_el(2):
                yield cpu
            return
        old = cpu.el
        cpu.el = el
        try:
            yield cpu
        finally:
            cpu.el = old


def predict(image: ProbeImage, cpu: Any) -> dict[int, str]:
    """Apply every op of the catalogue to ``cpu`` (a PE, or a KVM guest CPU for a guest
    image) and return what the image must report, by opid."""
    if image.params.mode == "el2" and isinstance(cpu, PE):
        monitor_boot(cpu)
    t = _Target(cpu)
    out: dict[int, str] = {}
    ids = {(o.probe.name, o.index): o.opid for o in outcomes(image.probes)}
    for pr in image.probes:
        for k, op in enumerate(pr.ops):
            with t.at(op.el) as c:
                if op.kind == "work":
                    c.count(WORK_EVENTS)
                    continue
                if op.kind == "irq":  # the PE's PMUIRQ (spec §7; ARM §D13.3.1)
                    out[ids[(pr.name, k)]] = format_result("v", int(c.pmuirq))
                    continue
                acc = c.write(op.reg, op.value) if op.kind == "w" else c.read(op.reg)
            out[ids[(pr.name, k)]] = encode(op, acc)
    return out


# ---------------------------------------------------------------------- KVM guests
def kvm_guest_cpu_run(core: str, vpmu: str, reserved: int, fn: Callable[[Any], Any],
                      revision: str | None = None) -> Any:
    """Run ``fn(cpu)`` on the one vCPU of a fresh VM, as a VMM sets it up: a machine of two
    ``core`` CPUs, ``arm_pmuv3.reserved_host_counters=reserved``, a vGIC, the vCPU PMU on
    PPI 23 (partitioned with ``vpmu="partitioned"``), initialised, KVM modelled at
    ``revision`` (the model's default when None).  Returns fn's result."""
    from pmupart import Machine
    from pmupart.host.topology import Topology
    from pmupart.kvm import KvmError, uapi

    if vpmu not in ("emulated", "partitioned"):
        raise ValueError(f"vpmu must be emulated or partitioned, not {vpmu!r}")
    ctrl = uapi.KVM_ARM_VCPU_PMU_V3_CTRL
    topo = Topology.from_mapping({"name": core, "cluster": [{"core": core, "count": 2}]})
    m = Machine.from_topology(topo, reserved_host_counters=reserved, revision=revision)
    v = m.kvm.create_vm().create_vcpu(pmu=True)
    try:
        if vpmu == "partitioned":
            v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION, 1)
        v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_IRQ, 23)
        v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_INIT, None)
    except KvmError as e:
        raise ValueError(f"setting up the {vpmu} vPMU on {core} "
                         f"(revision {revision or 'default'}): {e}") from None
    box: list[Any] = []
    v.run(lambda cpu: box.append(fn(cpu)), cpu=0)
    if not box:
        raise RuntimeError(f"the vCPU did not run (KVM_RUN failed on {core})")
    return box[0]


def model_log_text(image: ProbeImage, log: ProbeLog, core: Any) -> str:
    """A log file for a model run: the lines the image printed, with the ID registers the
    runner's CPU cannot know (MIDR, ID_AA64PFR0: EL0-EL2 AArch64, AArch32 as the core)
    taken from the catalogue core."""
    from pmupart.probe.image import PREFIX

    ids = dict(log.ids)
    ids["MIDR_EL1"] = core.midr
    ids["ID_AA64PFR0_EL1"] = 0x122 if core.aarch32 else 0x111
    lines = [image.begin_line()]
    lines += [f"{PREFIX} ID {k} {v:016x}" for k, v in ids.items()]
    lines += [f"{PREFIX} {k:04x} {v}" for k, v in sorted(log.results.items())]
    lines.append(f"{PREFIX} END")
    return "\n".join(lines) + "\n"
