"""The PE's caches give the answers of the rules they cache (spec §5, §8).

``PE`` caches the outcome of each access check per EL and direction, the read and write masks
(GetPMUReadMask/GetPMUWriteMask) per EL, each EL's counting plan, and each EL2 register
accessor.  Random sequences of writes to every register that decides them (MDCR_EL2, HCR_EL2,
PMUSERENR_EL0, PMUACR_EL1, PMSELR_EL0, the fine-grained trap registers, PMCR_EL0, PMCNTEN,
PMEVTYPER, PMCCFILTR) must leave every cached answer equal to the one computed afresh.
"""

from __future__ import annotations

import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmupart.arch import PE
from pmupart.arch.pe import _Plan
from pmupart.arch.sysreg import REGISTERS

#: (register, values worth writing): the bits the access checks and plans read
CONFIG_WRITES: list[tuple[str, st.SearchStrategy[int]]] = [
    ("MDCR_EL2", st.integers(0, 7) | st.sampled_from([1 << 5, 1 << 6, 1 << 7, 1 << 17])
     .map(lambda b: b | 3)),
    ("HCR_EL2", st.sampled_from([0, 1 << 34, (1 << 34) | (1 << 27), 1 << 27])),
    ("PMUSERENR_EL0", st.integers(0, 127)),
    ("PMUACR_EL1", st.integers(0, (1 << 33) - 1)),
    ("PMSELR_EL0", st.sampled_from([0, 1, 3, 5, 6, 30, 31])),
    ("HDFGRTR_EL2", st.integers(0, (1 << 64) - 1)),
    ("HDFGWTR_EL2", st.integers(0, (1 << 64) - 1)),
    ("HDFGRTR2_EL2", st.integers(0, 31)),
    ("HDFGWTR2_EL2", st.integers(0, 31)),
    ("PMCR_EL0", st.sampled_from([0, 1, 1 | (1 << 7), 1 | (1 << 5)])),
    ("PMCNTENSET_EL0", st.integers(0, (1 << 33) - 1)),
    ("PMCNTENCLR_EL0", st.integers(0, (1 << 33) - 1)),
    ("PMEVTYPER1_EL0", st.sampled_from([0x08, 0x11, 0x1E, 0x08 | 1 << 27, 0x11 | 1 << 31])),
    ("PMCCFILTR_EL0", st.sampled_from([0, 1 << 27, 1 << 31, 1 << 30])),
]


def _pe(version: str) -> PE:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PE(6, version, fgt=True, fgt2=True, hpmn0=True, icntr=True)


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["V3P5", "V3P9"]),
       st.lists(st.tuples(st.integers(0, len(CONFIG_WRITES) - 1), st.data()), max_size=12))
def test_cached_access_answers_equal_fresh_ones(version: str,
                                                writes: list[tuple[int, st.DataObject]]) -> None:
    """spec §8.1-§8.6: after any sequence of configuration writes, each access check,
    read/write mask, counting plan and EL2 accessor the PE cached is what the rules give."""
    pe = _pe(version)
    for k, data in writes:
        name, values = CONFIG_WRITES[k]
        with pe.at_el(2):  # an absent register (PMUACR before PMUv3p9) is UNDEFINED: no change
            pe.write(name, data.draw(values))
        for el in (0, 1, 2):
            pe.el = el
            for reg in REGISTERS:
                for write in (False, True):
                    assert pe._check(reg, write) == pe._check_regs(reg, write), \
                        (reg.name, write, el)
            assert pe._wmask_at(el) == pe._write_mask(el), el
            assert pe._rmask_at(el) == pe._read_mask(el), el
            got, want = pe._plan(), pe._compute_plan(el)
            if _live(want):
                for f in want.__slots__:
                    assert getattr(got, f) == getattr(want, f), (f, el)
            else:
                assert not _live(got), el
    pe.el = 1
    pe.write_el2("PMCNTENSET_EL0", 3)
    assert pe.read_el2("PMCNTENSET_EL0") & 3 == 3 == pe.snapshot().pmcnten & 3
    pe.write_el2("PMEVCNTR0_EL0", 7)
    assert pe.read_el2("PMEVCNTR0_EL0") == 7 == pe.snapshot().evcntr[0]
    assert pe.el == 1  # the EL2 accessors leave the current EL alone


def _live(p: _Plan) -> bool:
    return bool(p.by_event or p.cycle or p.icnt or p.sw_incr or p.chain_odd)
