"""``PE.overflow_steps`` is :meth:`PE.events_to_overflow` for every counter whose overflow
raises the interrupt, at once (the host cuts each block of work where the first of them
overflows): the same counters, order, events and distances, frozen and 64-bit counters
included (spec §5.4, §6; ARM §J1.3.1.118, §J1.1.1.47)."""

from __future__ import annotations

import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmupart.arch import PE
from pmupart.arch.pe import CYCLE_IDX

N = 6
COUNTER = st.tuples(st.sampled_from([0x08, 0x11, 0x1E, 0x00, 0x08 | 1 << 27, 0x11 | 1 << 31,
                                     0x08 | 1 << 30]),
                    st.sampled_from([0, 5, 0xFFFF_FFF0, (1 << 64) - 3, 0x1_0000_0000]))


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["V3P5", "V3P7"]), st.lists(COUNTER, min_size=N, max_size=N),
       st.integers(0, (1 << 32) - 1), st.integers(0, (1 << 32) - 1),
       st.integers(0, (1 << 32) - 1),
       st.sampled_from([1, 1 | 1 << 7, 1 | 1 << 9, 1 | 1 << 7 | 1 << 9, 0, 1 | 1 << 6]),
       st.sampled_from([6, 4 | 1 << 7, 4 | 1 << 7 | 1 << 17, 3 | 1 << 7 | 1 << 23, 6 | 1 << 17,
                        4 | 1 << 7 | 1 << 29, 3 | 1 << 7 | 1 << 26]),  # HPMD, HCCD, HPMFZO, HLP
       st.sampled_from([0, 5, (1 << 64) - 7]), st.integers(0, 2))
def test_overflow_steps_are_events_to_overflow_of_each_interrupting_counter(
        version: str, counters: list[tuple[int, int]], cnten: int, inten: int, ovs: int,
        pmcr: int, mdcr: int, ccnt: int, el: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pe = PE(N, version, fgt=True)
    with pe.at_el(2):
        pe.write("MDCR_EL2", mdcr)
        pe.write("PMCR_EL0", pmcr)
        for i, (typer, value) in enumerate(counters):
            pe.write(f"PMEVTYPER{i}_EL0", typer)
            pe.write(f"PMEVCNTR{i}_EL0", value)
        pe.write("PMCCNTR_EL0", ccnt)
        pe.write("PMCNTENSET_EL0", cnten)
        pe.write("PMINTENSET_EL1", inten)
        pe.write("PMOVSSET_EL0", ovs)
    pe.el = el
    want = []
    for i in [*range(N), CYCLE_IDX]:
        if (pe.intr_enabled() >> i) & 1:
            k = pe.events_to_overflow(i)
            if k is not None:
                want.append((0x11 if i == CYCLE_IDX else pe.evtyper_raw(i) & 0xFFFF, k))
    assert pe.overflow_steps() == want
