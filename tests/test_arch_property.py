"""Property tests: ``PE.count`` (arithmetic) against a slow per-event reference written here
from spec §5-§6 (one increment at a time, overflow flags from carries, one CHAIN event per
carry out of an even counter).

The reference follows the model's documented granularity (policy.py ``Policies`` note): a
block of work is one step, so freeze-on-overflow (spec §5.4) is decided by the flags set
when the block starts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmupart.arch import PE, ChainFilter, ChainStraddle, Outcome, Policies

INST, CYC, MEM, CHAIN, SWINC, UNSUP = 0x08, 0x11, 0x13, 0x1E, 0x00, 0x300
C = 1 << 31
FP, FU, NSH = 1 << 31, 1 << 30, 1 << 27
E, DP, LP, FZO = 1, 32, 128, 512
HPME, HPMD, HCCD, HLP, HPMFZO = 1 << 7, 1 << 17, 1 << 23, 1 << 26, 1 << 29
VERS = {"V3": 0, "V3P1": 1, "V3P5": 5, "V3P7": 7}


@dataclass
class Ref:
    """The reference PE state: plain lists and ints, updated one event at a time."""

    n: int
    ver: int
    hpmn: int
    mdcr: int
    pmcr: int
    cnten: int
    types: list[int]
    ccfiltr: int
    ctr: list[int]
    ccnt: int
    ovs: int
    straddle_counts: bool
    events: frozenset[int] = field(default=frozenset({INST, CYC, MEM, SWINC, CHAIN}))

    def width(self) -> int:
        return 64 if self.ver >= 5 else 32  # spec §6: 64-bit counters from PMUv3p5

    def lp(self, i: int) -> bool:
        if self.ver < 5:
            return False
        return bool(self.pmcr & LP) if i < self.hpmn else bool(self.mdcr & HLP)

    def filtered(self, t: int, el: int) -> bool:  # spec §5.6, Non-secure, no EL3
        return bool(t & FU) if el == 0 else bool(t & FP) if el == 1 else not t & NSH

    def frozen_ranges(self) -> tuple[bool, bool]:  # spec §5.4
        if self.ver < 7:
            return False, False
        r1 = any((self.ovs >> i) & 1 for i in range(self.hpmn))
        r2 = any((self.ovs >> i) & 1 for i in range(self.hpmn, self.n))
        return bool(self.pmcr & FZO) and r1, bool(self.mdcr & HPMFZO) and r2

    def counts(self, i: int, el: int, frz: tuple[bool, bool]) -> bool:  # spec §5
        r1 = i < self.hpmn
        en = bool(self.pmcr & E) if r1 else bool(self.mdcr & HPME)
        en = en and bool((self.cnten >> i) & 1)
        prohibited = el == 2 and self.ver >= 1 and r1 and bool(self.mdcr & HPMD)
        frozen = frz[0] if r1 else frz[1]
        return en and not prohibited and not frozen and not self.filtered(self.types[i], el)

    def evt(self, i: int) -> int:
        return self.types[i] & (0xFFFF if self.ver >= 1 else 0x3FF)

    def inc1(self, i: int) -> None:
        """One increment of counter i; overflow flag on the carry (spec §6)."""
        old = self.ctr[i]
        new = (old + 1) % (1 << self.width())
        bit = 64 if self.lp(i) else 32
        if ((old + 1) >> bit) & 1 != (old >> bit) & 1 or (bit == 64 and old + 1 == 1 << 64):
            self.ovs |= 1 << i
        self.ctr[i] = new

    def event(self, i: int, el: int, frz: tuple[bool, bool]) -> None:
        """Counter i counts one event, and a carry of an even counter raises CHAIN."""
        old = self.ctr[i]
        self.inc1(i)
        bit = 64 if self.lp(i) else 32
        carried = ((old & ((1 << bit) - 1)) + 1) >> bit
        if carried and i % 2 == 0 and not self.lp(i) and i + 1 < self.n:
            j = i + 1
            if self.evt(j) == CHAIN and self.counts(j, el, frz) and \
                    (self.straddle_counts or j != self.hpmn):
                self.inc1(j)

    def block(self, block: dict[int, int], el: int) -> None:
        frz = self.frozen_ranges()
        for ev, k in block.items():
            for _ in range(k):
                for i in range(self.n):
                    if self.evt(i) == ev and ev in self.events and ev != CHAIN and \
                            self.counts(i, el, frz):
                        self.event(i, el, frz)
                if ev == CYC:
                    self.cycle(el, frz)

    def cycle(self, el: int, frz: tuple[bool, bool]) -> None:  # spec §5.5
        en = bool(self.pmcr & E) and bool(self.cnten & C) and \
            not self.filtered(self.ccfiltr, el)
        hpmd = el == 2 and self.ver >= 1 and bool(self.mdcr & HPMD)
        if (hpmd or frz[0]) and self.pmcr & DP:
            en = False
        if el == 2 and self.ver >= 5 and self.mdcr & HCCD:
            en = False
        if en:
            self.ccnt += 1
            if self.ccnt == 1 << 64:
                self.ccnt = 0
                self.ovs |= C

    def swinc(self, mask: int, el: int) -> None:  # spec §6 SW_INCR
        acc = self.hpmn if el <= 1 else self.n
        frz = self.frozen_ranges()
        for i in range(self.n):
            if (mask >> i) & 1 and i < acc and self.evt(i) == SWINC and \
                    self.counts(i, el, frz):
                self.event(i, el, frz)


def near(width: int) -> st.SearchStrategy[int]:
    top = 1 << width
    return st.one_of(st.integers(0, 150), st.integers(top - 150, top - 1),
                     st.integers((1 << 32) - 150, (1 << 32) + 5), st.integers(0, top - 1))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Ref, list[tuple[str, int, object]]]:
    ver_name = draw(st.sampled_from(sorted(VERS)))
    ver = VERS[ver_name]
    n = draw(st.integers(1, 10))
    hpmn = draw(st.integers(0, n))
    mdcr = draw(st.sampled_from([0, HPME])) | draw(st.sampled_from([0, HPMD])) | \
        draw(st.sampled_from([0, HLP])) | draw(st.sampled_from([0, HPMFZO])) | \
        draw(st.sampled_from([0, HCCD]))
    pmcr = E * draw(st.integers(0, 1)) | draw(st.sampled_from([0, LP])) | \
        draw(st.sampled_from([0, FZO])) | draw(st.sampled_from([0, DP]))
    # features that are absent are RES0: keep the reference in step (spec §2, §3)
    if ver < 1:
        mdcr &= ~HPMD
    if ver < 5:
        mdcr &= ~(HLP | HCCD)
        pmcr &= ~LP
    if ver < 7:
        mdcr &= ~HPMFZO
        pmcr &= ~FZO
    width = 64 if ver >= 5 else 32
    types = [draw(st.sampled_from([INST, CYC, MEM, CHAIN, SWINC, UNSUP]))
             | draw(st.sampled_from([0, FP, FU, NSH, FP | NSH, FU | NSH]))
             for _ in range(n)]
    ref = Ref(
        n=n, ver=ver, hpmn=hpmn, mdcr=mdcr, pmcr=pmcr,
        cnten=draw(st.integers(0, (1 << n) - 1)) | (C * draw(st.integers(0, 1))),
        types=types, ccfiltr=draw(st.sampled_from([0, FP, FU, NSH])),
        ctr=[draw(near(width)) % (1 << width) for _ in range(n)], ccnt=draw(near(64)),
        ovs=draw(st.integers(0, (1 << n) - 1)) * draw(st.integers(0, 1)),
        straddle_counts=draw(st.booleans()))
    steps: list[tuple[str, int, object]] = []
    for _ in range(draw(st.integers(1, 4))):
        el = draw(st.integers(0, 2))
        if draw(st.integers(0, 4)) == 0:
            steps.append(("swinc", el, draw(st.integers(0, (1 << n) - 1))))
        else:
            blk = draw(st.dictionaries(st.sampled_from([INST, CYC, MEM, UNSUP]),
                                       st.integers(0, 160), max_size=4))
            steps.append(("count", el, blk))
    return ref, [*steps]


def build_pe(ref: Ref, chain_filter: ChainFilter = ChainFilter.APPLIES) -> PE:
    name = {v: k for k, v in VERS.items()}[ref.ver]
    pol = Policies(chain_straddle=ChainStraddle.COUNT if ref.straddle_counts
                   else ChainStraddle.NO_COUNT, chain_filter=chain_filter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pe = PE(ref.n, name, fgt=True, hpmn0=True, policies=pol,
                events=frozenset({INST, CYC, MEM, SWINC, CHAIN}))
    with pe.at_el(2):
        ops = [("MDCR_EL2", ref.hpmn | ref.mdcr), ("PMCR_EL0", ref.pmcr),
               ("PMCCFILTR_EL0", ref.ccfiltr), ("PMCNTENSET_EL0", ref.cnten),
               ("PMCCNTR_EL0", ref.ccnt), ("PMOVSSET_EL0", ref.ovs),
               ("PMUSERENR_EL0", 0b11)]  # EN, SW: EL0 may write PMSWINC
        ops += [(f"PMEVTYPER{i}_EL0", t) for i, t in enumerate(ref.types)]
        ops += [(f"PMEVCNTR{i}_EL0", v) for i, v in enumerate(ref.ctr)]
        for reg, v in ops:
            assert pe.write(reg, v).outcome is Outcome.OK
    return pe


def state(pe: PE) -> tuple[list[int], int, int]:
    s = pe.snapshot()
    return list(s.evcntr), s.pmovs, s.pmccntr


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_count_matches_per_event_reference(sc: tuple[Ref, list[tuple[str, int, object]]]) -> None:
    """spec §5-§6: arithmetic counting equals one-event-at-a-time counting."""
    ref, steps = sc
    pe = build_pe(ref)
    assert state(pe) == (ref.ctr, ref.ovs, ref.ccnt)
    for kind, el, arg in steps:
        pe.el = el
        if kind == "count":
            assert isinstance(arg, dict)
            pe.count(arg)
            ref.block(arg, el)
        else:
            assert isinstance(arg, int)
            assert pe.write("PMSWINC_EL0", arg).outcome is Outcome.OK
            ref.swinc(arg, el)
        assert state(pe) == (ref.ctr, ref.ovs, ref.ccnt), (kind, el, arg)


@settings(deadline=None, max_examples=100)
@given(st.integers(0, (1 << 32) - 1), st.integers(0, 1 << 70), st.booleans())
def test_big_blocks_chain_exactly(start: int, k: int, p5: bool) -> None:
    # One block overflowing a 32-bit counter many times: the odd counter's CHAIN count is the
    # number of carries out of bit 31, and the flag is set iff there was at least one.
    """spec §6: one CHAIN per carry out of bit 31; flags from carries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pe = PE(2, "V3P5" if p5 else "V3P1")
    with pe.at_el(2):
        pe.write("PMEVTYPER0_EL0", INST)
        pe.write("PMEVTYPER1_EL0", CHAIN)
        pe.write("PMEVCNTR0_EL0", start)
        pe.write("PMCNTENSET_EL0", 0b11)
        pe.write("PMCR_EL0", E)
    pe.el = 1
    pe.count({INST: k})
    carries = (start + k) >> 32
    s = pe.snapshot()
    width = 64 if p5 else 32
    assert s.evcntr[0] == (start + k) % (1 << width)
    assert s.evcntr[1] == carries % (1 << width)
    odd_ovf = (carries >> 32) > 0
    assert s.pmovs == (1 if carries else 0) | (2 if odd_ovf else 0)


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.sampled_from(list(ChainFilter)))
def test_quiet_el_only_where_nothing_counts(sc: tuple[Ref, list[tuple[str, int, object]]],
                                            chain_filter: ChainFilter) -> None:
    """spec §5: the shortcut that skips building a counting plan (``PE._quiet``) is taken
    only where the full CountPMUEvents() walk finds no counter counting at that EL."""
    ref, _ = sc
    pe = build_pe(ref, chain_filter)
    for el in (0, 1, 2):
        p = pe._compute_plan(el)
        live = bool(p.by_event or p.sw_incr or p.chain_odd or p.cycle or p.icnt)
        assert not (live and pe._quiet(el)), el


def test_quiet_el_is_taken_for_filtered_counters() -> None:
    """The shortcut does apply: counters that exclude EL2 (NSH = 0) leave EL2 quiet while
    EL1 counts; a PMCCNTR that includes EL2 makes EL2 count again (spec §5.6)."""
    pe = PE(4, "V3P5")
    with pe.at_el(2):
        pe.write("PMEVTYPER0_EL0", INST)
        pe.write("PMCNTENSET_EL0", 0b1 | C)
        pe.write("PMCCFILTR_EL0", 0)
        pe.write("PMCR_EL0", E)
    assert pe._quiet(2) and not pe._quiet(1)
    pe.count_at(2, {INST: 5, CYC: 7})
    assert state(pe) == ([0, 0, 0, 0], 0, 0)
    pe.write_el2("PMCCFILTR_EL0", NSH)
    assert not pe._quiet(2)
    pe.count_at(2, {CYC: 7})
    assert state(pe) == ([0, 0, 0, 0], 0, 7)
