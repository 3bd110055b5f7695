"""pmupart.arch: the Arm architecture core.

The register table (defined once, as data, in ``sysreg.txt``), field views and decoding,
the per-PE PMUv3 model, the core catalogue and the named policies for CONSTRAINED
UNPREDICTABLE choices.  Field views are exported by register name::

    >>> from pmupart.arch import MDCR_EL2
    >>> MDCR_EL2(0x84).HPMN
    4
"""

from pmupart.arch.cores import CORES, Core, CoreCosts, get_core
from pmupart.arch.events import Event, event_name, event_number
from pmupart.arch.features import PMUVer
from pmupart.arch.pe import CYCLE_IDX, ICNTR_IDX, PE, Access, Outcome, PMUSnapshot
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
from pmupart.arch.sysreg import (
    BY_ENCODING,
    BY_NAME,
    REGISTERS,
    FieldDef,
    RegDef,
    RegView,
    decode,
    lookup,
    lookup_encoding,
    view,
    view_class,
)

# Field views for the registers users decode most (``MDCR_EL2(v).HPMN``).
MDCR_EL2 = view_class("MDCR_EL2")
PMCR_EL0 = view_class("PMCR_EL0")
HCR_EL2 = view_class("HCR_EL2")
HDFGRTR_EL2 = view_class("HDFGRTR_EL2")
HDFGWTR_EL2 = view_class("HDFGWTR_EL2")
PMUSERENR_EL0 = view_class("PMUSERENR_EL0")
PMCCFILTR_EL0 = view_class("PMCCFILTR_EL0")
PMEVTYPER_EL0 = view_class("PMEVTYPER0_EL0")
ID_AA64DFR0_EL1 = view_class("ID_AA64DFR0_EL1")

__all__ = [
    "BY_ENCODING",
    "BY_NAME",
    "CORES",
    "CYCLE_IDX",
    "HCR_EL2",
    "HDFGRTR_EL2",
    "HDFGWTR_EL2",
    "ICNTR_IDX",
    "ID_AA64DFR0_EL1",
    "MDCR_EL2",
    "PE",
    "PMCCFILTR_EL0",
    "PMCR_EL0",
    "PMEVTYPER_EL0",
    "PMUSERENR_EL0",
    "REGISTERS",
    "Access",
    "ChainFilter",
    "ChainStraddle",
    "Core",
    "CoreCosts",
    "Event",
    "FieldDef",
    "FreezeChain",
    "NoFgtCounterAccess",
    "NoFgtUnimplementedAccess",
    "Outcome",
    "PMUSnapshot",
    "PMUVer",
    "Policies",
    "RegDef",
    "RegView",
    "ReservedHpmn",
    "UnknownReadback",
    "decode",
    "event_name",
    "event_number",
    "get_core",
    "lookup",
    "lookup_encoding",
    "view",
    "view_class",
]
