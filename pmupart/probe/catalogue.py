"""The probe catalogue: what the conformance image does, as data.

A probe is a short sequence of :class:`Op` (a register read or write at an exception level,
or a block of work), each with the rule it exercises and the spec section that states it.
The same list drives both sides of a comparison (DESIGN.md decision 10):

* :mod:`pmupart.probe.image` compiles it to AArch64 machine code (our assembler), so an
  emulator, a board or a real KVM guest executes it;
* :mod:`pmupart.probe.model` executes the image under the model (the unicorn runner), and
  also applies the ops directly to the model's register API (the *prediction*).

Every read and write is an outcome: a value (``v``), a write that completed (``ok``), a
"counted or not" for time-based counts (``nz``), or the exception it raised (``t1``: taken
to EL1, ``t2``: taken to EL2, with the ESR and the EL it came from).

Spec sections ("spec §N") are those of the project's PMUv3 semantics notes, which are not in
the repository; docs/sources.md lists each with the Arm ARM DDI0487 sections it rests on, and
the probes give those sections with them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

FORMAT_VERSION = 1  #: the line format of the probe log (``PMUPROBE/<version> ...``)
MODES = ("el2", "guest")

# Register bits the catalogue programs (spec §2-§4; ARM §D24.3.17, §D24.5.8, §D24.5.12).
PMCR_E, PMCR_P, PMCR_C, PMCR_DP = 1 << 0, 1 << 1, 1 << 2, 1 << 5
PMCR_N_MASK = 0x1F << 11
MDCR_TPMCR, MDCR_TPM, MDCR_HPME, MDCR_HPMD, MDCR_HCCD = 1 << 5, 1 << 6, 1 << 7, 1 << 17, 1 << 23
F_P, F_U, F_NSH = 1 << 31, 1 << 30, 1 << 27
UEN_EN, UEN_SW, UEN_CR, UEN_ER = 1 << 0, 1 << 1, 1 << 2, 1 << 3
EV_SW_INCR, EV_CPU_CYCLES, EV_CHAIN = 0x00, 0x11, 0x1E
ALL31 = 0x7FFFFFFF
ALL32 = 0xFFFFFFFF
M64 = (1 << 64) - 1


@dataclass(frozen=True)
class Op:
    """One step.  ``kind``: "r" (read; ``mask`` applied, ``nz`` reports only value != 0),
    "w" (write ``value``), "irq" (EL2: the PMU interrupt request level, as the interrupt
    controller sees it), "work" (retire a block of instructions at ``el``; not an
    outcome)."""

    kind: str
    el: int
    reg: str = ""
    value: int = 0
    mask: int = M64
    nz: bool = False

    @property
    def recorded(self) -> bool:
        return self.kind in ("r", "w", "irq")

    def text(self) -> str:
        if self.kind == "work":
            return f"EL{self.el} work"
        if self.kind == "irq":
            return "PMUIRQ level (GIC pending state of PPI 23)"
        if self.kind == "w":
            return f"EL{self.el} MSR {self.reg}, {self.value:#x}"
        extra = " (!=0)" if self.nz else (f" & {self.mask:#x}" if self.mask != M64 else "")
        return f"EL{self.el} MRS {self.reg}{extra}"


@dataclass
class Probe:
    """A named sequence of ops and the rule it checks."""

    name: str
    rule: str
    section: str
    ops: list[Op] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """One recorded op of one probe, numbered in image order (``opid``)."""

    opid: int
    probe: Probe
    index: int  #: position of the op in its probe
    op: Op


@dataclass(frozen=True)
class Params:
    """What an image is built from; printed in its BEGIN line so ``probe check`` can rebuild it."""

    mode: str = "el2"
    counters: int = 6
    hpmn: tuple[int, ...] = (0, 1, 3, 6)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not 1 <= self.counters <= 31:
            raise ValueError(f"counters must be 1..31, not {self.counters}")
        if not self.hpmn or any(not 0 <= h <= 31 for h in self.hpmn):
            raise ValueError(f"HPMN values must be 0..31, not {self.hpmn}")
        if len(set(self.hpmn)) != len(self.hpmn):
            raise ValueError(f"HPMN values repeat: {self.hpmn}")

    def text(self) -> str:
        h = ",".join(str(x) for x in self.hpmn) if self.mode == "el2" else "-"
        return f"mode={self.mode} counters={self.counters} hpmn={h}"

    @classmethod
    def parse(cls, text: str) -> Params:
        kv = dict(p.split("=", 1) for p in text.split() if "=" in p)
        try:
            mode = kv["mode"]
            counters = int(kv["counters"])
            hp = kv.get("hpmn", "-")
            hpmn = (0,) if hp == "-" else tuple(int(x) for x in hp.split(","))
        except (KeyError, ValueError) as e:
            raise ValueError(f"malformed build parameters {text!r}: {e}") from None
        return cls(mode, counters, hpmn)


def default_hpmn(counters: int) -> tuple[int, ...]:
    """0 (FEAT_HPMN0 or CONSTRAINED UNPREDICTABLE), 1, an odd middle value (CHAIN across
    the boundary), and N (no partition)."""
    mid = counters // 2 | 1
    return tuple(sorted({0, 1, min(mid, counters), counters}))


class _Builder:
    def __init__(self, p: Params) -> None:
        self.p = p
        self.n = p.counters
        self.ctl = 2 if p.mode == "el2" else 1  # the EL that sets up state
        self.probes: list[Probe] = []
        self.cur: Probe | None = None

    # -- helpers
    def probe(self, name: str, rule: str, section: str) -> None:
        self.cur = Probe(name, rule, section)
        self.probes.append(self.cur)

    def r(self, el: int, reg: str, mask: int = M64, nz: bool = False) -> None:
        assert self.cur is not None
        self.cur.ops.append(Op("r", el, reg, 0, mask, nz))

    def w(self, el: int, reg: str, value: int) -> None:
        assert self.cur is not None
        self.cur.ops.append(Op("w", el, reg, value))

    def irq(self) -> None:
        assert self.cur is not None
        self.cur.ops.append(Op("irq", 2))

    def work(self, el: int) -> None:
        assert self.cur is not None
        self.cur.ops.append(Op("work", el))

    def reset(self, hpmn: int | None, mdcr_extra: int = 0, userenr: int = 0) -> None:
        """A known state: the partition, nothing enabled, no flags, no traps."""
        c = self.ctl
        if hpmn is not None:
            self.w(c, "MDCR_EL2", hpmn | mdcr_extra)
        self.w(c, "PMCR_EL0", 0)
        self.w(c, "PMCNTENCLR_EL0", ALL32)
        self.w(c, "PMINTENCLR_EL1", ALL32)
        self.w(c, "PMOVSCLR_EL0", ALL32)
        self.w(c, "PMUSERENR_EL0", userenr)
        self.w(c, "PMSELR_EL0", 0)

    def els(self) -> tuple[int, ...]:
        return (2, 1, 0) if self.ctl == 2 else (1, 0)

    # -- the catalogue
    def build(self) -> list[Probe]:
        if self.p.mode == "el2":
            for h in self.p.hpmn:
                self.per_hpmn(h, f"hpmn={h}")
            self.traps(self.p.hpmn[-1])
        else:
            self.per_hpmn(None, "guest")
        return self.probes

    def per_hpmn(self, h: int | None, tag: str) -> None:
        n, c = self.n, self.ctl
        # PMCR_EL0.N per EL (spec §3 field N; ARM §D24.5.8, §D13.1.1 RNNBYQ).
        self.probe(f"{tag} pmcr-n", "PMCR_EL0.N reads as the Effective HPMN at EL0/EL1 when "
                   "EL2 is enabled, as N at EL2", "spec §3 (ARM §D24.5.8)")
        self.reset(h, userenr=UEN_EN)
        for el in self.els():
            self.r(el, "PMCR_EL0", PMCR_N_MASK)
        # Counter-indexed registers around HPMN and N, direct and through PMSELR.
        idxs = sorted({i for i in ((h or 0) - 1, h or 0, n - 1, n) if 0 <= i <= 30}
                      if h is not None else {i for i in (0, n - 1, n) if 0 <= i <= 30})
        for i in idxs:
            for el in (1, 0):
                self.probe(f"{tag} access idx={i} EL{el}",
                           "counter n >= HPMN traps to EL2 from EL0/EL1 (FEAT_FGT) or is "
                           "CONSTRAINED UNPREDICTABLE; n >= N is UNDEFINED",
                           "spec §8.1-§8.2 (ARM §D24.5.10, §D24.5.12, §D24.5.27, §D24.5.28)")
                self.reset(h, userenr=UEN_EN)
                if i < n:
                    self.w(c, f"PMEVCNTR{i}_EL0", 0x5A00 | i)
                    self.w(c, f"PMEVTYPER{i}_EL0", F_NSH | EV_SW_INCR)
                self.r(el, f"PMEVCNTR{i}_EL0")
                self.w(el, f"PMEVCNTR{i}_EL0", 0x33)
                self.r(c, f"PMEVCNTR{i}_EL0")
                self.r(el, f"PMEVTYPER{i}_EL0")
                self.w(el, f"PMEVTYPER{i}_EL0", EV_CPU_CYCLES)
                self.r(c, f"PMEVTYPER{i}_EL0")
                self.w(el, "PMSELR_EL0", i)
                self.r(el, "PMSELR_EL0")
                self.r(el, "PMXEVCNTR_EL0")
                self.w(el, "PMXEVCNTR_EL0", 0x44)
                self.r(el, "PMXEVTYPER_EL0")
                self.w(el, "PMXEVTYPER_EL0", F_NSH | EV_SW_INCR)
                self.w(c, "PMSELR_EL0", 0)
                if i < n:
                    self.r(c, f"PMEVCNTR{i}_EL0")
                    self.r(c, f"PMEVTYPER{i}_EL0")
        # SET/CLR bitmap masks (spec §4, §8.2 RAZ/WI; ARM §D24.5.6/7/17/18/20/21).
        for el in (1, 0):
            self.probe(f"{tag} bitmaps EL{el}", "bits of counters >= the accessible count are "
                       "RAZ/WI in the SET/CLR registers at EL0/EL1; PMINTEN* UNDEFINED at EL0",
                       "spec §8.2 (ARM §D24.5.6, §D24.5.7, §D24.5.17, §D24.5.20)")
            self.reset(h, userenr=UEN_EN)
            for s, cl in (("PMCNTENSET_EL0", "PMCNTENCLR_EL0"),
                          ("PMINTENSET_EL1", "PMINTENCLR_EL1"),
                          ("PMOVSSET_EL0", "PMOVSCLR_EL0")):
                self.w(el, s, ALL32)
                self.r(el, s)
                self.r(c, s)
                self.w(c, s, ALL32)
                self.w(el, cl, ALL32)
                self.r(el, cl)
                self.r(c, s)
                self.w(c, cl, ALL32)
        # PMCR.P / PMCR.C by range (spec §3 P; ARM §D24.5.8, §D13.11.1).
        for el in self.els():
            self.probe(f"{tag} pmcr-p/c EL{el}", "PMCR.P from EL0/EL1 resets only the counters "
                       "below HPMN; from EL2 all; PMCR.C resets PMCCNTR",
                       "spec §3 (ARM §D24.5.8, §D13.11.1)")
            self.reset(h, userenr=UEN_EN)
            for i in range(n):
                self.w(c, f"PMEVCNTR{i}_EL0", 0x100 + i)
            self.w(c, "PMCCNTR_EL0", 0x777)
            self.w(el, "PMCR_EL0", PMCR_P)
            for i in range(n):
                self.r(c, f"PMEVCNTR{i}_EL0")
            self.r(c, "PMCCNTR_EL0")
            self.w(el, "PMCR_EL0", PMCR_C)
            self.r(c, "PMCCNTR_EL0")
        # PMSWINC by range and EL filter (spec §6 SW_INCR, §5 filtering; ARM §J1.3.1.114,
        # §D13.7.3.2, §J1.3.1.93).
        filters = ((F_NSH, "all ELs"), (F_P | F_NSH, "not EL1"), (F_U | F_NSH, "not EL0"),
                   (0, "not EL2"))
        variants: list[tuple[int, int, str]] = [(f, MDCR_HPME, d) for f, d in filters]
        if h is not None:
            variants += [(F_NSH, 0, "all ELs, HPME=0"),
                         (F_NSH, MDCR_HPME | MDCR_HPMD, "all ELs, HPMD=1")]
        for filt, extra, desc in variants:
            for el in self.els():
                self.probe(f"{tag} swinc {desc} EL{el}",
                           "PMSWINC increments the accessible SW_INCR counters that count at "
                           "the writer's EL (filter P/U/NSH, HPMD, PMCR.E/HPME)",
                           "spec §6, §5 (ARM §J1.3.1.114, §D13.7.3.2, §J1.3.1.93, §D13.5.4)")
                self.reset(h, mdcr_extra=extra, userenr=UEN_SW)
                self.w(c, "PMCR_EL0", PMCR_E)
                for i in range(n):
                    self.w(c, f"PMEVTYPER{i}_EL0", filt | EV_SW_INCR)
                    self.w(c, f"PMEVCNTR{i}_EL0", 0)
                self.w(c, "PMCNTENSET_EL0", (1 << n) - 1)
                self.w(el, "PMSWINC_EL0", ALL31)
                for i in range(n):
                    self.r(c, f"PMEVCNTR{i}_EL0")
        # The cycle counter at EL2 with HPMD, DP, HCCD (spec §5.5; ARM §J1.3.1.93, §D13.5.4).
        if h is not None:
            for extra, dp, desc in ((0, 0, "plain"), (MDCR_HPMD, 0, "HPMD=1 DP=0"),
                                    (MDCR_HPMD, PMCR_DP, "HPMD=1 DP=1"),
                                    (MDCR_HCCD, 0, "HCCD=1")):
                self.probe(f"{tag} cycle EL2 {desc}",
                           "PMCCNTR at EL2 stops for HPMD only with PMCR.DP=1, and always "
                           "for HCCD (PMUv3p5)", "spec §5.5 (ARM §J1.3.1.93, §D13.5.4)")
                self.reset(h, mdcr_extra=extra)
                self.w(2, "PMCCFILTR_EL0", F_P | F_U | F_NSH)
                self.w(2, "PMCCNTR_EL0", 0)
                self.w(2, "PMCR_EL0", PMCR_E | dp)
                self.w(2, "PMCNTENSET_EL0", 1 << 31)
                self.work(2)
                self.w(2, "PMCNTENCLR_EL0", 1 << 31)
                self.r(2, "PMCCNTR_EL0", nz=True)
        # CHAIN pairs, across HPMN when it is odd (spec §6 CHAIN; ARM §J1.1.1.47, §D14.3).
        self.probe(f"{tag} chain", "an odd counter counting CHAIN increments when its even "
                   "neighbour overflows; UNPREDICTABLE across an odd HPMN",
                   "spec §6 (ARM §J1.1.1.47, §D14.3)")
        self.reset(h, mdcr_extra=MDCR_HPME)
        self.w(c, "PMCR_EL0", PMCR_E)
        pairs = [k for k in range(0, n - 1, 2)]
        for k in pairs:
            self.w(c, f"PMEVTYPER{k}_EL0", F_NSH | EV_SW_INCR)
            self.w(c, f"PMEVCNTR{k}_EL0", ALL32)
            self.w(c, f"PMEVTYPER{k + 1}_EL0", F_NSH | EV_CHAIN)
            self.w(c, f"PMEVCNTR{k + 1}_EL0", 0)
        self.w(c, "PMCNTENSET_EL0", (1 << n) - 1)
        self.w(c, "PMSWINC_EL0", sum(1 << k for k in pairs))
        for i in range(n):
            self.r(c, f"PMEVCNTR{i}_EL0")
        self.r(c, "PMOVSSET_EL0")
        # Overflow by range: PMCR.E for the first range, HPME for the second (spec §3, §7;
        # ARM §D13.5.1 Table D13-4, §D13.3.1).
        enables = ((PMCR_E, 0), (0, MDCR_HPME), (PMCR_E, MDCR_HPME), (0, 0)) \
            if h is not None else ((PMCR_E, 0), (0, 0))
        for e, hpme in enables:
            self.probe(f"{tag} overflow E={e} HPME={int(bool(hpme))}",
                       "a counter counts and overflows only with its range's global enable: "
                       "PMCR.E below HPMN, MDCR_EL2.HPME from HPMN",
                       "spec §3, §7 (ARM §D13.5.1, §D13.3.1)")
            self.reset(h, mdcr_extra=hpme)
            self.w(c, "PMCR_EL0", e)
            for i in range(n):
                self.w(c, f"PMEVTYPER{i}_EL0", F_NSH | EV_SW_INCR)
                self.w(c, f"PMEVCNTR{i}_EL0", ALL32)
            self.w(c, "PMCNTENSET_EL0", (1 << n) - 1)
            self.w(c, "PMINTENSET_EL1", (1 << n) - 1)
            self.w(c, "PMSWINC_EL0", (1 << n) - 1)
            self.r(c, "PMOVSSET_EL0")
            for i in range(n):
                self.r(c, f"PMEVCNTR{i}_EL0")
        # The interrupt request by range: an overflow flag with its PMINTEN bit raises PMUIRQ
        # only under its range's global enable (spec §7; ARM §D13.3.1, CheckForPMUOverflow
        # ARM §J1.3.1.90).
        if h is not None:
            bits = [b for b in (0 if h > 0 else -1, n - 1 if h < n else -1, 31) if b >= 0]
            for e, hpme in ((PMCR_E, 0), (0, MDCR_HPME), (PMCR_E, MDCR_HPME), (0, 0)):
                self.probe(f"{tag} pmuirq E={e} HPME={int(bool(hpme))}",
                           "PMUIRQ is asserted for a set PMOVS bit with its PMINTEN bit only "
                           "under the range's global enable: PMCR.E below HPMN and for "
                           "PMCCNTR, MDCR_EL2.HPME from HPMN", "spec §7 (ARM §D13.3.1, "
                           "§J1.3.1.90)")
                self.reset(h, mdcr_extra=hpme)
                self.w(c, "PMCR_EL0", e)
                for b in bits:
                    self.w(c, "PMINTENSET_EL1", 1 << b)
                    self.w(c, "PMOVSSET_EL0", 1 << b)
                    self.irq()
                    self.w(c, "PMINTENCLR_EL1", 1 << b)
                    self.irq()
                    self.w(c, "PMOVSCLR_EL0", 1 << b)
        # PMUSERENR_EL0 gating at EL0 (spec §8.3; ARM §D24.5.26, §D13.11.3).
        for u, desc in ((0, "0"), (UEN_EN, "EN"), (UEN_SW, "SW"), (UEN_CR, "CR"),
                        (UEN_ER, "ER")):
            self.probe(f"{tag} pmuserenr={desc} EL0", "EL0 access needs PMUSERENR.EN, or "
                       "ER (counter reads, PMSELR), CR (PMCCNTR reads), SW (PMSWINC); "
                       "PMINTEN* and PMUSERENR writes are UNDEFINED at EL0",
                       "spec §8.3 (ARM §D24.5.26, §D13.11.3)")
            self.reset(h, userenr=u)
            self.r(0, "PMCR_EL0", PMCR_N_MASK)
            self.w(0, "PMCR_EL0", 0)
            self.r(0, "PMCNTENSET_EL0")
            self.w(0, "PMSWINC_EL0", 0)
            self.r(0, "PMCCNTR_EL0", mask=0)
            self.r(0, "PMEVCNTR0_EL0")
            self.w(0, "PMSELR_EL0", 0)
            self.r(0, "PMSELR_EL0")
            self.r(0, "PMXEVCNTR_EL0")
            self.r(0, "PMXEVTYPER_EL0")
            self.r(0, "PMCCFILTR_EL0")
            self.r(0, "PMOVSSET_EL0")
            self.r(0, "PMINTENSET_EL1")
            self.r(0, "PMUSERENR_EL0")
            self.w(0, "PMUSERENR_EL0", 0)

    def traps(self, h: int) -> None:
        """MDCR_EL2.TPM / TPMCR (spec §8.4; ARM §D24.3.17)."""
        for extra, desc in ((MDCR_TPM, "TPM"), (MDCR_TPMCR, "TPMCR")):
            for el, u in ((1, 0), (0, UEN_EN), (0, 0)):
                self.probe(f"hpmn={h} {desc} EL{el} pmuserenr={u}",
                           "TPM traps EL0/EL1 PMU accesses to EL2, TPMCR only PMCR_EL0; "
                           "PMUSERENR traps to EL1 first at EL0",
                           "spec §8.4, §8.1 (ARM §D24.3.17)")
                self.reset(h, mdcr_extra=extra, userenr=u)
                self.r(el, "PMCR_EL0", PMCR_N_MASK)
                self.w(el, "PMCR_EL0", 0)
                self.r(el, "PMCNTENSET_EL0")
                self.w(el, "PMCNTENCLR_EL0", 0)
                self.r(el, "PMCEID0_EL0", mask=0)
                self.w(el, "PMSWINC_EL0", 0)
                self.r(el, "PMSELR_EL0")
                self.r(el, "PMCCFILTR_EL0")
                self.r(el, "PMEVTYPER0_EL0")
                self.r(el, "PMUSERENR_EL0")
                self.r(el, "PMOVSSET_EL0")
                self.w(2, "MDCR_EL2", h)


def build_catalogue(p: Params) -> list[Probe]:
    """The probes of an image built with ``p`` (deterministic)."""
    return _Builder(p).build()


def outcomes(probes: list[Probe]) -> list[Outcome]:
    """Every recorded op, numbered in the order the image executes them."""
    out: list[Outcome] = []
    for pr in probes:
        for k, op in enumerate(pr.ops):
            if op.recorded:
                out.append(Outcome(len(out), pr, k, op))
    return out


def digest(p: Params, probes: list[Probe]) -> str:
    """A short hash of the format version, the parameters and every op: the BEGIN line
    carries it so a log is checked against the catalogue that produced it."""
    h = hashlib.sha256(f"{FORMAT_VERSION} {p.text()}".encode())
    for pr in probes:
        h.update(pr.name.encode())
        for op in pr.ops:
            h.update(f"{op.kind}{op.el}{op.reg}{op.value:x}{op.mask:x}{op.nz}".encode())
    return h.hexdigest()[:12]
