"""Named choices for every CONSTRAINED UNPREDICTABLE or UNKNOWN case the model meets.

DESIGN.md decision 3: never pick silently.  Each enum names one choice the
architecture permits; :class:`Policies` bundles them with the default used unless a
user (or a scenario) switches it.  Each field cites the spec section that permits it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Any


class ReservedHpmn(Enum):
    """MDCR_EL2.HPMN > N, or HPMN == 0 without FEAT_HPMN0 (spec §9; ARM §K1.2.6.3, §J1.3.1.95).

    The PE behaves as if HPMN were an UNKNOWN non-zero value <= N, or as if all
    counters were reserved for EL2.
    """

    CLAMP = "clamp"  #: HPMN > N behaves as N; HPMN == 0 behaves as 1 (the nearest legal value)
    AS_N = "as-n"  #: behaves as N (no counter reserved for EL2)
    ALL_RESERVED = "all-reserved"  #: no counter accessible from EL0/EL1; all in the second range


class ChainStraddle(Enum):
    """CHAIN from counter HPMN-1 into counter HPMN when HPMN is odd (spec §6; ARM §J1.1.1.47,
    ARM §D14.3 CHAIN: UNPREDICTABLE whether the counter counts)."""

    COUNT = "count"  #: the odd counter counts the CHAIN event (as the Sail v9.4 model does)
    NO_COUNT = "no-count"  #: the CHAIN event is lost at the range boundary


class ChainFilter(Enum):
    """Whether an odd counter counting CHAIN applies its own PMEVTYPER filter (P/U/NSH) to the
    CHAIN events (spec §6; ARM §D14.3: software should program it to count at every EL, and
    the PE is permitted to ignore it)."""

    APPLIES = "applies"  #: the filter applies, as CountPMUEvents() does (ARM §J1.3.1.93)
    IGNORED = "ignored"  #: CHAIN events are counted whatever the odd counter's filter says


class NoFgtCounterAccess(Enum):
    """EL0/EL1 access to counter n with HPMN <= n < N on a PE without FEAT_FGT (spec §8.2:
    UNDEFINED, RAZ/WI, NOP, an UNKNOWN accessible counter, or a trap to EL2; ARM §K1.2.6.1-2)."""

    TRAP_EL2 = "trap-el2"  #: as a PE with FEAT_FGT does
    UNDEFINED = "undefined"
    RAZ_WI = "raz-wi"


class NoFgtUnimplementedAccess(Enum):
    """Access to counter n >= N on a PE without FEAT_FGT (spec §8.1 step 1, §8.2; ARM
    §D13.11.1, §K1.2.6.1-2)."""

    UNDEFINED = "undefined"  #: as a PE with FEAT_FGT does
    RAZ_WI = "raz-wi"


class UnknownReadback(Enum):
    """Read-back of a value the architecture calls UNKNOWN after a write it does not
    define: an unsupported PMEVTYPER evtCount before PMUv3p8 (ARM §D24.5.12), PMSELR.SEL >= N
    without FEAT_FGT (ARM §D24.5.22), a CONSTRAINED UNPREDICTABLE MDCR_EL2.HPMN (spec §9)."""

    WRITTEN = "written"  #: read back what was written (what PMUv3p8 and later, and KVM, do)
    ZERO = "zero"


class FreezeChain(Enum):
    """With FZO/HPMFZO = 1 and LP/HLP = 0, whether a CHAIN event observes the overflow that
    freezes the range (spec §6; ARM §D13.5.2 ITLHSZ: CONSTRAINED UNPREDICTABLE)."""

    OBSERVES = "observes"
    IGNORES = "ignores"


@dataclass(frozen=True, slots=True)
class Policies:
    """The choices in force on one PE.  ``Policies()`` gives the defaults.

    Two modelling decisions (not architectural choices) are recorded here too:

    * ``unknown_reset``: fields whose reset value is UNKNOWN reset to 0.
    * ``external_debug_enabled``: ExternalSecureNoninvasiveDebugEnabled() (spec §2 HPMD,
      §5.3; ARM §J1.3.1.93); FALSE, so HPMD prohibitions apply on PEs without FEAT_Debugv8p2 too.

    Freeze on overflow (FZO/HPMFZO, spec §5.4; ARM §J1.3.1.118) takes effect between blocks of work:
    a block passed to ``PE.count`` is one step, like one ``AArch64.PMUCycle`` with accumulated
    events (ARM §J1.1.1.48).  Callers that need the exact freeze point split their blocks at the
    overflow (``PE.events_to_overflow`` tells where).
    """

    reserved_hpmn: ReservedHpmn = ReservedHpmn.CLAMP
    chain_straddle: ChainStraddle = ChainStraddle.COUNT
    chain_filter: ChainFilter = ChainFilter.APPLIES
    no_fgt_counter_access: NoFgtCounterAccess = NoFgtCounterAccess.TRAP_EL2
    no_fgt_unimplemented: NoFgtUnimplementedAccess = NoFgtUnimplementedAccess.UNDEFINED
    unknown_readback: UnknownReadback = UnknownReadback.WRITTEN
    freeze_chain: FreezeChain = FreezeChain.OBSERVES
    unknown_reset: int = 0
    external_debug_enabled: bool = False

    @classmethod
    def from_mapping(cls, m: dict[str, Any]) -> Policies:
        """Build from ``{"reserved_hpmn": "all-reserved", ...}`` (scenario files, CLI)."""
        kw: dict[str, Any] = {}
        known = {f.name: f for f in fields(cls)}
        for k, v in m.items():
            f = known.get(k)
            if f is None:
                raise ValueError(f"unknown policy {k!r}; policies are {', '.join(known)}")
            default = getattr(cls(), k)
            if isinstance(default, Enum):
                try:
                    kw[k] = type(default)(v)
                except ValueError:
                    allowed = ", ".join(repr(e.value) for e in type(default))
                    raise ValueError(f"policy {k} must be one of {allowed}, not {v!r}") from None
            else:
                kw[k] = type(default)(v)
        return cls(**kw)
