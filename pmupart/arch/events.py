"""PMU event numbers: the architected common events (spec §10; ARM §D14.2 Table D14-3).

Names are the Arm ARM mnemonics, numbers are the architecture's (the same as the
kernel's ``ARMV8_PMUV3_PERFCTR_*``).  ``event_number`` accepts either.
"""

from __future__ import annotations

from enum import IntEnum

from pmupart.errors import suggest


class Event(IntEnum):
    """Architected common event numbers (ARM §D14.2, Table D14-3)."""

    SW_INCR = 0x00
    L1I_CACHE_REFILL = 0x01
    L1I_TLB_REFILL = 0x02
    L1D_CACHE_REFILL = 0x03
    L1D_CACHE = 0x04
    L1D_TLB_REFILL = 0x05
    LD_RETIRED = 0x06
    ST_RETIRED = 0x07
    INST_RETIRED = 0x08
    EXC_TAKEN = 0x09
    EXC_RETURN = 0x0A
    CID_WRITE_RETIRED = 0x0B
    PC_WRITE_RETIRED = 0x0C
    BR_IMMED_RETIRED = 0x0D
    BR_RETURN_RETIRED = 0x0E
    UNALIGNED_LDST_RETIRED = 0x0F
    BR_MIS_PRED = 0x10
    CPU_CYCLES = 0x11
    BR_PRED = 0x12
    MEM_ACCESS = 0x13
    L1I_CACHE = 0x14
    L1D_CACHE_WB = 0x15
    L2D_CACHE = 0x16
    L2D_CACHE_REFILL = 0x17
    L2D_CACHE_WB = 0x18
    BUS_ACCESS = 0x19
    MEMORY_ERROR = 0x1A
    INST_SPEC = 0x1B
    TTBR_WRITE_RETIRED = 0x1C
    BUS_CYCLES = 0x1D
    CHAIN = 0x1E
    L1D_CACHE_ALLOCATE = 0x1F
    L2D_CACHE_ALLOCATE = 0x20
    BR_RETIRED = 0x21
    BR_MIS_PRED_RETIRED = 0x22
    STALL_FRONTEND = 0x23
    STALL_BACKEND = 0x24
    L1D_TLB = 0x25
    L1I_TLB = 0x26
    L2I_CACHE = 0x27
    L2I_CACHE_REFILL = 0x28
    L3D_CACHE_ALLOCATE = 0x29
    L3D_CACHE_REFILL = 0x2A
    L3D_CACHE = 0x2B
    L3D_CACHE_WB = 0x2C
    L2D_TLB_REFILL = 0x2D
    L2I_TLB_REFILL = 0x2E
    L2D_TLB = 0x2F
    L2I_TLB = 0x30
    REMOTE_ACCESS = 0x31
    LL_CACHE = 0x32
    LL_CACHE_MISS = 0x33
    DTLB_WALK = 0x34
    ITLB_WALK = 0x35
    LL_CACHE_RD = 0x36
    LL_CACHE_MISS_RD = 0x37
    REMOTE_ACCESS_RD = 0x38
    OP_RETIRED = 0x3A
    OP_SPEC = 0x3B
    STALL = 0x3C
    STALL_SLOT_BACKEND = 0x3D
    STALL_SLOT_FRONTEND = 0x3E
    STALL_SLOT = 0x3F


#: Events the PE generates itself; a block of work cannot "retire" them (spec §6;
#: ARM §J1.3.1.114 SW_INCR, §J1.1.1.47 CHAIN).
GENERATED_EVENTS = frozenset({Event.SW_INCR, Event.CHAIN})

#: The common events every modelled PMUv3 core implements unless the catalogue says
#: otherwise: the required set of ARM §D14.6 plus the usual v8.0 common events.
#: ASSUMPTION (not read per-core from the TRMs): see cores.py ``confirmed`` notes.
BASE_EVENTS: frozenset[int] = frozenset(int(e) for e in Event if e <= 0x24 and e not in (
    Event.MEMORY_ERROR, Event.TTBR_WRITE_RETIRED, Event.L1D_CACHE_ALLOCATE,
    Event.L2D_CACHE_ALLOCATE))
#: PMUv3p1-and-later cores add the TLB/LLC events 0x25..0x3F (common v8.1+ set; assumption).
V8_2_EVENTS: frozenset[int] = BASE_EVENTS | frozenset(int(e) for e in Event if 0x25 <= e <= 0x3F
                                                      and e not in (0x39,))

_BY_NAME = {e.name: int(e) for e in Event}


def event_number(ev: int | str) -> int:
    """Map an event mnemonic or number to its number; ``ValueError`` for unknown names."""
    if isinstance(ev, bool):
        raise TypeError("event must be a name or a number, not a bool")
    if isinstance(ev, int):
        if not 0 <= ev <= 0xFFFF:
            raise ValueError(f"event number must be 0..0xffff (16-bit evtCount), not {ev:#x}")
        return ev
    if isinstance(ev, str):
        key = ev.strip().upper()
        n = _BY_NAME.get(key)
        if n is not None:
            return n
        if key.startswith(("0X", "R")):
            try:
                return event_number(int(key.lstrip("R"), 16))
            except ValueError:
                pass
        raise ValueError(f"unknown PMU event {ev!r}{suggest(key, _BY_NAME)}; use an architected "
                         "mnemonic (CPU_CYCLES, INST_RETIRED, ...) or a number")
    raise TypeError(f"event must be a name or a number, not {type(ev).__name__}")


def event_name(n: int) -> str:
    """The mnemonic of event ``n``, or ``0x...`` for a raw number."""
    try:
        return Event(n).name
    except ValueError:
        return f"{n:#x}"
