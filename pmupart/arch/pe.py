"""One processing element's PMUv3, with EL2 implemented: the architecture core of pmupart.

Everything here follows the Arm ARM DDI0487 M.a.a (chapters D13 and D14, the PMU register
descriptions in D24.5, the shared PMU pseudocode in J1.1/J1.3), cited as "ARM §X"; "spec §N"
names the section of the project's semantics notes that summarises the rule (the notes are
not in the repository: docs/sources.md gives each section's Arm ARM sources).  The PE is
in Non-secure state; EL3 is not implemented (so NSK/NSU/M/SH are RES0 and MDCR_EL3 never
intervenes); ``EL2Enabled()`` is TRUE whenever EL2 is implemented.

The public surface is DESIGN.md's contract::

    pe = PE.from_core("cortex-a76")
    pe.el = 1
    pe.write("PMEVTYPER0_EL0", 0x08)          # Access(outcome=Outcome.OK, value=None)
    pe.count({"INST_RETIRED": 10**9})         # arithmetic, not a loop
    pe.read("PMEVCNTR0_EL0").value
    pe.pmuirq

Counting is arithmetic (spec §6; ARM §J1.1.1.47-48): a block passed to :meth:`PE.count` adds each
event's count to every counter that counts it, with the number of overflows (and so of CHAIN events)
computed from carries, never by iteration.  Which counters count at each EL is cached and the cache
is dropped only by writes to the registers that decide it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum

from pmupart.arch.cores import Core, get_core
from pmupart.arch.events import BASE_EVENTS, GENERATED_EVENTS, Event, event_number
from pmupart.arch.features import PMUVer
from pmupart.arch.policy import (
    ChainFilter,
    ChainStraddle,
    FreezeChain,
    NoFgtCounterAccess,
    NoFgtUnimplementedAccess,
    Policies,
    ReservedHpmn,
    UnknownReadback,
)
from pmupart.arch.sysreg import BY_NAME, REGISTERS, RegDef, check_value, lookup

M32 = (1 << 32) - 1
M64 = (1 << 64) - 1
CYCLE_IDX = 31  #: pseudo-index of PMCCNTR_EL0 (bit C), spec §1; ARM §J1.3.1.89, §J1.3.1.105
ICNTR_IDX = 32  #: pseudo-index of PMICNTR_EL0 (bit F0), spec §1; ARM §J1.3.1.89, §J1.3.1.105
C_BIT = 1 << CYCLE_IDX
F0_BIT = 1 << ICNTR_IDX
_EV_CPU_CYCLES = int(Event.CPU_CYCLES)
_EV_INST_RETIRED = int(Event.INST_RETIRED)
_EV_CHAIN = int(Event.CHAIN)
_EV_SW_INCR = int(Event.SW_INCR)
#: Counting plans memoised per PE (``PE._build_plan``) before the memo starts again: the
#: emulated vPMU under ``perf record`` walks some 5,000 register states in 0.25 s (its
#: backing events land on varying counters); 512 made it recompute three plans in four.
_PLAN_MEMO_MAX = 8192

# Register field positions used on hot paths (the table in sysreg.txt is the source;
# these are checked against it at import time below).
_PMCR_E, _PMCR_P, _PMCR_C, _PMCR_D, _PMCR_X = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4
_PMCR_DP, _PMCR_LC, _PMCR_LP, _PMCR_FZO, _PMCR_FZS = 1 << 5, 1 << 6, 1 << 7, 1 << 9, 1 << 32
_MDCR_TPMCR, _MDCR_TPM, _MDCR_HPME, _MDCR_HPMD = 1 << 5, 1 << 6, 1 << 7, 1 << 17
_MDCR_HCCD, _MDCR_HLP, _MDCR_HPMFZO = 1 << 23, 1 << 26, 1 << 29
_HCR_TGE, _HCR_E2H = 1 << 27, 1 << 34
_FILT_P, _FILT_U, _FILT_NSH = 1 << 31, 1 << 30, 1 << 27
_USERENR = {"EN": 1 << 0, "SW": 1 << 1, "CR": 1 << 2, "ER": 1 << 3, "UEN": 1 << 4,
            "IR": 1 << 5, "TID": 1 << 6}


def _check_positions() -> None:
    pairs = [("PMCR_EL0", "E", _PMCR_E), ("PMCR_EL0", "DP", _PMCR_DP),
             ("PMCR_EL0", "LP", _PMCR_LP), ("PMCR_EL0", "FZO", _PMCR_FZO),
             ("PMCR_EL0", "LC", _PMCR_LC), ("PMCR_EL0", "D", _PMCR_D),
             ("MDCR_EL2", "HPME", _MDCR_HPME), ("MDCR_EL2", "HPMD", _MDCR_HPMD),
             ("MDCR_EL2", "HCCD", _MDCR_HCCD), ("MDCR_EL2", "HLP", _MDCR_HLP),
             ("MDCR_EL2", "HPMFZO", _MDCR_HPMFZO), ("MDCR_EL2", "TPM", _MDCR_TPM),
             ("MDCR_EL2", "TPMCR", _MDCR_TPMCR), ("HCR_EL2", "TGE", _HCR_TGE),
             ("HCR_EL2", "E2H", _HCR_E2H), ("PMEVTYPER0_EL0", "NSH", _FILT_NSH),
             ("PMEVTYPER0_EL0", "P", _FILT_P), ("PMEVTYPER0_EL0", "U", _FILT_U)]
    for reg, fld, bit in pairs:
        assert BY_NAME[reg].field(fld).mask == bit, (reg, fld)
    for fld, bit in _USERENR.items():
        assert BY_NAME["PMUSERENR_EL0"].field(fld).mask == bit, fld


_check_positions()

#: Exact architected mnemonics -> numbers, for the hot path of ``PE.count`` (other spellings
#: go through ``event_number``).
_EVENT_BY_NAME: dict[str, int] = {e.name: int(e) for e in Event}


def _event_num(ev: str | int) -> int:
    """A block's event key as a number: an architected mnemonic at once, else
    ``event_number`` (other spellings, and the error for an unknown name)."""
    num = _EVENT_BY_NAME.get(ev)  # type: ignore[arg-type]
    return num if num is not None else event_number(ev)


def _no_count(ev: int, n: object) -> bool:
    """A block's count that is not a positive int: True for 0 (nothing to add), else the
    error (a bool, a non-int, a negative count)."""
    if isinstance(n, int) and not isinstance(n, bool) and n == 0:
        return True
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"count for event {ev:#x} must be an int, not {type(n).__name__}")
    raise ValueError(f"count for event {ev:#x} must be >= 0, not {n}")


class Outcome(IntEnum):
    """What an MRS/MSR did (DESIGN.md decision 2)."""

    OK = 0
    UNDEFINED = 1
    TRAP_EL1 = 2
    TRAP_EL2 = 3


@dataclass(frozen=True, slots=True)
class Access:
    """The architectural result of one register access: outcome, and the value of a read."""

    outcome: Outcome
    value: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


_UNDEF = Access(Outcome.UNDEFINED)
_TRAP_EL1 = Access(Outcome.TRAP_EL1)
_TRAP_EL2 = Access(Outcome.TRAP_EL2)
_OK_WRITE = Access(Outcome.OK)


@dataclass(frozen=True, slots=True)
class PMUSnapshot:
    """Every piece of PMU state, as EL2 would see it (for checkers and tests)."""

    evcntr: tuple[int, ...]
    evtyper: tuple[int, ...]
    pmccntr: int
    pmccfiltr: int
    pmicntr: int
    pmicfiltr: int
    pmcr: int
    pmcnten: int
    pmovs: int
    pminten: int
    pmselr: int
    pmuserenr: int
    pmuacr: int
    mdcr_el2: int
    pmuirq: bool


class _Plan:
    """Which counters count at one EL, computed from the registers (spec §5; ARM §J1.3.1.93)."""

    __slots__ = (
        "by_event",
        "chain_odd",
        "chain_ok",
        "counting",
        "cycle",
        "cycle64",
        "cycle_frz",
        "fz_r1",
        "fz_r2",
        "icnt",
        "icnt_frz",
        "incs",
        "lp_mask",
        "r1_frz",
        "r2_frz",
        "sw_incr",
    )

    def __init__(self) -> None:
        self.by_event: dict[int, tuple[int, ...]] = {}
        # Per event: one precomputed step per counter counting it (the hot path of count()):
        # (index, bit, overflow mask, overflow shift, counter mask, CHAIN target or 0).
        self.incs: dict[int, tuple[tuple[int, int, int, int, int, int], ...]] = {}
        self.counting: int = 0  # bitmask of event counters counting some retirable event
        self.sw_incr: tuple[int, ...] = ()  # counting SW_INCR (spec §6; ARM §J1.3.1.114)
        self.chain_odd: int = 0  # bitmask of odd counters counting CHAIN
        self.chain_ok: int = 0  # bitmask of even counters whose overflow may chain onwards
        self.lp_mask: int = 0  # counters overflowing at 64 bits
        self.cycle: bool = False
        self.cycle64: bool = False  # PMCCNTR counts every cycle and overflows at 64 bits
        self.icnt: bool = False
        self.fz_r1: int = 0  # PMOVS bits whose being set freezes the first range (0: FZO off)
        self.fz_r2: int = 0  # ... the second range (0: HPMFZO off)
        self.r1_frz: int = 0  # counters frozen when the first range freezes
        self.r2_frz: int = 0
        self.cycle_frz: bool = False  # PMCCNTR stops on first-range freeze (DP = 1)
        self.icnt_frz: bool = False



_EVEN_BITS = sum(1 << i for i in range(0, 32, 2))  #: counters 0, 2, 4, ... 30
#: The plan of an EL where nothing counts (``PE._quiet``), shared: plans are never modified.
_QUIET_PLAN = _Plan()

_FGT_MASKS: dict[tuple[str, str], int] = {}
_FEATURE_MASKS: dict[tuple[str, frozenset[str]], int] = {}


def _feature_mask(reg: str, features: frozenset[str]) -> int:
    """``RegDef.feature_mask`` of ``reg`` for a PE's (immutable) feature set, cached."""
    key = (reg, features)
    m = _FEATURE_MASKS.get(key)
    if m is None:
        m = _FEATURE_MASKS[key] = BY_NAME[reg].feature_mask(features)
    return m


def _fgt_mask(trap_reg: str, field_name: str) -> int:
    """The bit(s) of fine-grained trap register ``trap_reg`` named ``field_name`` (from the
    register table; cached, the table is immutable)."""
    key = (trap_reg, field_name)
    m = _FGT_MASKS.get(key)
    if m is None:
        m = 0
        for f in BY_NAME[trap_reg].fields:
            if f.kind == "field" and f.name == field_name:
                m = f.mask
                break
        _FGT_MASKS[key] = m
    return m

class PE:
    """One PE's PMUv3 (spec §1-§9), EL2 implemented, EL3 not, Non-secure.

    Feature flags combine freely; a combination no shipped core has is a what-if and
    draws a warning, not a refusal (DESIGN.md).  ``PE.from_core`` gives real combinations.
    """

    def __init__(
        self,
        num_counters: int = 6,
        pmuver: PMUVer | str | int = PMUVer.V3P1,
        *,
        fgt: bool = False,
        fgt2: bool = False,
        hpmn0: bool = False,
        icntr: bool = False,
        aarch32: bool = False,
        el2: bool = True,
        vhe: bool = True,
        mtpmu: bool = False,
        spe1p2: bool = False,
        export_bus: bool = True,
        debugv8p2: bool | None = None,
        events: frozenset[int] | None = None,
        implementer: int = 0x41,
        slots: int = 0,
        policies: Policies | None = None,
        core: Core | None = None,
    ) -> None:
        if isinstance(num_counters, bool) or not isinstance(num_counters, int):
            raise TypeError(f"num_counters must be an int, not {type(num_counters).__name__}")
        if not 0 <= num_counters <= 31:
            raise ValueError("num_counters (PMCR_EL0.N) must be 0..31 (ARM §D13.1), "
                             f"not {num_counters}")
        self.pmuver = PMUVer.parse(pmuver)
        self.num_counters = num_counters
        self.core = core
        self.policies = policies or Policies()
        #: write_el2's outcome per register name: (register, its writer if the write is
        #: plain, else None; its bitmap if it is a plain SET/CLR register, see _BITMAPS)
        self._el2_write_ok: dict[str, tuple[RegDef, Callable[[PE, int], None] | None,
                                            tuple[str, bool, bool] | None]] = {}
        #: read_el2's reader per register name, for registers whose EL2 read is plain
        self._el2_read_fn: dict[str, Callable[[PE, int], int]] = {}
        self._plan_memo: dict[tuple[object, ...], _Plan] = {}
        feats = set(self.pmuver.features)
        # export_bus: the PE has a PMU event export bus, so PMCR_EL0.X is RW; without one X is
        # RAZ/WI (ARM §D24.5.8).  debugv8p2: FEAT_Debugv8p2 (Armv8.2, mandatory from v8.4);
        # by default every PMUv3p1+ PE, as every such core of the catalogue is Armv8.2 or
        # later.  FEAT_EL2 gates the NSH filter bits (ARM §D24.5.12: RES0 without EL2).
        if debugv8p2 is None:
            debugv8p2 = self.pmuver >= PMUVer.V3P1
        self.debugv8p2 = debugv8p2
        for flag, feat in ((fgt, "FEAT_FGT"), (fgt2, "FEAT_FGT2"), (hpmn0, "FEAT_HPMN0"),
                           (icntr, "FEAT_PMUv3_ICNTR"), (aarch32, "FEAT_AA32"),
                           (vhe, "FEAT_VHE"), (mtpmu, "FEAT_MTPMU"), (spe1p2, "FEAT_SPEv1p2"),
                           (export_bus, "FEAT_PMU_EXPORT"), (debugv8p2, "FEAT_Debugv8p2"),
                           (el2, "FEAT_EL2")):
            if flag:
                feats.add(feat)
        self.features: frozenset[str] = frozenset(feats)
        self._evtyper_wmask = _feature_mask("PMEVTYPER0_EL0", self.features)
        self.has_el2 = el2
        self.fgt, self.fgt2, self.hpmn0, self.icntr, self.aarch32 = fgt, fgt2, hpmn0, icntr, aarch32
        self._p1 = self.pmuver >= PMUVer.V3P1
        self._p5 = self.pmuver >= PMUVer.V3P5
        self._cmask = M64 if self._p5 else M32  # see _cnt_mask
        self._p7 = self.pmuver >= PMUVer.V3P7
        self._p9 = self.pmuver >= PMUVer.V3P9
        self.events: frozenset[int] = frozenset(events if events is not None else BASE_EVENTS)
        self.implementer = implementer
        self.slots = slots
        self._warn_what_if()
        #: called with the mask of PMOVS bits that a block (or PMSWINC) newly set
        self.overflow_listener: Callable[[int], None] | None = None
        self._el = 1
        self._plans: list[_Plan | None] = [None, None, None]
        self.reset()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_core(cls, name: str | Core, *, policies: Policies | None = None) -> PE:
        """A PE with the catalogue's feature combination for ``name`` (``cortex-a76``)."""
        c = name if isinstance(name, Core) else get_core(name)
        return cls(c.num_counters, c.pmuver, fgt=c.fgt, fgt2=c.fgt2, hpmn0=c.hpmn0,
                   icntr=c.icntr, aarch32=c.aarch32, events=c.events, export_bus=c.export_bus,
                   implementer=c.implementer, slots=c.slots, policies=policies, core=c)

    def _warn_what_if(self) -> None:
        notes = []
        if self.num_counters == 0 and self.has_el2 and not self.hpmn0:
            notes.append("0 event counters with EL2 needs FEAT_HPMN0 (ARM §D13.1)")
        if self.hpmn0 and not self.fgt:
            notes.append("FEAT_HPMN0 without FEAT_FGT (no shipped core; cores.md 4.1)")
        if self.fgt2 and not self.fgt:
            notes.append("FEAT_FGT2 without FEAT_FGT")
        if self.icntr and not self._p9:
            notes.append("FEAT_PMUv3_ICNTR before PMUv3p9")
        if notes:
            warnings.warn("what-if PE: " + "; ".join(notes), stacklevel=3)

    def reset(self) -> None:
        """Warm reset, then the state Linux's ``__init_el2_debug``/``__init_el2_fgt`` leave (spec §2
        "Linux boot"; arch/arm64/include/asm/el2_setup.h): MDCR_EL2.HPMN = N and no PMU traps; FGT2
        n-bits for PMICNTR/PMICFILTR/PMUACR set (no trap).  UNKNOWN resets use
        ``policies.unknown_reset``.
        """
        u = self.policies.unknown_reset
        n = self.num_counters
        self._evcnt = [u & self._cnt_mask()] * n
        self._evtyper = [0] * n
        self._pass = [(1 << n) - 1, (1 << n) - 1, 0]  # PMEVTYPER = 0 passes EL0/EL1, not EL2
        self._ccnt = u
        self._ccd_residue = 0
        self._ccfiltr = 0
        self._icnt = u
        self._icfiltr = _ICF_EVTCOUNT  # evtCount reads 0x0008, INST_RETIRED (ARM §D24.5.14)
        self._pmcr = 0  # E resets to 0 (ARM §D24.5.8); others UNKNOWN -> 0
        if not self.aarch32:
            self._pmcr |= _PMCR_LC  # LC is RES1 without AArch32 (spec §3; ARM §D24.5.8)
        self._cnten = self._ovs = self._inten = 0
        self._pmselr = 0
        self._pmuserenr = 0
        self._pmuacr = 0
        mtpme = BY_NAME["MDCR_EL2"].field("MTPME")
        self._mdcr = (n & 0x1F) | (mtpme.mask if "FEAT_MTPMU" in self.features else 0)
        self._hcr = _HCR_E2H if "FEAT_VHE" in self.features else 0
        self._hdfgrtr = self._hdfgwtr = 0
        # Linux sets the FGT2 "no trap" bits nPMICNTR, nPMICFILTR and nPMUACR in both
        # registers on PMUv3p9 (spec §8.6, LX-EL2 __init_el2_fgt2; the kernel's booting.rst
        # asks the same of firmware).  It leaves nPMZR_EL0 at 0, so EL1 writes of PMZR_EL0
        # trap to EL2 until the hypervisor says otherwise.
        fgt2_nbits = 0b11100 if (self.icntr or self._p9) else 0
        self._hdfgrtr2 = self._hdfgwtr2 = fgt2_nbits
        self._recompute_hpmn()

    # ------------------------------------------------------------------ basic properties
    @property
    def el(self) -> int:
        """The current exception level: 0, 1 or 2."""
        return self._el

    @el.setter
    def el(self, value: int) -> None:
        if value.__class__ is int and (0 <= value <= 1 or (value == 2 and self.has_el2)):
            self._el = value  # the common case, checked in one line
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"PE.el must be an int 0..2, not {type(value).__name__}")
        top = 2 if self.has_el2 else 1
        if not 0 <= value <= top:
            raise ValueError(f"PE.el must be an exception level 0..{top} "
                             f"(EL3 is not implemented{'' if self.has_el2 else ', nor EL2'}), "
                             f"not {value}")
        self._el = value

    @contextmanager
    def at_el(self, el: int) -> Iterator[PE]:
        """Run a block at another EL and restore the current one (``with pe.at_el(2): ...``)."""
        old = self._el
        self.el = el
        try:
            yield self
        finally:
            self._el = old

    @property
    def hpmn(self) -> int:
        """Effective MDCR_EL2.HPMN (spec §1 EffectiveHPMN, ARM §J1.3.1.95)."""
        return self._hpmn

    @property
    def in_host(self) -> bool:
        """HCR_EL2.{E2H,TGE} == {1,1}: EL0 is the VHE host's (ELIsInHost, spec §8.1;
        ARM §D24.5.10 accessor)."""
        return (self._hcr & (_HCR_E2H | _HCR_TGE)) == (_HCR_E2H | _HCR_TGE)

    def accessible(self, el: int | None = None) -> int:
        """GetNumEventCountersAccessible() at ``el`` (spec §1; ARM §J1.3.1.96)."""
        e = self._el if el is None else el
        return self._hpmn if (e <= 1 and self.has_el2) else self.num_counters

    def _cnt_mask(self) -> int:
        # Event counters are 32-bit before PMUv3p5, 64-bit from it (spec §6; ARM §J1.1.1.47).
        return M64 if self._p5 else M32

    def _recompute_hpmn(self) -> None:
        """EffectiveHPMN (spec §1, §9; ARM §J1.3.1.95).  CONSTRAINED UNPREDICTABLE values go to the
        ``reserved_hpmn`` policy."""
        n = self.num_counters
        h = self._mdcr & 0x1F
        if not self.has_el2:
            eff = n
        elif h > n or (h == 0 and not self.hpmn0):
            pol = self.policies.reserved_hpmn
            if pol is ReservedHpmn.ALL_RESERVED:
                eff = 0
            elif pol is ReservedHpmn.AS_N:
                eff = n
            else:  # CLAMP: the nearest legal value
                eff = n if h > n else min(1, n)
        else:
            eff = h
        self._hpmn = eff
        self._plans = [None, None, None]
        self._config_changed()

    def _config_changed(self) -> None:
        """Drop what is cached from the access configuration: the outcome of each access
        (:meth:`_check`) and GetPMUReadMask()/GetPMUWriteMask() per EL.  They read MDCR_EL2
        (HPMN, TPM, TPMCR), HCR_EL2 (E2H, TGE), PMUSERENR_EL0, PMUACR_EL1 and the fine-grained
        trap registers, whose writers call this when the value changes; everything else they
        read is fixed for the PE (features, policies)."""
        #: per EL * 2 + is_write: register name -> (fault, flags) of ``_check_regs``
        self._chk: list[dict[str, tuple[Access | None, int]]] = [{}, {}, {}, {}, {}, {}]
        self._wmasks: list[int | None] = [None, None, None]
        self._rmasks: list[int | None] = [None, None, None]

    @property
    def hpmn_constrained_unpredictable(self) -> bool:
        """True when MDCR_EL2.HPMN holds a CONSTRAINED UNPREDICTABLE value (spec §9;
        ARM §K1.2.6.3, §D24.3.17)."""
        h = self._mdcr & 0x1F
        return self.has_el2 and (h > self.num_counters or (h == 0 and not self.hpmn0))

    def _access_mask(self, el: int) -> int:
        """GetPMUAccessMask() (spec §8.2; ARM §J1.3.1.98): event counters below the accessible
        count, C, and F0 except at EL0 without PMUSERENR.UEN; at EL0 with UEN = 1 (PMUv3p9)
        ANDed with PMUACR_EL1."""
        m = ((1 << self.accessible(el)) - 1) | C_BIT
        uen = el == 0 and self._p9 and bool(self._pmuserenr & _USERENR["UEN"])
        if self.icntr and (el != 0 or uen):
            m |= F0_BIT
        if uen:
            m &= self._pmuacr
        return m

    def _icntr_fgt2_hides(self, el: int, field_mask: int, write: bool) -> bool:
        """F0 controls are RAZ (reads) or ignored (writes) at EL0/EL1 when the matching FGT2
        n-bit would trap (0 = trap), unless EL0 is the VHE host's (ARM §J1.3.1.100/101)."""
        if not (self.icntr and self.fgt2 and el <= 1 and self.has_el2):
            return False
        if el == 0 and self.in_host:
            return False
        return not ((self._hdfgwtr2 if write else self._hdfgrtr2) & field_mask)

    def _rmask_at(self, el: int) -> int:
        """:meth:`_read_mask`, cached until the configuration changes."""
        m = self._rmasks[el]
        if m is None:
            m = self._rmasks[el] = self._read_mask(el)
        return m

    def _wmask_at(self, el: int) -> int:
        """:meth:`_write_mask` (not PMZR's), cached until the configuration changes."""
        m = self._wmasks[el]
        if m is None:
            m = self._wmasks[el] = self._write_mask(el)
        return m

    def _read_mask(self, el: int) -> int:
        """GetPMUReadMask() (ARM §J1.3.1.100): reads of PMCNTEN*/PMINTEN*/PMOVS* (spec §8.2,
        §8.6 nPMICFILTR)."""
        m = self._access_mask(el)
        if m & F0_BIT and self._icntr_fgt2_hides(el, 1 << 3, False):
            m &= ~F0_BIT
        return m

    def _write_mask(self, el: int, write_counter: bool = False) -> int:
        """GetPMUWriteMask() (ARM §J1.3.1.101): writes of PMCNTEN*/PMINTEN*/PMOVS* and PMZR
        (``write_counter``).  At EL0 with UEN = 1, ER/CR/IR = 1 make the event counters /
        cycle counter / instruction counter read-only, their control bits included
        (spec §8.3; ARM §D24.5.26); F0 follows FGT2 nPMICNTR (PMZR) or nPMICFILTR (the others,
        spec §8.6; ARM §D24.2.66, §D24.2.68)."""
        m = self._access_mask(el)
        if el == 0 and self._p9 and (self._pmuserenr & _USERENR["UEN"]):
            u = self._pmuserenr
            if u & _USERENR["IR"]:
                m &= ~F0_BIT
            if u & _USERENR["CR"]:
                m &= ~C_BIT
            if u & _USERENR["ER"]:
                m &= ~((1 << 31) - 1)
        if m & F0_BIT and self._icntr_fgt2_hides(el, 1 << (2 if write_counter else 3), True):
            m &= ~F0_BIT
        return m

    # ------------------------------------------------------------------ counting plan
    def _range1(self, idx: int) -> bool:
        """GetPMUCounterRange: the cycle/instruction counters are always first range
        (spec §1, ARM §J1.3.1.99)."""
        return idx >= CYCLE_IDX or idx < self._hpmn

    def _filtered(self, filt: int, el: int) -> bool:
        """The PMEVTYPER/PMCCFILTR/PMICFILTR filter table, Non-secure column (spec §5.6;
        ARM §J1.3.1.93).
        NSK/NSU are RES0 without EL3, so EL0 counts iff U == 0 and EL1 iff P == 0."""
        if el == 0:
            return bool(filt & _FILT_U)
        if el == 1:
            return bool(filt & _FILT_P)
        return not (filt & _FILT_NSH)

    def _build_plan(self, el: int) -> _Plan:
        """The plan for ``el`` (:meth:`_compute_plan`), memoised on every register it reads:
        a perf driver that disables and re-enables its counters around each interrupt walks
        the same few register states again and again.  Plans are never modified once
        built.  Where no counter can count at ``el`` (:meth:`_quiet`: the host's EL2 work on
        an emulated vPMU, whose events exclude EL2) the shared empty plan serves."""
        if self._quiet(el):
            return _QUIET_PLAN
        key = (el, self._pmcr, self._mdcr, self._cnten, self._hpmn, tuple(self._evtyper),
               self._ccfiltr, self._icfiltr, id(self.policies))
        p = self._plan_memo.get(key)
        if p is None:
            if len(self._plan_memo) >= _PLAN_MEMO_MAX:
                self._plan_memo.clear()
            p = self._plan_memo[key] = self._compute_plan(el)
        return p

    def _quiet(self, el: int) -> bool:
        """True when no counter can count at ``el``, from the terms of CountPMUEvents() that
        need no per-counter walk (spec §5; ARM §J1.3.1.93): an event counter counts only if
        its range is enabled (PMCR.E for the first range, MDCR_EL2.HPME for the second), its
        PMCNTEN bit is set, HPMD does not prohibit it (first range at EL2) and its filter
        passes (``_pass``); PMCCNTR and PMICNTR only with PMCR.E, their PMCNTEN bit and their
        filter.  Conservative: False whenever a counter might count."""
        pmcr = self._pmcr
        cnten = self._cnten
        e1 = pmcr & _PMCR_E
        r1 = (1 << self._hpmn) - 1
        en = r1 if e1 else 0
        if self._mdcr & _MDCR_HPME:
            en |= ((1 << self.num_counters) - 1) & ~r1
        if el == 2 and self._p1 and self._mdcr & _MDCR_HPMD \
                and not (self.policies.external_debug_enabled and not self.debugv8p2):
            en &= ~r1  # HPMD (ARM §D13.5.4 RMMZLZ), as in _compute_plan
        if cnten & en & self._pass[el]:
            return False
        if e1 and cnten & C_BIT and not self._filtered(self._ccfiltr, el):
            return False
        return not (self.icntr and e1 and cnten & F0_BIT
                    and not self._filtered(self._icfiltr, el))

    def _compute_plan(self, el: int) -> _Plan:
        """CountPMUEvents() for every counter at ``el`` minus the freeze term, which depends
        on PMOVS and is applied per block (spec §5; ARM §J1.3.1.93)."""
        p = _Plan()
        pmcr, mdcr, cnten = self._pmcr, self._mdcr, self._cnten
        hpmn = self._hpmn
        e1 = bool(pmcr & _PMCR_E)
        e2 = bool(mdcr & _MDCR_HPME)
        # HPMD prohibits first-range counting at EL2 (PMUv3p1; ARM §D13.5.4 RMMZLZ); enabled
        # external non-invasive debug lifts the prohibition only without FEAT_Debugv8p2
        # (ARM §J1.3.1.93: "if prohibited && !IsFeatureImplemented(FEAT_Debugv8p2)").
        hpmd = el == 2 and self._p1 and bool(mdcr & _MDCR_HPMD) \
            and not (self.policies.external_debug_enabled and not self.debugv8p2)
        by_event: dict[int, list[int]] = {}
        evmask = 0xFFFF if self._p1 else 0x3FF
        n = self.num_counters
        r1_bits = (1 << hpmn) - 1
        r2_bits = ((1 << n) - 1) & ~r1_bits
        # A counter counts if its range is enabled (PMCR.E / MDCR_EL2.HPME), its PMCNTEN bit
        # is set, HPMD does not prohibit it (first range) and its filter lets it count here
        # (_pass: P/U/NSH, spec §5.6; the PE may ignore the filter of a counter counting CHAIN,
        # spec §6, ARM §D14.3: policy chain_filter, kept in _pass too).
        live = cnten & ((r1_bits if e1 and not hpmd else 0) | (r2_bits if e2 else 0)) \
            & self._pass[el]
        while live:
            low = live & -live
            live ^= low
            i = low.bit_length() - 1
            ev = self._evtyper[i] & evmask
            if ev not in self.events:
                # An event the PE does not implement counts nothing, CHAIN included (spec
                # pmuv3-semantics §6; ARM §D24.5.12; kernel-code-deltas §5.1).
                continue
            if ev == _EV_CHAIN:
                # Only odd counters count CHAIN (spec §6; ARM §J1.1.1.47); CHAIN is generated, not
                # retired.
                if i & 1:
                    p.chain_odd |= 1 << i
                continue
            by_event.setdefault(ev, []).append(i)
        # SW_INCR is generated by PMSWINC_EL0 writes only (spec §6; ARM §J1.3.1.114): its counters
        # live in sw_incr, so that count() rejects a retired SW_INCR whether or not a counter has
        # it.
        p.sw_incr = tuple(by_event.pop(_EV_SW_INCR, ()))
        p.by_event = {k: tuple(v) for k, v in by_event.items()}
        # Overflow width per counter: LP for the first range, HLP for the second (spec §6;
        # ARM §J1.1.1.47).
        if self._p5:
            p.lp_mask = (r1_bits if pmcr & _PMCR_LP else 0) | (r2_bits if mdcr & _MDCR_HLP else 0)
        # CHAIN from even counter i to i+1 (spec §6; ARM §J1.1.1.47, §D14.3): only with i+1 < N
        # (chain_odd holds counters below N only); straddling HPMN is CONSTRAINED UNPREDICTABLE
        # (policy chain_straddle).
        p.chain_ok = (p.chain_odd >> 1) & _EVEN_BITS
        if hpmn & 1 and self.policies.chain_straddle is ChainStraddle.NO_COUNT:
            p.chain_ok &= ~(1 << (hpmn - 1))
        # Freeze on overflow (PMUv3p7; spec §5.4, ARM §J1.3.1.118): which PMOVS bits freeze
        # which counters.  The cycle counter's flag never freezes anything.
        if self._p7 and (pmcr & _PMCR_FZO):
            p.fz_r1 = r1_bits | (F0_BIT if self.icntr else 0)
            p.r1_frz = r1_bits
        if self._p7 and (mdcr & _MDCR_HPMFZO):
            p.fz_r2 = r2_bits
            p.r2_frz = r2_bits
        # The cycle counter (spec §5.5; ARM §J1.3.1.93, §D13.5.4): first-range enable; HPMD/freeze
        # stop it only when PMCR.DP = 1; HCCD (PMUv3p5) stops it at EL2 whatever DP is.
        dp = bool(pmcr & _PMCR_DP)
        cyc = e1 and bool(cnten & C_BIT) and not self._filtered(self._ccfiltr, el)
        if cyc and hpmd and dp:
            cyc = False
        if cyc and el == 2 and self._p5 and (mdcr & _MDCR_HCCD):
            cyc = False
        p.cycle = cyc
        # No AArch32, or LC = 1: no divider and 64-bit overflow (spec §6 "Cycle counter";
        # ARM §J1.1.1.46).
        p.cycle64 = not self.aarch32 or bool(pmcr & _PMCR_LC)
        p.cycle_frz = dp and bool(p.fz_r1)
        # The instruction counter (FEAT_PMUv3_ICNTR): first range; HPMD prohibits it at EL2.
        if self.icntr:
            p.icnt = e1 and bool(cnten & F0_BIT) and not hpmd \
                and not self._filtered(self._icfiltr, el)
            p.icnt_frz = bool(p.fz_r1)
        # The hot-path steps (spec §6; ARM §J1.1.1.47): a counter overflows on the carry out of bit
        # 31 (LP/HLP = 0, or any counter before PMUv3p5) or out of bit 63 (LP/HLP = 1); it holds 32
        # bits before PMUv3p5 and 64 from it; an overflowing even counter feeds CHAIN to i + 1 where
        # chain_ok allows it and its overflow width is 32 bits.
        cmask = M64 if self._p5 else M32
        for ev, ctrs in p.by_event.items():
            steps = []
            for i in ctrs:
                wide = (p.lp_mask >> i) & 1
                ovm, sh = (M64, 64) if wide else (M32, 32)
                chain = i + 1 if ((p.chain_ok >> i) & 1 and not wide) else 0
                steps.append((i, 1 << i, ovm, sh, cmask, chain))
                p.counting |= 1 << i
            p.incs[ev] = tuple(steps)
        return p

    def _plan(self) -> _Plan:
        p = self._plans[self._el]
        if p is None:
            p = self._plans[self._el] = self._build_plan(self._el)
        return p

    def _invalidate(self) -> None:
        self._plans = [None, None, None]

    def _cnten_changed(self, changed: int) -> None:
        """PMCNTEN bits ``changed``: drop the plans that read them.  A plan reads PMCNTEN
        only through the counters whose filter passes at its EL (``_pass``; _compute_plan's
        ``live``) and the C and F0 bits, so the others stay (a guest's counters, which KVM
        keeps from counting at EL2, leave the host's EL2 plan alone)."""
        if changed & (C_BIT | F0_BIT):
            self._plans = [None, None, None]
            return
        plans, ps = self._plans, self._pass
        if changed & ps[0]:
            plans[0] = None
        if changed & ps[1]:
            plans[1] = None
        if changed & ps[2]:
            plans[2] = None

    # ------------------------------------------------------------------ counting
    def count(self, events: Mapping[str | int, int]) -> None:
        """Retire one block of work at the current EL: ``{event: how many}``.

        Costs the same whatever the counts: overflows and CHAIN events are computed from
        carries (spec §6; ARM §J1.1.1.47/48).  SW_INCR and CHAIN are generated by the PE
        (PMSWINC writes, even-counter overflow) and cannot be retired.
        """
        plan = self._plans[self._el]
        if plan is None:
            plan = self._plans[self._el] = self._build_plan(self._el)
        if plan is _QUIET_PLAN:  # nothing counts here: only check the block
            self.count_at(self._el, events)
            return
        ovs_before = ovs = self._ovs
        frozen = 0
        cyc_frozen = icnt_frozen = False
        if plan.fz_r1 and (ovs & plan.fz_r1):
            frozen |= plan.r1_frz
            cyc_frozen = plan.cycle_frz
            icnt_frozen = plan.icnt_frz
        if plan.fz_r2 and (ovs & plan.fz_r2):
            frozen |= plan.r2_frz
        incs = plan.incs
        cnt = self._evcnt
        cyc_on = plan.cycle and not cyc_frozen
        cyc64 = plan.cycle64
        icnt_on = plan.icnt and not icnt_frozen
        chains: dict[int, int] | None = None
        for ev, n in events.items():
            if type(ev) is not int:
                ev = _event_num(ev)
            if (type(n) is not int or n <= 0) and _no_count(ev, n):
                continue
            steps = incs.get(ev)
            if steps is not None:
                # spec §6 (ARM §J1.1.1.47): add n, count the carries out of the overflow bit (one
                # PMOVS flag, one CHAIN event per carry), keep the counter's width.
                for i, bit, ovm, sh, cm, chain in steps:
                    if frozen & bit:
                        continue
                    old = cnt[i]
                    wraps = ((old & ovm) + n) >> sh
                    cnt[i] = (old + n) & cm
                    if wraps:
                        ovs |= bit
                        if chain:
                            if chains is None:
                                chains = {}
                            chains[chain] = chains.get(chain, 0) + wraps
            elif ev in GENERATED_EVENTS:
                self._bad_generated(ev)
            if ev == _EV_CPU_CYCLES and cyc_on:
                if cyc64:
                    new = self._ccnt + n
                    self._ccnt = new & M64
                    if new >> 64:
                        ovs |= C_BIT
                else:
                    ovs = self._add_cycles(n, ovs)
            elif ev == _EV_INST_RETIRED and icnt_on:
                new = self._icnt + n
                self._icnt = new & M64
                if new >> 64:
                    ovs |= F0_BIT  # the instruction counter overflows at 64 bits only
        if chains is not None:
            self._ovs = ovs
            ovs = self._apply_chains(chains, frozen)
        if ovs != ovs_before:
            self._ovs = ovs
            if self.overflow_listener is not None:
                self.overflow_listener(ovs & ~ovs_before)

    def _bad_generated(self, ev: int) -> None:
        raise ValueError(f"event {Event(ev).name} is generated by the PE "
                         "(PMSWINC_EL0 writes / even-counter overflow, spec §6) and cannot be "
                         "retired by count()")

    def _add_cycles(self, n: int, ovs: int) -> int:
        """PMCCNTR_EL0 increment (spec §6 "Cycle counter"; ARM §J1.1.1.46): every cycle, or
        every 64th with PMCR.D = 1 and LC = 0; overflow at 32 bits only with AArch32 and
        LC = 0, else at 64."""
        pmcr = self._pmcr
        lc = bool(pmcr & _PMCR_LC)
        if self.aarch32 and (pmcr & _PMCR_D) and not lc:
            total = self._ccd_residue + n
            self._ccd_residue = total & 63
            n = total >> 6
            if not n:
                return ovs
        old = self._ccnt
        new = old + n
        self._ccnt = new & M64
        wraps = (((old & M32) + n) >> 32) if (self.aarch32 and not lc) else (new >> 64)
        return ovs | C_BIT if wraps else ovs

    def _apply_chains(self, chains: dict[int, int], frozen: int) -> int:
        """Add CHAIN events to the odd counters (spec §6; ARM §J1.1.1.47).  Odd counters never chain
        on."""
        ovs = self._ovs
        plan = self._plan()
        pol_ignore = self.policies.freeze_chain is FreezeChain.IGNORES
        for i, k in chains.items():
            if (frozen >> i) & 1:
                continue
            # FreezeChain.IGNORES: the CHAIN event does not observe an overflow that froze the
            # odd counter's range (FZO for the first range, HPMFZO for the second; spec §6,
            # ARM §D13.5.2 ITLHSZ).
            if pol_ignore:
                fz = plan.fz_r1 if i < self._hpmn else plan.fz_r2
                if fz and (ovs & fz):
                    continue
            self._incr(i, k)
            ovs = self._ovs
        return ovs

    def _incr(self, i: int, n: int) -> int:
        """Add ``n`` to event counter ``i`` with overflow (no CHAIN generation); returns the
        number of carries out of its overflow bit."""
        old = self._evcnt[i]
        if self._p5:
            new = old + n
            lp = (self._plan().lp_mask >> i) & 1
            wraps = (new >> 64) if lp else (((old & M32) + n) >> 32)
            self._evcnt[i] = new & M64
        else:
            new = old + n
            wraps = new >> 32
            self._evcnt[i] = new & M32
        if wraps:
            self._ovs |= 1 << i
        return wraps

    def events_to_overflow(self, idx: int) -> int | None:
        """How many more increments counter ``idx`` (0..N-1, or 31 for PMCCNTR) takes to set its
        overflow flag, at the current widths; ``None`` if it does not count here, frozen ones
        included (spec §5.4; ARM §J1.3.1.118).  (Engines use it to cut blocks at the exact overflow
        point.)"""
        plan = self._plans[self._el]
        if plan is None:
            plan = self._plan()
        ovs = self._ovs
        r1_frozen = bool(plan.fz_r1 and (ovs & plan.fz_r1))
        if idx == CYCLE_IDX:
            if not plan.cycle or (r1_frozen and plan.cycle_frz):
                return None
            lc = bool(self._pmcr & _PMCR_LC)
            if self.aarch32 and not lc:
                incs = (1 << 32) - (self._ccnt & M32)
                if self._pmcr & _PMCR_D:
                    # One increment per 64 cycles (spec §6 "Cycle counter"; ARM §J1.1.1.46): the
                    # cycles to the overflow count the residue already accumulated.
                    return incs * 64 - self._ccd_residue
                return incs
            return (1 << 64) - self._ccnt
        if not 0 <= idx < self.num_counters:
            raise ValueError(f"counter index must be 0..{self.num_counters - 1} or 31, not {idx}")
        if not (plan.counting >> idx) & 1:
            return None
        frozen = (plan.r1_frz if r1_frozen else 0) | \
            (plan.r2_frz if plan.fz_r2 and (ovs & plan.fz_r2) else 0)
        if (frozen >> idx) & 1:
            return None
        if self._p5 and (plan.lp_mask >> idx) & 1:
            return (1 << 64) - self._evcnt[idx]
        return (1 << 32) - (self._evcnt[idx] & M32)

    def overflow_steps(self) -> list[tuple[int, int]]:
        """For each counter whose overflow raises the interrupt (PMINTENSET & PMCNTENSET) and
        that counts at the current EL: (its event as PMEVTYPER<n> holds it, ``& 0xFFFF``;
        CPU_CYCLES for PMCCNTR; increments to its overflow flag), in counter order, PMCCNTR
        last: :meth:`events_to_overflow` for all of them at once, where an engine cuts a
        block of work (frozen counters left out: spec §5.4; ARM §J1.3.1.118)."""
        inten = self._inten & self._cnten
        if not inten:
            return []
        plan = self._plans[self._el]
        if plan is None:
            plan = self._plan()
        out: list[tuple[int, int]] = []
        gen = inten & plan.counting
        if gen:
            ovs = self._ovs
            if plan.fz_r1 and (ovs & plan.fz_r1):
                gen &= ~plan.r1_frz
            if plan.fz_r2 and (ovs & plan.fz_r2):
                gen &= ~plan.r2_frz
            wide = plan.lp_mask if self._p5 else 0
            typer, cnt = self._evtyper, self._evcnt
            while gen:
                low = gen & -gen
                i = low.bit_length() - 1
                gen ^= low
                k = (1 << 64) - cnt[i] if wide & low else (1 << 32) - (cnt[i] & M32)
                out.append((typer[i] & 0xFFFF, k))
        if inten & C_BIT:
            kc = self.events_to_overflow(CYCLE_IDX)
            if kc is not None:
                out.append((_EV_CPU_CYCLES, kc))
        return out

    # ------------------------------------------------------------------ interrupt
    @property
    def pmuirq(self) -> bool:
        """The PMU overflow interrupt request level (spec §7; ARM §J1.3.1.91): a set PMOVS bit
        whose PMINTEN bit is set and whose range's global enable is on (PMCR.E for the first
        range and C/F0, MDCR_EL2.HPME for the second)."""
        pending = self._ovs & self._inten
        if not pending:
            return False
        r1 = ((1 << self._hpmn) - 1) | C_BIT | F0_BIT
        n_mask = ((1 << self.num_counters) - 1) | C_BIT | (F0_BIT if self.icntr else 0)
        gate = 0
        if self._pmcr & _PMCR_E:
            gate |= r1
        if self._mdcr & _MDCR_HPME:
            gate |= ~r1
        return bool(pending & gate & n_mask)

    # ------------------------------------------------------------------ register access
    def read(self, name: str) -> Access:
        """MRS: ``Access(outcome, value)``; the value is ``None`` unless the outcome is OK."""
        reg = BY_NAME.get(name) or lookup(name)
        return self._access(reg, False, 0)

    def write(self, name: str, value: int) -> Access:
        """MSR: ``Access(outcome, None)``.  Values wider than 64 bits raise ``ValueError``."""
        reg = BY_NAME.get(name) or lookup(name)
        if value.__class__ is not int or not 0 <= value <= M64:
            check_value(reg, value)
        return self._access(reg, True, value)

    def count_at(self, el: int, events: Mapping[str | int, int]) -> None:
        """:meth:`count` at ``el`` (0..2), then back to the current EL: the host kernel
        retiring its own EL2 work without a context manager per block."""
        plan = self._plans[el]  # plans are built for an EL, whatever the current one
        if plan is None:
            plan = self._plans[el] = self._build_plan(el)
        if plan is _QUIET_PLAN:  # nothing counts there: only what count() refuses, in order
            for ev, n in events.items():
                if type(ev) is not int:
                    ev = _event_num(ev)
                if (type(n) is not int or n <= 0) and _no_count(ev, n):
                    continue
                if ev in GENERATED_EVENTS:
                    self._bad_generated(ev)
            return
        old = self._el
        self._el = el
        try:
            self.count(events)
        finally:
            self._el = old

    def counter_raw(self, idx: int) -> int:
        """The raw value of event counter ``idx``, of PMCCNTR (``idx`` 31) or PMICNTR (32), as
        EL2 reads it (the perf driver's ``armv8pmu_read_counter``), without an access check."""
        if idx == ICNTR_IDX:
            return self._icnt  # PMICNTR_EL0 (FEAT_PMUv3_ICNTR)
        return self._ccnt if idx == CYCLE_IDX else self._evcnt[idx]

    def intr_enabled(self) -> int:
        """PMINTENSET & PMCNTENSET: the counters whose overflow raises the interrupt."""
        return self._inten & self._cnten

    def overflow_raw(self) -> int:
        """PMOVSSET_EL0 as EL2 reads it."""
        return self._ovs

    def evtyper_raw(self, idx: int) -> int:
        """PMEVTYPER<idx>_EL0 as EL2 reads it."""
        return self._evtyper[idx]

    def read_el2(self, name: str) -> int:
        """The hypervisor's (or VHE host kernel's) MRS: performed at EL2, where nothing traps
        (EL3 is not implemented, spec §8.1 step 4); for host and KVM code, which must not
        name a register the PE lacks (``ValueError``).  Fast: no EL switch is observable.
        Registers that are not PMSELR-indexed read plainly at EL2 or never (nothing traps
        from EL2): their reader is looked up once."""
        fn = self._el2_read_fn.get(name)
        if fn is not None:
            return fn(self, 2)
        reg = BY_NAME.get(name) or lookup(name)
        old = self._el
        self._el = 2
        try:
            if reg.counter != "sel":
                fault, flags = self._check(reg, False)
                if fault is None and not flags:
                    fn = self._el2_read_fn[name] = _READ_FN[reg.name]
                    return fn(self, 2)
            acc = self._access(reg, False, 0)
        finally:
            self._el = old
        if acc.value is None:
            raise ValueError(f"{name} is UNDEFINED on this PE (absent feature) even at EL2")
        return acc.value

    def write_el2(self, name: str, value: int) -> None:
        """The hypervisor's MSR at EL2 (see :meth:`read_el2`).  The outcome of an EL2 access
        depends only on the PE's fixed features (nothing traps from EL2), so it is computed
        once per register."""
        ok = self._el2_write_ok.get(name)
        if ok is None:
            reg = BY_NAME.get(name) or lookup(name)
            old = self._el
            self._el = 2
            try:
                fault, flags = self._check(reg, True)
            finally:
                self._el = old
            plain = fault is None and not flags
            ok = self._el2_write_ok[name] = (
                reg, _WRITE_FN[reg.name] if plain else None,
                _BITMAPS.get(reg.name) if plain else None)
        reg, fn, bm = ok
        if value.__class__ is not int or not 0 <= value <= M64:
            check_value(reg, value)
        if bm is not None:  # a SET/CLR register: _w_bitmap's update with EL2's write mask,
            attr, set_, plans = bm  # no EL switch (the host's most frequent EL2 write)
            m = self._wmasks[2]
            if m is None:
                m = self._wmask_at(2)
            _bitmap_update(self, attr, set_, plans, m & value)
            return
        old = self._el
        self._el = 2
        try:
            if fn is not None:
                fn(self, value)
                return
            acc = self._access(reg, True, value)
        finally:
            self._el = old
        if not acc.ok:
            raise ValueError(f"{name} is UNDEFINED on this PE (absent feature) even at EL2")

    def check_access(self, name: str, is_write: bool) -> Outcome:
        """The outcome an access would have, without performing it."""
        fault, _ = self._check(lookup(name), is_write)
        return Outcome.OK if fault is None else fault.outcome

    def _check(self, reg: RegDef, write: bool) -> tuple[Access | None, int]:
        """:meth:`_check_regs` at the current EL, cached per register and direction until
        the configuration changes (:meth:`_config_changed`); the PMSELR_EL0-indexed
        registers (PMXEVCNTR/PMXEVTYPER) are decided afresh, SEL being part of the answer."""
        if reg.counter == "sel":
            return self._check_regs(reg, write)
        cache = self._chk[self._el * 2 + write]
        r = cache.get(reg.name)
        if r is None:
            r = cache[reg.name] = self._check_regs(reg, write)
        return r

    def _check_regs(self, reg: RegDef, write: bool) -> tuple[Access | None, int]:
        """The architectural checks of spec §8.1 (ARM §D24.5 accessors), in order.  Returns (fault,
        _) or (None, flags) where flags bit 0 = RAZ/WI, bit 1 = writes ignored."""
        el = self._el
        # 0. Absent feature, wrong direction, EL too low: UNDEFINED (ARM §D24.5 accessors).
        if reg.feature is not None and reg.feature not in self.features:
            return _UNDEF, 0
        if (reg.access == "RO" and write) or (reg.access == "WO" and not write):
            return _UNDEF, 0
        if el < (reg.min_el_write if write else reg.min_el):
            return _UNDEF, 0
        if reg.min_el == 2 and not self.has_el2:
            return _UNDEF, 0
        flags = 0
        # 1. Counter index >= N: UNDEFINED with FEAT_FGT, else policy (spec §8.1 step 1, §8.2).
        idx = self._counter_index(reg)
        if idx is not None and idx >= self.num_counters and idx != -1:
            if self.fgt or self.policies.no_fgt_unimplemented is NoFgtUnimplementedAccess.UNDEFINED:
                return _UNDEF, 0
            flags |= 1
        if el == 2:
            return None, flags
        host = self.in_host
        # 2b. EL0: PMUSERENR_EL0 gate; traps to EL1, or to EL2 with HCR_EL2.TGE (spec §8.3;
        # ARM §D13.11.3 Table D13-12).
        if el == 0:
            gate = self._el0_gate(reg, write)
            if gate is Outcome.UNDEFINED:
                return _UNDEF, 0
            if gate is not None:
                return (_TRAP_EL2 if (self._hcr & _HCR_TGE) else _TRAP_EL1), 0
        # 2c. Fine-grained traps (FEAT_FGT, 1 = trap), not for EL0 in host (spec §8.5;
        # ARM §D24.2.67, §D24.2.69).
        if self.fgt and reg.fgt is not None and not (el == 0 and host):
            fm = _fgt_mask("HDFGWTR_EL2" if write else "HDFGRTR_EL2", reg.fgt)
            if fm and (self._hdfgwtr if write else self._hdfgrtr) & fm:
                return _TRAP_EL2, 0
        # FEAT_FGT2 (0 = trap; spec §8.6; ARM §D24.2.66, §D24.2.68).
        if self.fgt2 and reg.fgt2 is not None and not (el == 0 and host):
            fm = _fgt_mask("HDFGWTR2_EL2" if write else "HDFGRTR2_EL2", reg.fgt2)
            if fm and not ((self._hdfgwtr2 if write else self._hdfgrtr2) & fm):
                return _TRAP_EL2, 0
        # 2d. MDCR_EL2.TPM (spec §8.4; ARM §D24.3.17).
        if (self._mdcr & _MDCR_TPM) and (reg.tpm_write if write else reg.tpm_read):
            return _TRAP_EL2, 0
        # 2e. MDCR_EL2.TPMCR: PMCR_EL0 only (spec §8.4; ARM §D24.3.17).
        if reg.tpmcr and (self._mdcr & _MDCR_TPMCR):
            return _TRAP_EL2, 0
        # 2f. Counter at or above HPMN: trap to EL2 with FEAT_FGT, else policy (spec §8.2;
        # ARM §D13.11.1, §D24.2.67).
        if idx is not None and idx != -1 and not (flags & 1) and idx >= self._hpmn \
                and self.has_el2:
            if self.fgt:
                return _TRAP_EL2, 0
            pol = self.policies.no_fgt_counter_access
            if pol is NoFgtCounterAccess.TRAP_EL2:
                return _TRAP_EL2, 0
            if pol is NoFgtCounterAccess.UNDEFINED:
                return _UNDEF, 0
            flags |= 1
        # 2h. PMUv3p9 EL0 controls: PMUACR per counter, ER/CR/IR read-only (spec §8.3;
        # ARM §D24.5.26).
        if el == 0 and self._p9 and (self._pmuserenr & _USERENR["UEN"]):
            flags |= self._uen_flags(reg, idx, write)
        return None, flags

    def _counter_index(self, reg: RegDef) -> int | None:
        """The counter a counter-indexed access names; -1 for PMXEVTYPER with SEL = 31
        (the PMCCFILTR alias, exempt from the index checks, ARM §D24.5.28)."""
        if reg.counter is None:
            return None
        if reg.counter == "n":
            return reg.index
        sel = self._pmselr & 0x1F
        if sel == 31 and reg.name == "PMXEVTYPER_EL0":
            return -1
        return sel

    def _el0_gate(self, reg: RegDef, write: bool) -> Outcome | None:
        """PMUSERENR_EL0 gating at EL0 (spec §8.3, ARM §D13.11.3 Table D13-12)."""
        ue = reg.user_en
        if ue is None:
            return Outcome.UNDEFINED
        u = self._pmuserenr
        allowed = ue.write if write else ue.read
        if "ALL" in allowed:
            return None
        uen = self._p9 and bool(u & _USERENR["UEN"])
        if reg.tpmcr:  # PMCR_EL0: accessible at EL0 only with EN = 1 and UEN = 0
            return None if (u & _USERENR["EN"]) and not uen else Outcome.TRAP_EL1
        if "UEN" in allowed:  # PMICNTR/PMICFILTR need UEN (EN does not enable them)
            return None if uen else Outcome.TRAP_EL1
        granted = uen and bool(allowed)
        if not granted:
            granted = any(u & _USERENR[bit] for bit in allowed)
        if not granted:
            return Outcome.TRAP_EL1
        # PMUv3p9 PMUSERENR_EL0.TID traps EL0 reads of PMCEID* once the access is otherwise
        # permitted, with UEN = 0 (EN = 1) as well as UEN = 1 (spec §8.3; ARM §D24.5.4/5
        # accessor: the TID test follows the EN/UEN test).
        if self._p9 and reg.name.startswith("PMCEID") and (u & _USERENR["TID"]):
            return Outcome.TRAP_EL1
        return None

    def _uen_flags(self, reg: RegDef, idx: int | None, write: bool) -> int:
        """With PMUSERENR.UEN = 1: PMUACR_EL1 bit clear makes a counter RAZ/WI; ER/CR/IR = 1
        make EL0 writes of that counter's registers ignored, the count *and* its type/filter
        register (spec §8.3; ARM §D24.5.10/12: "permitted writes of PMEVTYPER<n>_EL0 are
        ignored if PMUSERENR_EL0.{UEN,ER} == {1,1}", §D24.5.1 the same for PMCCFILTR and CR)."""
        acr = self._pmuacr
        u = self._pmuserenr
        bit: int | None = None
        ro = 0
        if idx is not None:
            # PMXEVTYPER with SEL = 31 is PMCCFILTR: the cycle counter's bits (C, CR)
            bit = CYCLE_IDX if idx == -1 else idx
            ro = _USERENR["CR"] if idx == -1 else _USERENR["ER"]
        elif reg.name in ("PMCCNTR_EL0", "PMCCFILTR_EL0"):
            bit, ro = CYCLE_IDX, _USERENR["CR"]
        elif reg.name in ("PMICNTR_EL0", "PMICFILTR_EL0"):
            bit, ro = ICNTR_IDX, _USERENR["IR"]
        if bit is None:
            return 0
        if not (acr >> bit) & 1:
            return 1
        if write and (u & ro):
            return 2
        return 0

    def _access(self, reg: RegDef, write: bool, value: int = 0, el: int | None = None
                ) -> Access:
        """MRS/MSR of an already looked-up register with an already checked value (the
        vCPU's accessor, which does both once for its own trap handling); ``el``: first make
        that the current EL (``pe.el = el``: the vCPU's accesses run at its guest EL)."""
        if el is not None:
            if el.__class__ is int and 0 <= el <= 1:
                self._el = el
            else:
                self.el = el  # EL2, or the setter's refusal
        if reg.counter == "sel":
            fault, flags = self._check_regs(reg, write)
        else:  # _check's cache, inline on the hot path
            cache = self._chk[self._el * 2 + write]
            r = cache.get(reg.name)
            if r is None:
                r = cache[reg.name] = self._check_regs(reg, write)
            fault, flags = r
        if fault is not None:
            return fault
        if flags & 1:  # RAZ/WI
            return _OK_WRITE if write else Access(Outcome.OK, 0)
        if write:
            if not flags & 2:
                _WRITE_FN[reg.name](self, value)
            return _OK_WRITE
        return Access(Outcome.OK, _READ_FN[reg.name](self, self._el))

    access = _access  #: the public name (DESIGN.md API contract)

    # ------------------------------------------------------------------ reads
    def _do_read(self, reg: RegDef) -> int:
        h = _READ_FN.get(reg.name)
        if h is not None:
            return h(self, self._el)
        raise AssertionError(f"no reader for {reg.name}")  # pragma: no cover

    def _read_evtyper(self, i: int) -> int:
        return self._evtyper[i]

    def _read_pmcr(self, el: int) -> int:
        # N reads as the effective HPMN at EL0/EL1 with EL2 enabled (spec §3, ARM §D24.5.8).
        n = self._hpmn if (el <= 1 and self.has_el2) else self.num_counters  # accessible(el)
        v = self._pmcr | (n << 11)
        if not self._p7:  # IMP/IDCODE RAZ from PMUv3p7 (spec §3; ARM §D24.5.8)
            v |= (self.implementer & 0xFF) << 24
        return v

    def _read_sel(self, el: int) -> int:
        # SEL >= N (other than 31) without FEAT_FGT reads back UNKNOWN (ARM §D24.5.22).
        sel = self._pmselr & 0x1F
        if not self.fgt and sel != 31 and sel >= self.num_counters and \
                self.policies.unknown_readback is UnknownReadback.ZERO:
            return 0
        return self._pmselr

    def _read_xevcntr(self, el: int) -> int:
        return self._evcnt[self._pmselr & 0x1F]

    def _read_xevtyper(self, el: int) -> int:
        sel = self._pmselr & 0x1F
        return self._ccfiltr if sel == 31 else self._evtyper[sel]

    def _pmceid(self, base: int) -> int:
        """PMCEID bit n <-> event base+n, bit 32+n <-> 0x4000+base+n (spec §10; ARM §D24.5.4/5)."""
        v = 0
        for ev in self.events:
            if base <= ev < base + 32:
                v |= 1 << (ev - base)
            elif self._p1 and 0x4000 + base <= ev < 0x4000 + base + 32:
                v |= 1 << (32 + ev - 0x4000 - base)
        if self.num_counters == 0:
            return 0
        return v

    def _id_dfr0(self) -> int:
        v = int(self.pmuver) << 8
        if self.hpmn0:
            v |= 1 << 60
        v |= 0x6  # DebugVer: Armv8 debug (not modelled further)
        return v

    def _id_dfr1(self) -> int:
        return (1 << 36) if self.icntr else 0

    def _id_mmfr0(self) -> int:
        return ((2 if self.fgt2 else 1) << 56) if self.fgt else 0

    # ------------------------------------------------------------------ writes
    def _do_write(self, reg: RegDef, value: int) -> None:
        h = _WRITE_FN.get(reg.name)
        if h is None:  # pragma: no cover
            raise AssertionError(f"no writer for {reg.name}")
        h(self, value)

    def _write_evtyper(self, i: int, value: int) -> None:
        # Fields of absent features are RES0 (NSK/NSU/M need EL3; evtCount[15:10] PMUv3p1).
        # An unsupported evtCount reads back as written (policy unknown_readback, ARM §D24.5.12).
        v = value & self._evtyper_wmask
        # Only pre-PMUv3p8 and outside 0x0000-0x003F / 0x4000-0x403F is the read-back of an
        # unsupported evtCount UNKNOWN; elsewhere it returns what was written (spec §4;
        # ARM §D24.5.12).
        ev = v & 0xFFFF
        if self.policies.unknown_readback is UnknownReadback.ZERO and ev not in self.events \
                and self.pmuver < PMUVer.V3P8 and not (ev <= 0x3F or 0x4000 <= ev <= 0x403F):
            v &= ~0xFFFF
        if self._evtyper[i] != v:
            self._evtyper[i] = v
            self._set_pass(i, v)
            if (self._cnten >> i) & 1:  # a disabled counter's type is in no plan
                self._plans = [None, None, None]  # _invalidate

    def _set_pass(self, i: int, t: int) -> None:
        """Keep ``_pass[el]`` bit ``i`` set iff counter ``i``'s filter lets it count at ``el``
        (:meth:`_filtered`), or it counts CHAIN with policy chain_filter IGNORED (spec §6,
        ARM §D14.3): the quick test of :meth:`_quiet`."""
        bit = 1 << i
        chain = (t & (0xFFFF if self._p1 else 0x3FF)) == _EV_CHAIN and \
            self.policies.chain_filter is ChainFilter.IGNORED
        ps = self._pass
        # _filtered's table: EL0 counts iff U == 0, EL1 iff P == 0, EL2 iff NSH == 1
        for el, passes in enumerate((not t & _FILT_U, not t & _FILT_P, bool(t & _FILT_NSH))):
            if chain or passes:
                ps[el] |= bit
            else:
                ps[el] &= ~bit

    def _write_pmcr(self, value: int) -> None:
        """PMCR_EL0 (spec §3; ARM §D24.5.8): writable E, X, DP, LC/D (AArch32), LP (p5), FZO (p7),
        FZS; P zeroes the accessible event counters, C zeroes PMCCNTR; flags unchanged."""
        wm = _PMCR_E
        if "FEAT_PMU_EXPORT" in self.features:  # X: RAZ/WI without an export bus (§D24.5.8)
            wm |= _PMCR_X
        if (self._p1 and self.has_el2) or self._p7:  # DP: p1 + EL2, or p7 (spec §3; ARM §D24.5.8)
            wm |= _PMCR_DP
        if self.aarch32:
            wm |= _PMCR_LC | _PMCR_D
        if self._p5:
            wm |= _PMCR_LP
        if self._p7:
            wm |= _PMCR_FZO
        if "FEAT_SPEv1p2" in self.features:
            wm |= _PMCR_FZS
        self._pmcr = (self._pmcr & ~wm) | (value & wm)
        if value & _PMCR_P:
            # ARM §D13.11.1: P does not reset counters the PE cannot access (R2 at EL0/EL1).
            for i in range(self.accessible()):
                self._evcnt[i] = 0
        if value & _PMCR_C:
            self._ccnt = 0
            self._ccd_residue = 0
        self._invalidate()

    def _write_swinc(self, value: int) -> None:
        """PMSWINC_EL0 (spec §6 SW_INCR; ARM §J1.3.1.114): masked to the accessible counters
        (and PMUACR at EL0 with UEN=1, SW=0); each counter whose evtCount is SW_INCR and that
        counts at the current EL increments by one."""
        m = value & ((1 << self.accessible()) - 1)
        u = self._pmuserenr
        if self._el == 0 and self._p9 and (u & _USERENR["UEN"]) and not (u & _USERENR["SW"]):
            m &= self._pmuacr
        if not m:
            return
        plan = self._plan()
        ctrs = plan.sw_incr
        before = self._ovs
        frozen = 0
        if plan.fz_r1 and (before & plan.fz_r1):
            frozen |= plan.r1_frz
        if plan.fz_r2 and (before & plan.fz_r2):
            frozen |= plan.r2_frz
        chains: dict[int, int] = {}
        for i in ctrs:
            # CHAIN follows the carry out of the even counter, whether or not its PMOVSSET
            # flag was already set (spec §6, ARM §J1.1.1.47 AArch64.IncrementEventCounter:
            # overflow is the carry, not a PMOVS change).
            if ((m >> i) & 1 and not (frozen >> i) & 1 and self._incr(i, 1)
                    and (plan.chain_ok >> i) & 1 and not (plan.lp_mask >> i) & 1):
                chains[i + 1] = chains.get(i + 1, 0) + 1
        if chains:
            self._apply_chains(chains, frozen)
        if self._ovs != before and self.overflow_listener is not None:
            self.overflow_listener(self._ovs & ~before)

    def _write_pmzr(self, value: int) -> None:
        """PMZR_EL0 (PMUv3p9): zero the counters named, masked by GetPMUWriteMask(TRUE) (spec §6
        "Resets"; ARM §J1.3.1.101)."""
        m = value & self._write_mask(self._el, write_counter=True)
        for i in range(self.num_counters):
            if (m >> i) & 1:
                self._evcnt[i] = 0
        if m & C_BIT:
            self._ccnt = 0
        if m & F0_BIT:
            self._icnt = 0

    def _write_mdcr(self, value: int) -> None:
        """MDCR_EL2: fields of absent features are RES0; HPMN is recomputed (spec §2, §9;
        ARM §D24.3.17)."""
        new = value & _feature_mask("MDCR_EL2", self.features)
        if new != self._mdcr:  # unchanged: the plans and caches hold
            self._mdcr = new
            self._recompute_hpmn()

    def _read_mdcr(self, el: int) -> int:
        v = self._mdcr
        if self.hpmn_constrained_unpredictable and \
                self.policies.unknown_readback is UnknownReadback.ZERO:
            v &= ~0x1F
        return v

    # ------------------------------------------------------------------ inspection
    def snapshot(self) -> PMUSnapshot:
        """All PMU state as EL2 sees it, without any access check (for checkers and tests)."""
        return PMUSnapshot(
            tuple(self._evcnt), tuple(self._evtyper), self._ccnt, self._ccfiltr, self._icnt,
            self._icfiltr, self._read_pmcr(2), self._cnten, self._ovs, self._inten,
            self._pmselr, self._pmuserenr, self._pmuacr, self._mdcr, self.pmuirq)

    def __repr__(self) -> str:
        core = self.core.name if self.core else "custom"
        return (f"PE({core}, N={self.num_counters}, {self.pmuver.name}, EL{self._el}, "
                f"HPMN={self._hpmn})")


def _bitmap_reader(attr: str) -> Callable[[PE, int], int]:
    def rd(pe: PE, el: int) -> int:
        return int(getattr(pe, attr)) & pe._rmask_at(el)
    return rd


def _simple(attr: str, reg: str, invalidate: bool = False, config: bool = False) -> tuple[
        Callable[[PE, int], int], Callable[[PE, int], None]]:
    """Reader and writer of a register kept whole in ``attr``; ``invalidate``: the counting
    plans read it; ``config``: the access checks and masks read it (``_config_changed``)."""
    def rd(pe: PE, el: int) -> int:
        return int(getattr(pe, attr))

    def wr(pe: PE, value: int) -> None:
        new = value & _feature_mask(reg, pe.features)
        if (invalidate or config) and getattr(pe, attr) != new:
            setattr(pe, attr, new)
            if invalidate:
                pe._invalidate()
            if config:
                pe._config_changed()
            return
        setattr(pe, attr, new)
    return rd, wr


def _w_xevcntr(pe: PE, v: int) -> None:
    pe._evcnt[pe._pmselr & 0x1F] = v & pe._cmask


def _w_xevtyper(pe: PE, v: int) -> None:
    sel = pe._pmselr & 0x1F
    if sel == 31:
        _WRITERS["PMCCFILTR_EL0"](pe, v)
    else:
        pe._write_evtyper(sel, v)


def _w_ccntr(pe: PE, v: int) -> None:
    pe._ccnt = v


def _w_icntr(pe: PE, v: int) -> None:
    pe._icnt = v


def _w_bitmap(attr: str, set_: bool, plans: bool = False) -> Callable[[PE, int], None]:
    """A SET/CLR register of the bitmap in ``attr``: the bits GetPMUWriteMask() allows at
    the current EL (ARM §J1.3.1.101) are set or cleared; ``plans``: the counting plans read
    the bitmap (PMCNTEN)."""
    def wr(pe: PE, v: int) -> None:
        el = pe._el
        m = pe._wmasks[el]
        if m is None:
            m = pe._wmask_at(el)
        _bitmap_update(pe, attr, set_, plans, m & v)
    return wr


def _bitmap_update(pe: PE, attr: str, set_: bool, plans: bool, m: int) -> None:
    """Set or clear the bits ``m`` (already masked to what the EL may write) of a SET/CLR
    bitmap register; a PMCNTEN change drops the counting plans that read the changed bits."""
    old = getattr(pe, attr)
    new = (old | m) if set_ else (old & ~m)
    if new != old:
        setattr(pe, attr, new)
        if plans:
            pe._cnten_changed(old ^ new)


#: The SET/CLR registers: (bitmap attribute, set, the counting plans read it).
_BITMAPS: dict[str, tuple[str, bool, bool]] = {
    "PMCNTENSET_EL0": ("_cnten", True, True), "PMCNTENCLR_EL0": ("_cnten", False, True),
    "PMOVSSET_EL0": ("_ovs", True, False), "PMOVSCLR_EL0": ("_ovs", False, False),
    "PMINTENSET_EL1": ("_inten", True, False), "PMINTENCLR_EL1": ("_inten", False, False),
}
_rd_ccf, _wr_ccf = _simple("_ccfiltr", "PMCCFILTR_EL0", invalidate=True)
_rd_icf, _wr_icf_fields = _simple("_icfiltr", "PMICFILTR_EL0", invalidate=True)
_ICF_EVTCOUNT = 0x0008


def _wr_icf(pe: PE, v: int) -> None:
    """PMICFILTR_EL0: evtCount [15:0] is RO and reads 0x0008 (ARM §D24.5.14)."""
    _wr_icf_fields(pe, (v & ~0xFFFF) | _ICF_EVTCOUNT)
_rd_uer, _wr_uer = _simple("_pmuserenr", "PMUSERENR_EL0", config=True)
_rd_acr, _wr_acr = _simple("_pmuacr", "PMUACR_EL1", config=True)
_, _wr_sel = _simple("_pmselr", "PMSELR_EL0")
_rd_hcr, _wr_hcr = _simple("_hcr", "HCR_EL2", invalidate=True, config=True)
_rd_frt, _wr_frt = _simple("_hdfgrtr", "HDFGRTR_EL2", config=True)
_rd_fwt, _wr_fwt = _simple("_hdfgwtr", "HDFGWTR_EL2", config=True)
_rd_frt2, _wr_frt2 = _simple("_hdfgrtr2", "HDFGRTR2_EL2", config=True)
_rd_fwt2, _wr_fwt2 = _simple("_hdfgwtr2", "HDFGWTR2_EL2", config=True)

_READERS: dict[str, Callable[[PE, int], int]] = {
    "PMCR_EL0": PE._read_pmcr,
    "PMCNTENSET_EL0": _bitmap_reader("_cnten"),
    "PMCNTENCLR_EL0": _bitmap_reader("_cnten"),
    "PMOVSSET_EL0": _bitmap_reader("_ovs"),
    "PMOVSCLR_EL0": _bitmap_reader("_ovs"),
    "PMINTENSET_EL1": _bitmap_reader("_inten"),
    "PMINTENCLR_EL1": _bitmap_reader("_inten"),
    "PMSELR_EL0": PE._read_sel,
    "PMCEID0_EL0": lambda pe, el: pe._pmceid(0x00),
    "PMCEID1_EL0": lambda pe, el: pe._pmceid(0x20),
    "PMCCNTR_EL0": lambda pe, el: pe._ccnt,
    "PMXEVTYPER_EL0": PE._read_xevtyper,
    "PMXEVCNTR_EL0": PE._read_xevcntr,
    "PMUSERENR_EL0": _rd_uer,
    "PMICNTR_EL0": lambda pe, el: pe._icnt,
    "PMICFILTR_EL0": _rd_icf,
    "PMCCFILTR_EL0": _rd_ccf,
    "PMUACR_EL1": _rd_acr,
    "PMMIR_EL1": lambda pe, el: pe.slots & 0xFF,
    "MDCR_EL2": PE._read_mdcr,
    "HCR_EL2": _rd_hcr,
    "HDFGRTR_EL2": _rd_frt,
    "HDFGWTR_EL2": _rd_fwt,
    "HDFGRTR2_EL2": _rd_frt2,
    "HDFGWTR2_EL2": _rd_fwt2,
    "ID_AA64DFR0_EL1": lambda pe, el: pe._id_dfr0(),
    "ID_AA64DFR1_EL1": lambda pe, el: pe._id_dfr1(),
    "ID_AA64MMFR0_EL1": lambda pe, el: pe._id_mmfr0(),
}

_WRITERS: dict[str, Callable[[PE, int], None]] = {
    "PMCR_EL0": PE._write_pmcr,
    **{name: _w_bitmap(*bm) for name, bm in _BITMAPS.items()},
    "PMSWINC_EL0": PE._write_swinc,
    "PMSELR_EL0": _wr_sel,
    "PMCCNTR_EL0": _w_ccntr,
    "PMXEVTYPER_EL0": _w_xevtyper,
    "PMXEVCNTR_EL0": _w_xevcntr,
    "PMZR_EL0": PE._write_pmzr,
    "PMUSERENR_EL0": _wr_uer,
    "PMICNTR_EL0": _w_icntr,
    "PMICFILTR_EL0": _wr_icf,
    "PMCCFILTR_EL0": _wr_ccf,
    "PMUACR_EL1": _wr_acr,
    "MDCR_EL2": PE._write_mdcr,
    "HCR_EL2": _wr_hcr,
    "HDFGRTR_EL2": _wr_frt,
    "HDFGWTR_EL2": _wr_fwt,
    "HDFGRTR2_EL2": _wr_frt2,
    "HDFGWTR2_EL2": _wr_fwt2,
}


def _w_evcntr(i: int) -> Callable[[PE, int], None]:
    def wr(pe: PE, v: int) -> None:
        pe._evcnt[i] = v & pe._cmask
    return wr


def _w_evtyper(i: int) -> Callable[[PE, int], None]:
    def wr(pe: PE, v: int) -> None:
        pe._write_evtyper(i, v)
    return wr


def _r_evcntr(i: int) -> Callable[[PE, int], int]:
    def rd(pe: PE, el: int) -> int:
        return pe._evcnt[i]
    return rd


def _r_evtyper(i: int) -> Callable[[PE, int], int]:
    def rd(pe: PE, el: int) -> int:
        return pe._evtyper[i]
    return rd


#: Every register's reader and writer by name, the <n> families' members included (the
#: access path's one lookup).
_READ_FN: dict[str, Callable[[PE, int], int]] = dict(_READERS)
_WRITE_FN: dict[str, Callable[[PE, int], None]] = dict(_WRITERS)
for _r in REGISTERS:
    if _r.index is None:
        continue
    if _r.family == "PMEVCNTR<n>_EL0":
        _READ_FN[_r.name], _WRITE_FN[_r.name] = _r_evcntr(_r.index), _w_evcntr(_r.index)
    elif _r.family == "PMEVTYPER<n>_EL0":
        _READ_FN[_r.name], _WRITE_FN[_r.name] = _r_evtyper(_r.index), _w_evtyper(_r.index)
