"""Counting (spec §5), increments/overflow/CHAIN/SW_INCR/resets (spec §6) and PMUIRQ (spec §7).

Each test programs the PE through its registers, retires work with ``count`` and checks
the values the architecture prescribes."""

from __future__ import annotations

import warnings

import pytest

from pmupart.arch import PE, ChainStraddle, FreezeChain, Outcome, Policies, UnknownReadback

pytestmark = pytest.mark.filterwarnings("ignore:what-if PE")

C = 1 << 31
F0 = 1 << 32
M32 = (1 << 32) - 1
M64 = (1 << 64) - 1
# PMCR_EL0 (spec §3)
E, P, CC, D, DP, LC, LP, FZO = 1, 2, 4, 8, 32, 64, 128, 512
# MDCR_EL2 (spec §2)
TPM, HPME, HPMD, HCCD, HLP, HPMFZO = 1 << 6, 1 << 7, 1 << 17, 1 << 23, 1 << 26, 1 << 29
# filter bits (spec §4)
FP, FU, NSH = 1 << 31, 1 << 30, 1 << 27
INST, CYC, CHAIN, SWINC, MEM = 0x08, 0x11, 0x1E, 0x00, 0x13


def mk(n: int = 6, pmuver: str = "V3P5", **kw: object) -> PE:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PE(num_counters=n, pmuver=pmuver, fgt=True, hpmn0=True, **kw)  # type: ignore[arg-type]


def w(pe: PE, name: str, value: int) -> None:
    with pe.at_el(2):
        assert pe.write(name, value).outcome is Outcome.OK, name


def r(pe: PE, name: str) -> int:
    with pe.at_el(2):
        a = pe.read(name)
    assert a.outcome is Outcome.OK and a.value is not None, name
    return a.value


def cnt(pe: PE, i: int) -> int:
    return r(pe, f"PMEVCNTR{i}_EL0")


def program(pe: PE, types: dict[int, int], *, hpmn: int | None = None, mdcr: int = 0,
            pmcr: int = E, cnten: int | None = None, ccfiltr: int | None = None) -> None:
    """Program from EL2: MDCR_EL2, PMEVTYPER<i>, PMCNTENSET, PMCR_EL0."""
    w(pe, "MDCR_EL2", (pe.num_counters if hpmn is None else hpmn) | mdcr)
    for i, t in types.items():
        w(pe, f"PMEVTYPER{i}_EL0", t)
    if ccfiltr is not None:
        w(pe, "PMCCFILTR_EL0", ccfiltr)
    w(pe, "PMCNTENSET_EL0", sum(1 << i for i in types) if cnten is None else cnten)
    w(pe, "PMCR_EL0", pmcr)


# ---------------------------------------------------------------- enables (spec §5.2, §3)

@pytest.mark.parametrize("e", [0, 1])
@pytest.mark.parametrize("hpme", [0, 1])
def test_global_enable_per_range(e: int, hpme: int) -> None:
    # counters 0..2 first range (PMCR.E), 3..5 second range (MDCR_EL2.HPME), all with NSH=1
    pe = mk()
    program(pe, {i: NSH | INST for i in range(6)}, hpmn=3, mdcr=HPME * hpme, pmcr=E * e)
    for el in (0, 1, 2):
        pe.el = el
        pe.count({"INST_RETIRED": 10})
    for i in range(6):
        assert cnt(pe, i) == 30 * (e if i < 3 else hpme), i


def test_pmcntenset_gates_each_counter() -> None:
    """spec §5.2: counter_en = PMCNTENSET bit (and C for PMCCNTR)."""
    pe = mk()
    program(pe, {i: INST for i in range(6)}, cnten=0b101001 | C)
    pe.el = 1
    pe.count({INST: 7, CYC: 5})
    assert [cnt(pe, i) for i in range(6)] == [7, 0, 0, 7, 0, 7]
    assert r(pe, "PMCCNTR_EL0") == 5
    w(pe, "PMCNTENCLR_EL0", 1 | C)
    pe.count({INST: 1, CYC: 1})
    assert [cnt(pe, i) for i in range(6)] == [7, 0, 0, 8, 0, 8]
    assert r(pe, "PMCCNTR_EL0") == 5


def test_hpme_has_no_effect_when_hpmn_is_n() -> None:
    # spec §9: HPMN = N: all counters first range, HPME irrelevant
    pe = mk()
    program(pe, {i: INST for i in range(6)}, hpmn=6, mdcr=0)
    pe.el = 1
    pe.count({INST: 3})
    assert all(cnt(pe, i) == 3 for i in range(6))


def test_accessibility_never_affects_counting() -> None:
    # spec §5 (ARM §D13.11 ISDHCP): R2 counters count at EL1 though EL1 cannot access them
    pe = mk()
    program(pe, {5: INST}, hpmn=4, mdcr=HPME)
    pe.el = 1
    assert pe.read("PMEVCNTR5_EL0").outcome is Outcome.TRAP_EL2
    pe.count({INST: 9})
    assert cnt(pe, 5) == 9


# ---------------------------------------------------------------- filters (spec §5.6)

@pytest.mark.parametrize("filt", [0, FP, FU, NSH, FP | FU, FP | NSH, FU | NSH, FP | FU | NSH])
def test_filter_table_by_el(filt: int) -> None:
    # Non-secure, no EL3: EL0 counts iff U == 0, EL1 iff P == 0, EL2 iff NSH == 1
    pe = mk()
    program(pe, {0: filt | INST}, ccfiltr=filt, cnten=1 | C)
    for el in (0, 1, 2):
        pe.el = el
        pe.count({INST: 1 << (4 * el), CYC: 1 << (4 * el)})
    want = (0 if filt & FU else 1) + (0 if filt & FP else 16) + (256 if filt & NSH else 0)
    assert cnt(pe, 0) == want
    assert r(pe, "PMCCNTR_EL0") == want


def test_el3_filter_bits_are_res0() -> None:
    # NSK/NSU/M need EL3, which is not implemented: they read as 0 (spec §4, §5.6)
    pe = mk()
    w(pe, "PMEVTYPER0_EL0", (1 << 29) | (1 << 28) | (1 << 26) | INST)
    assert r(pe, "PMEVTYPER0_EL0") == INST


# ---------------------------------------------------------------- HPMD / HCCD / DP (§5.3, §5.5)

def test_hpmd_prohibits_first_range_at_el2_only() -> None:
    pe = mk()
    program(pe, {i: NSH | INST for i in range(6)}, hpmn=3, mdcr=HPME | HPMD)
    pe.el = 2
    pe.count({INST: 5})
    assert [cnt(pe, i) for i in range(6)] == [0, 0, 0, 5, 5, 5]
    pe.el = 1
    pe.count({INST: 1})
    assert [cnt(pe, i) for i in range(6)] == [1, 1, 1, 6, 6, 6]


def test_hpmd_is_res0_before_pmuv3p1() -> None:
    """spec §2/§11: HPMD is PMUv3p1; §5.3 EL2 rule needs PMUv3p1."""
    pe = mk(pmuver="V3")
    program(pe, {0: NSH | INST}, mdcr=HPMD)
    assert not r(pe, "MDCR_EL2") & HPMD
    pe.el = 2
    pe.count({INST: 5})
    assert cnt(pe, 0) == 5


@pytest.mark.parametrize("dp", [0, 1])
def test_cycle_counter_stops_under_hpmd_only_with_dp(dp: int) -> None:
    """spec §5.5: HPMD stops PMCCNTR at EL2 only with PMCR.DP = 1."""
    pe = mk()
    program(pe, {}, mdcr=HPMD, pmcr=E | DP * dp, cnten=C, ccfiltr=NSH)
    pe.el = 2
    pe.count({CYC: 100})
    assert r(pe, "PMCCNTR_EL0") == (0 if dp else 100)
    pe.el = 1
    pe.count({CYC: 1})
    assert r(pe, "PMCCNTR_EL0") == (1 if dp else 101)


@pytest.mark.parametrize("dp", [0, 1])
def test_hccd_stops_cycle_counter_at_el2_whatever_dp(dp: int) -> None:
    pe = mk()
    program(pe, {0: NSH | CYC}, mdcr=HCCD, pmcr=E | DP * dp, cnten=1 | C, ccfiltr=NSH)
    pe.el = 2
    pe.count({CYC: 100})
    assert r(pe, "PMCCNTR_EL0") == 0
    assert cnt(pe, 0) == 100  # the CPU_CYCLES event is not affected by HCCD (spec §10)
    pe.el = 1
    pe.count({CYC: 3})
    assert r(pe, "PMCCNTR_EL0") == 3


def test_hccd_is_res0_before_pmuv3p5() -> None:
    """spec §2/§11: HCCD is PMUv3p5."""
    pe = mk(pmuver="V3P4")
    program(pe, {}, mdcr=HCCD, cnten=C, ccfiltr=NSH)
    pe.el = 2
    pe.count({CYC: 4})
    assert r(pe, "PMCCNTR_EL0") == 4


def test_dp_with_hpmn_zero_uses_would_be_first_range_conditions() -> None:
    # spec §5.5 / §9: with HPMN = 0, DP still stops PMCCNTR under HPMD at EL2
    pe = mk()
    program(pe, {}, hpmn=0, mdcr=HPMD, pmcr=E | DP, cnten=C, ccfiltr=NSH)
    pe.el = 2
    pe.count({CYC: 9})
    assert r(pe, "PMCCNTR_EL0") == 0


# ---------------------------------------------------------------- freeze on overflow (§5.4)

def test_fzo_freezes_first_range_only() -> None:
    pe = mk(pmuver="V3P7")
    program(pe, {0: INST, 1: INST, 4: INST}, hpmn=3, mdcr=HPME, pmcr=E | FZO | DP,
            cnten=0b10011 | C)
    w(pe, "PMEVCNTR0_EL0", M32)
    pe.el = 1
    pe.count({INST: 1, CYC: 1})  # counter 0 overflows: flag set at the end of the block
    assert r(pe, "PMOVSSET_EL0") == 1
    pe.count({INST: 10, CYC: 10})
    assert cnt(pe, 0) == 1 << 32 and cnt(pe, 1) == 1  # frozen after the first block
    assert cnt(pe, 4) == 11  # second range unaffected by FZO
    assert r(pe, "PMCCNTR_EL0") == 1  # DP = 1: the cycle counter freezes too
    w(pe, "PMOVSCLR_EL0", 1)
    pe.count({INST: 1})
    assert cnt(pe, 1) == 2


def test_fzo_cycle_counter_keeps_counting_without_dp() -> None:
    """spec §5.4/§5.5: freeze stops PMCCNTR only with DP = 1."""
    pe = mk(pmuver="V3P7")
    program(pe, {0: INST}, pmcr=E | FZO, cnten=1 | C)
    w(pe, "PMOVSSET_EL0", 1)
    pe.el = 1
    pe.count({INST: 5, CYC: 5})
    assert cnt(pe, 0) == 0 and r(pe, "PMCCNTR_EL0") == 5


def test_cycle_counter_overflow_does_not_freeze() -> None:
    # ShouldPMUFreeze never looks at the cycle counter's flag (spec §5.4)
    pe = mk(pmuver="V3P7")
    program(pe, {0: INST}, pmcr=E | FZO, cnten=1 | C)
    w(pe, "PMOVSSET_EL0", C)
    pe.el = 1
    pe.count({INST: 5})
    assert cnt(pe, 0) == 5


def test_hpmfzo_freezes_second_range_only() -> None:
    """spec §5.4: HPMFZO freezes R2 on an R2 overflow flag."""
    pe = mk(pmuver="V3P7")
    program(pe, {0: INST | NSH, 4: INST | NSH, 5: INST | NSH}, hpmn=3, mdcr=HPME | HPMFZO)
    w(pe, "PMOVSSET_EL0", 1 << 5)
    pe.el = 2
    pe.count({INST: 5})
    assert [cnt(pe, 0), cnt(pe, 4), cnt(pe, 5)] == [5, 0, 0]


def test_freeze_is_res0_before_pmuv3p7() -> None:
    """spec §2/§3/§11: FZO and HPMFZO are PMUv3p7."""
    pe = mk(pmuver="V3P5")
    program(pe, {0: INST, 4: INST}, hpmn=3, mdcr=HPME | HPMFZO, pmcr=E | FZO)
    assert not r(pe, "PMCR_EL0") & FZO and not r(pe, "MDCR_EL2") & HPMFZO
    w(pe, "PMOVSSET_EL0", 0b10001)
    pe.el = 1
    pe.count({INST: 5})
    assert cnt(pe, 0) == 5 and cnt(pe, 4) == 5


# ---------------------------------------------------------------- cycle counter (spec §6)

def test_cycle_counter_64_bit_without_aarch32() -> None:
    pe = mk(aarch32=False)
    assert r(pe, "PMCR_EL0") & LC  # LC is RES1 without AArch32 (spec §3)
    program(pe, {}, pmcr=E, cnten=C)
    assert r(pe, "PMCR_EL0") & LC
    w(pe, "PMCCNTR_EL0", M32)
    pe.el = 1
    pe.count({CYC: 1})
    assert r(pe, "PMCCNTR_EL0") == 1 << 32 and r(pe, "PMOVSSET_EL0") == 0
    w(pe, "PMCCNTR_EL0", M64)
    pe.count({CYC: 2})
    assert r(pe, "PMCCNTR_EL0") == 1 and r(pe, "PMOVSSET_EL0") == C


def test_cycle_counter_32_bit_overflow_with_aarch32_lc0() -> None:
    """spec §6 cycle counter: 32-bit overflow with AArch32 and LC = 0."""
    pe = mk(aarch32=True)
    program(pe, {}, pmcr=E, cnten=C)  # LC = 0
    w(pe, "PMCCNTR_EL0", M32)
    pe.el = 1
    pe.count({CYC: 1})
    # the counter is still 64-bit; the overflow flag is set by the carry out of bit 31
    assert r(pe, "PMCCNTR_EL0") == 1 << 32 and r(pe, "PMOVSSET_EL0") == C


def test_cycle_counter_divider() -> None:
    """spec §3 PMCR.D, §6: one increment per 64 cycles, ignored when LC = 1."""
    pe = mk(aarch32=True)
    program(pe, {}, pmcr=E | D, cnten=C)
    pe.el = 1
    pe.count({CYC: 63})
    assert r(pe, "PMCCNTR_EL0") == 0
    pe.count({CYC: 1})
    assert r(pe, "PMCCNTR_EL0") == 1
    pe.count({CYC: 64 * 10 + 5})
    assert r(pe, "PMCCNTR_EL0") == 11
    assert pe.events_to_overflow(31) == ((1 << 32) - 11) * 64 - 5
    w(pe, "PMCR_EL0", E | D | LC)  # D is ignored when LC = 1
    pe.count({CYC: 10})
    assert r(pe, "PMCCNTR_EL0") == 21


def test_d_and_lc_res1_without_aarch32() -> None:
    """spec §3: D needs AArch32, LC is RES1 without it."""
    pe = mk(aarch32=False)
    program(pe, {}, pmcr=E | D, cnten=C)
    pe.el = 1
    pe.count({CYC: 10})
    assert r(pe, "PMCCNTR_EL0") == 10


# ---------------------------------------------------------------- instruction counter

def test_instruction_counter() -> None:
    pe = mk(pmuver="V3P9", icntr=True)
    program(pe, {}, mdcr=HPMD, pmcr=E, cnten=F0)
    w(pe, "PMICFILTR_EL0", NSH)
    pe.el = 1
    pe.count({INST: 10, CYC: 5})
    assert r(pe, "PMICNTR_EL0") == 10
    pe.el = 2
    pe.count({INST: 10})  # HPMD prohibits PMICNTR at EL2 (spec §2)
    assert r(pe, "PMICNTR_EL0") == 10
    w(pe, "PMCR_EL0", E | P | CC)  # not reset by P or C (spec §3)
    assert r(pe, "PMICNTR_EL0") == 10
    w(pe, "PMICNTR_EL0", M64 - 1)
    w(pe, "MDCR_EL2", 6)
    pe.count({INST: 1})
    assert r(pe, "PMOVSSET_EL0") == 0
    pe.count({INST: 1})
    assert r(pe, "PMICNTR_EL0") == 0 and r(pe, "PMOVSSET_EL0") == F0  # 64-bit only
    w(pe, "PMZR_EL0", F0)
    assert r(pe, "PMICNTR_EL0") == 0


# ---------------------------------------------------------------- resets (spec §3, §6)

def test_pmcr_p_from_el1_does_not_reset_second_range() -> None:
    pe = mk()
    program(pe, {}, hpmn=4, mdcr=HPME)
    for i in range(6):
        w(pe, f"PMEVCNTR{i}_EL0", 100 + i)
    w(pe, "PMCCNTR_EL0", 77)
    w(pe, "PMOVSSET_EL0", 0b111111)
    pe.el = 1
    assert pe.write("PMCR_EL0", E | P).ok
    assert [cnt(pe, i) for i in range(6)] == [0, 0, 0, 0, 104, 105]
    assert r(pe, "PMCCNTR_EL0") == 77  # P does not reset the cycle counter
    assert r(pe, "PMOVSSET_EL0") == 0b111111  # flags unchanged
    pe.el = 2
    assert pe.write("PMCR_EL0", E | P | CC).ok
    assert [cnt(pe, i) for i in range(6)] == [0] * 6
    assert r(pe, "PMCCNTR_EL0") == 0
    assert not r(pe, "PMCR_EL0") & (P | CC)  # P and C read as zero
    assert r(pe, "PMOVSSET_EL0") == 0b111111


def test_pmcr_p_at_el0_resets_first_range() -> None:
    """spec §3 PMCR.P: accessible counters only (ARM §D13.11.1)."""
    pe = mk()
    program(pe, {}, hpmn=2, mdcr=HPME)
    for i in range(6):
        w(pe, f"PMEVCNTR{i}_EL0", 5)
    w(pe, "PMUSERENR_EL0", 1)
    pe.el = 0
    assert pe.write("PMCR_EL0", E | P).ok
    assert [cnt(pe, i) for i in range(6)] == [0, 0, 5, 5, 5, 5]


def test_pmzr_masked_to_accessible_counters() -> None:
    """spec §6 resets: PMZR masked like PMCNTEN writes; flags unchanged."""
    pe = mk(pmuver="V3P9")
    program(pe, {}, hpmn=4, mdcr=HPME)
    for i in range(6):
        w(pe, f"PMEVCNTR{i}_EL0", 5)
    w(pe, "PMCCNTR_EL0", 5)
    w(pe, "PMOVSSET_EL0", 0b111111)
    pe.el = 1
    assert pe.write("PMZR_EL0", 0b110101 | C).ok
    assert [cnt(pe, i) for i in range(6)] == [0, 5, 0, 5, 5, 5]
    assert r(pe, "PMCCNTR_EL0") == 0 and r(pe, "PMOVSSET_EL0") == 0b111111


# ---------------------------------------------------------------- SW_INCR (spec §6)

def test_pmswinc_masked_to_accessible_counters() -> None:
    pe = mk()
    program(pe, {i: NSH | SWINC for i in range(6)}, hpmn=3, mdcr=HPME)
    pe.el = 1
    assert pe.write("PMSWINC_EL0", 0x7FFFFFFF).ok
    assert [cnt(pe, i) for i in range(6)] == [1, 1, 1, 0, 0, 0]
    pe.el = 2
    assert pe.write("PMSWINC_EL0", 0b101010).ok
    assert [cnt(pe, i) for i in range(6)] == [1, 2, 1, 1, 0, 1]


def test_pmswinc_counts_only_sw_incr_counters_that_count_here() -> None:
    """spec §6 SW_INCR: evtCount 0 and CountPMUEvents at the writing EL; §8.3 SW."""
    pe = mk()
    program(pe, {0: SWINC, 1: INST, 2: FP | SWINC, 3: SWINC}, cnten=0b0111)
    w(pe, "PMUSERENR_EL0", 2)  # SW: EL0 may write PMSWINC
    pe.el = 1
    pe.write("PMSWINC_EL0", 0b1111)
    assert [cnt(pe, i) for i in range(4)] == [1, 0, 0, 0]  # P filters EL1, 3 disabled
    pe.el = 0
    assert pe.write("PMSWINC_EL0", 0b1111).ok
    assert [cnt(pe, i) for i in range(4)] == [2, 0, 1, 0]


def test_sw_incr_and_chain_cannot_be_retired() -> None:
    """spec §6: SW_INCR and CHAIN are generated by the PE."""
    pe = mk()
    program(pe, {0: SWINC})
    pe.el = 1
    for ev in ("SW_INCR", "CHAIN", 0, 0x1E):
        with pytest.raises(ValueError, match=r"generated by the PE"):
            pe.count({ev: 1})
    w(pe, "PMCNTENCLR_EL0", 1)
    with pytest.raises(ValueError, match=r"generated by the PE"):
        pe.count({"SW_INCR": 1})


def test_pmswinc_overflow_chains() -> None:
    """spec §6: an SW_INCR overflow of an even counter feeds CHAIN."""
    pe = mk(pmuver="V3P1")
    program(pe, {0: SWINC, 1: CHAIN})
    w(pe, "PMEVCNTR0_EL0", M32)
    pe.el = 1
    pe.write("PMSWINC_EL0", 1)
    assert cnt(pe, 0) == 0 and cnt(pe, 1) == 1 and r(pe, "PMOVSSET_EL0") == 1



def test_pmswinc_overflow_chains_with_its_flag_already_set() -> None:
    """spec §6, ARM §J1.1.1.47: CHAIN follows the carry out of the even counter, not a change
    of PMOVSSET, so a second SW_INCR overflow with the flag still set chains too (a stale
    flag in hardware, as a v8 guest's PMOVSCLR write leaves it, once dropped it here)."""
    pe = mk(pmuver="V3P1")
    program(pe, {0: SWINC, 1: CHAIN})
    w(pe, "PMOVSSET_EL0", 1)
    w(pe, "PMEVCNTR0_EL0", M32)
    pe.el = 1
    pe.write("PMSWINC_EL0", 1)
    assert cnt(pe, 0) == 0 and cnt(pe, 1) == 1 and r(pe, "PMOVSSET_EL0") == 1
    w(pe, "PMEVCNTR0_EL0", M32)
    pe.el = 1
    pe.write("PMSWINC_EL0", 1)
    assert cnt(pe, 1) == 2


# ---------------------------------------------------------------- widths (spec §6)

def test_counters_are_32_bit_before_pmuv3p5() -> None:
    pe = mk(pmuver="V3P4")
    program(pe, {0: INST})
    w(pe, "PMEVCNTR0_EL0", (1 << 40) | 5)
    assert cnt(pe, 0) == 5
    w(pe, "PMEVCNTR0_EL0", M32 - 1)
    pe.el = 1
    pe.count({INST: 3})
    assert cnt(pe, 0) == 1 and r(pe, "PMOVSSET_EL0") == 1
    assert not r(pe, "PMCR_EL0") & LP  # LP is RES0 before PMUv3p5
    assert not r(pe, "MDCR_EL2") & HLP


@pytest.mark.parametrize("lp", [0, 1])
@pytest.mark.parametrize("hlp", [0, 1])
def test_lp_first_range_hlp_second_range(lp: int, hlp: int) -> None:
    """spec §6: overflow at bit 32 or 64 by LP (R1) / HLP (R2); IFYVTD upper bits count."""
    pe = mk()
    program(pe, {0: INST, 4: INST}, hpmn=3, mdcr=HPME | HLP * hlp, pmcr=E | LP * lp)
    w(pe, "PMEVCNTR0_EL0", M32)
    w(pe, "PMEVCNTR4_EL0", M32)
    pe.el = 1
    pe.count({INST: 1})
    # with LP/HLP = 0 the carry out of bit 31 overflows, yet bits [63:32] still count
    assert cnt(pe, 0) == 1 << 32 and cnt(pe, 4) == 1 << 32
    assert r(pe, "PMOVSSET_EL0") == (0 if lp else 1) | (0 if hlp else 1 << 4)
    w(pe, "PMOVSCLR_EL0", ~0 & M64 >> 31)
    w(pe, "PMEVCNTR0_EL0", M64)
    w(pe, "PMEVCNTR4_EL0", M64)
    pe.count({INST: 1})
    assert cnt(pe, 0) == 0 and cnt(pe, 4) == 0
    assert r(pe, "PMOVSSET_EL0") == 0b10001  # carry out of bit 63 is a carry out of bit 31


def test_lp_does_not_apply_to_second_range() -> None:
    """spec §3 LP is R1 only; §6 R2 uses HLP."""
    pe = mk()
    program(pe, {4: INST}, hpmn=3, mdcr=HPME, pmcr=E | LP)
    assert pe.events_to_overflow(4) == 1 << 32
    w(pe, "PMCR_EL0", E)
    w(pe, "MDCR_EL2", 3 | HPME | HLP)
    assert pe.events_to_overflow(4) == 1 << 64


# ---------------------------------------------------------------- CHAIN (spec §6)

def test_chain_counts_every_even_overflow_in_one_block() -> None:
    pe = mk(pmuver="V3P1")
    program(pe, {2: INST, 3: CHAIN})
    w(pe, "PMEVCNTR2_EL0", M32 - 9)
    pe.el = 1
    pe.count({INST: 10 + 5 * (1 << 32) + 3})
    assert cnt(pe, 2) == 3 and cnt(pe, 3) == 6
    assert r(pe, "PMOVSSET_EL0") == 1 << 2


def test_chain_only_from_even_counters_and_only_with_lp0() -> None:
    """spec §6 CHAIN: even counters, lp == 0; even counters never count CHAIN."""
    pe = mk()
    program(pe, {1: INST, 2: CHAIN, 4: INST, 5: CHAIN}, pmcr=E | LP)
    w(pe, "PMEVCNTR1_EL0", M32)
    w(pe, "PMEVCNTR4_EL0", M64)
    pe.el = 1
    pe.count({INST: 1})
    # odd counter 1 never chains; even counter 2 never counts CHAIN; LP=1: no chain 4 -> 5
    assert cnt(pe, 2) == 0 and cnt(pe, 5) == 0
    assert r(pe, "PMOVSSET_EL0") == 1 << 4  # counter 1 at LP=1 did not overflow


def test_chain_needs_the_odd_counter_to_count() -> None:
    """spec §6 CHAIN: counted only if counter idx+1 passes CountPMUEvents."""
    pe = mk(pmuver="V3P1")
    program(pe, {0: INST, 1: FP | CHAIN})  # the odd counter filters EL1
    w(pe, "PMEVCNTR0_EL0", M32)
    pe.el = 1
    pe.count({INST: 1})
    assert cnt(pe, 1) == 0
    pe.el = 0
    w(pe, "PMEVCNTR0_EL0", M32)
    pe.count({INST: 1})
    assert cnt(pe, 1) == 1


def test_chained_odd_counter_overflows() -> None:
    """spec §6: the odd counter overflows like any counter (no further CHAIN)."""
    pe = mk(pmuver="V3P1")
    program(pe, {0: INST, 1: CHAIN})
    w(pe, "PMEVCNTR0_EL0", M32)
    w(pe, "PMEVCNTR1_EL0", M32)
    pe.el = 1
    pe.count({INST: 1})
    assert cnt(pe, 0) == 0 and cnt(pe, 1) == 0 and r(pe, "PMOVSSET_EL0") == 0b11


def test_chain_not_generated_for_last_counter_when_n_is_odd() -> None:
    # spec §6: a CHAIN goes to idx+1 only if idx+1 < N
    pe = mk(n=5, pmuver="V3P1")
    program(pe, {4: INST})
    w(pe, "PMEVCNTR4_EL0", M32)
    pe.el = 1
    pe.count({INST: 1})
    assert r(pe, "PMOVSSET_EL0") == 1 << 4


@pytest.mark.parametrize("policy", list(ChainStraddle))
def test_chain_straddling_hpmn_policy(policy: ChainStraddle) -> None:
    # HPMN odd: counter pair (HPMN-1, HPMN) straddles the ranges; CONSTRAINED UNPREDICTABLE
    """spec §6 CHAIN straddling HPMN, §9 odd HPMN: policy chain_straddle."""
    pe = mk(pmuver="V3P1", policies=Policies(chain_straddle=policy))
    program(pe, {2: INST | NSH, 3: CHAIN | NSH, 0: INST | NSH, 1: CHAIN | NSH}, hpmn=3,
            mdcr=HPME)
    w(pe, "PMEVCNTR2_EL0", M32)
    w(pe, "PMEVCNTR0_EL0", M32)
    pe.el = 1
    pe.count({INST: 1})
    assert cnt(pe, 3) == (1 if policy is ChainStraddle.COUNT else 0)
    assert cnt(pe, 1) == 1  # a pair inside the first range always chains


@pytest.mark.parametrize("policy", list(FreezeChain))
@pytest.mark.parametrize("second", [False, True])
def test_freeze_chain_policy(policy: FreezeChain, second: bool) -> None:
    # With FZO/HPMFZO = 1 and LP/HLP = 0, whether CHAIN observes the overflow that freezes
    # the range is CONSTRAINED UNPREDICTABLE (spec §6)
    pe = mk(pmuver="V3P7", policies=Policies(freeze_chain=policy))
    base = 2 if second else 0
    program(pe, {base: INST, base + 1: CHAIN}, hpmn=2, mdcr=HPME | HPMFZO,
            pmcr=E | FZO)
    w(pe, f"PMEVCNTR{base}_EL0", M32)
    pe.el = 1
    pe.count({INST: 1})
    assert r(pe, "PMOVSSET_EL0") == 1 << base
    assert cnt(pe, base + 1) == (1 if policy is FreezeChain.OBSERVES else 0)


# ---------------------------------------------------------------- PMUIRQ (spec §7)

def test_pmuirq_level_and_gates() -> None:
    pe = mk()
    program(pe, {0: INST, 4: INST}, hpmn=3, mdcr=HPME)
    w(pe, "PMINTENSET_EL1", 0b10001)
    assert not pe.pmuirq
    w(pe, "PMOVSSET_EL0", 1 << 4)
    assert pe.pmuirq  # R2 flag, HPME = 1
    w(pe, "MDCR_EL2", 3)
    assert not pe.pmuirq  # R2 signals only with HPME = 1
    w(pe, "PMOVSSET_EL0", 1)
    assert pe.pmuirq  # R1 flag with PMCR.E = 1
    w(pe, "PMCR_EL0", 0)
    assert not pe.pmuirq
    w(pe, "PMCR_EL0", E)
    w(pe, "PMINTENCLR_EL1", 1)
    assert not pe.pmuirq  # PMINTEN gates
    w(pe, "PMOVSSET_EL0", C)
    assert not pe.pmuirq
    w(pe, "PMINTENSET_EL1", C)
    assert pe.pmuirq  # cycle counter: PMCR.E
    w(pe, "PMOVSCLR_EL0", M64 >> 31)
    assert not pe.pmuirq


def test_pmuirq_ignores_pmuserenr() -> None:
    pe = mk()
    program(pe, {0: INST})
    w(pe, "PMINTENSET_EL1", 1)
    w(pe, "PMEVCNTR0_EL0", M32)
    pe.el = 0
    pe.count({INST: 1})
    assert pe.pmuirq  # spec §7: PMUSERENR never affects overflow behaviour


def test_overflow_listener_reports_new_flags() -> None:
    seen: list[int] = []
    pe = mk()
    pe.overflow_listener = seen.append
    program(pe, {0: INST, 1: INST})
    w(pe, "PMEVCNTR0_EL0", M32)
    w(pe, "PMOVSSET_EL0", 0b10)
    pe.el = 1
    pe.count({INST: 1})
    pe.count({INST: 1})
    assert seen == [0b01]


# ---------------------------------------------------------------- events and count() itself

def test_unsupported_event_is_not_counted_and_reads_back() -> None:
    pe = PE(6, "V3P1", events=frozenset({0x08, 0x11}))
    program(pe, {0: MEM, 1: 0x300})
    pe.el = 1
    pe.count({MEM: 5, 0x300: 5})
    assert cnt(pe, 0) == 0 and cnt(pe, 1) == 0
    assert r(pe, "PMEVTYPER1_EL0") == 0x300  # default policy: what was written (spec §4)


@pytest.mark.parametrize(("ver", "ev", "zeroed"), [
    ("V3P1", 0x300, True),  # pre-p8, outside 0x0000-0x003F: UNKNOWN -> policy
    ("V3P1", 0x30, False),  # pre-p8 common range: reads back as written
    ("V3P8", 0x300, False),  # PMUv3p8: reads back as written
])
def test_unknown_readback_zero_policy(ver: str, ev: int, zeroed: bool) -> None:
    """spec §4: unsupported evtCount read-back (ARM §D24.5.12)."""
    pe = PE(6, ver, events=frozenset({0x08}),
            policies=Policies(unknown_readback=UnknownReadback.ZERO))
    w(pe, "PMEVTYPER0_EL0", ev)
    assert r(pe, "PMEVTYPER0_EL0") == (0 if zeroed else ev)


def test_evtcount_is_10_bit_before_pmuv3p1() -> None:
    """spec §4/§11: evtCount[15:10] needs PMUv3p1."""
    pe = PE(6, "V3")
    w(pe, "PMEVTYPER0_EL0", 0x4008)
    assert r(pe, "PMEVTYPER0_EL0") == 0x0008


def test_count_argument_errors() -> None:
    """DESIGN.md decision 2: misuse of count() raises, naming the event."""
    pe = mk()
    with pytest.raises(ValueError, match=r"unknown PMU event 'INST_RETRIED'.*INST_RETIRED"):
        pe.count({"INST_RETRIED": 1})
    with pytest.raises(ValueError, match=r"must be >= 0, not -1"):
        pe.count({"INST_RETIRED": -1})
    with pytest.raises(TypeError):
        pe.count({"INST_RETIRED": 1.5})  # type: ignore[dict-item]
    pe.count({"INST_RETIRED": 0})


def test_count_cost_does_not_depend_on_counts() -> None:
    # DESIGN.md decision 5: arithmetic, not a loop.  10**30 events (far more than any loop
    # could do) with overflow and CHAIN, exact.
    pe = mk(pmuver="V3P1")
    program(pe, {0: INST, 1: CHAIN})
    pe.el = 1
    k = 10**30
    pe.count({INST: k})
    assert cnt(pe, 0) == k % (1 << 32) and cnt(pe, 1) == (k >> 32) % (1 << 32)


def test_events_to_overflow() -> None:
    """spec §6 overflow points (32/64-bit), §5.2 enables."""
    pe = mk()
    program(pe, {0: INST, 1: INST}, hpmn=1, mdcr=0, cnten=0b11 | C)
    w(pe, "PMEVCNTR0_EL0", M32 - 4)
    pe.el = 1
    assert pe.events_to_overflow(0) == 5
    assert pe.events_to_overflow(1) is None  # second range disabled (HPME = 0)
    assert pe.events_to_overflow(31) == 1 << 64  # no AArch32: 64-bit cycle counter
    pe.count({INST: 4})
    assert r(pe, "PMOVSSET_EL0") == 0
    pe.count({INST: 1})
    assert r(pe, "PMOVSSET_EL0") == 1
    with pytest.raises(ValueError, match=r"counter index"):
        pe.events_to_overflow(6)


def test_snapshot_matches_el2_reads() -> None:
    """spec §3/§8: the snapshot is the state EL2 reads."""
    pe = mk()
    program(pe, {0: INST})
    pe.el = 1
    pe.count({INST: 3, CYC: 2})
    s = pe.snapshot()
    assert s.evcntr[0] == 3 and s.pmcnten == 1 and s.pmcr == r(pe, "PMCR_EL0")


def test_events_to_overflow_none_while_frozen() -> None:
    pe = mk(pmuver="V3P7")
    program(pe, {0: INST}, pmcr=E | FZO | DP, cnten=1 | C)
    pe.el = 1
    assert pe.events_to_overflow(0) == 1 << 32
    w(pe, "PMOVSSET_EL0", 1)  # first range frozen (spec §5.4), PMCCNTR too with DP = 1
    assert pe.events_to_overflow(0) is None and pe.events_to_overflow(31) is None
    w(pe, "PMCR_EL0", E | FZO)
    assert pe.events_to_overflow(31) == 1 << 64


def test_pmswinc_at_el0_with_uen_follows_pmuacr_unless_sw() -> None:
    # spec §6 SW_INCR / §8.3: at EL0 with {UEN,SW} = {1,0} the written value is ANDed with
    # PMUACR_EL1; with SW = 1 it is not
    pe = mk(pmuver="V3P9")
    program(pe, {0: SWINC, 1: SWINC})
    w(pe, "PMUACR_EL1", 0b01)
    w(pe, "PMUSERENR_EL0", 16)  # UEN
    pe.el = 0
    assert pe.write("PMSWINC_EL0", 0b11).ok
    assert [cnt(pe, 0), cnt(pe, 1)] == [1, 0]
    w(pe, "PMUSERENR_EL0", 16 | 2)  # UEN, SW
    assert pe.write("PMSWINC_EL0", 0b11).ok
    assert [cnt(pe, 0), cnt(pe, 1)] == [2, 1]


def test_vhe_host_el0_counts_with_u_filter() -> None:
    # a VHE host's EL0 is EL0 for the filters (spec §5.6): U decides
    pe = mk()
    program(pe, {0: INST, 1: FU | INST})
    w(pe, "HCR_EL2", (1 << 27) | (1 << 34))
    pe.el = 0
    pe.count({INST: 4})
    assert [cnt(pe, 0), cnt(pe, 1)] == [4, 0]


def test_unknown_reset_policy() -> None:
    pe = mk(policies=Policies(unknown_reset=0x1234))
    assert cnt(pe, 0) == 0x1234 and r(pe, "PMCCNTR_EL0") == 0x1234
    assert not r(pe, "PMCR_EL0") & E  # E resets to 0 whatever the policy (spec §3)


@pytest.mark.parametrize("policy", ["applies", "ignored"])
def test_chain_filter_policy(policy: str) -> None:
    # spec §6 (ARM §D14.3): the PE may ignore the CHAIN counter's own filter
    pe = mk(pmuver="V3P1", policies=Policies.from_mapping({"chain_filter": policy}))
    program(pe, {0: INST, 1: FP | CHAIN})  # the odd counter filters EL1
    w(pe, "PMEVCNTR0_EL0", M32)
    pe.el = 1
    pe.count({INST: 1})
    assert cnt(pe, 1) == (1 if policy == "ignored" else 0)
    w(pe, "PMCNTENCLR_EL0", 0b10)  # the enable still applies whatever the policy
    w(pe, "PMEVCNTR0_EL0", M32)
    pe.count({INST: 1})
    assert cnt(pe, 1) == (1 if policy == "ignored" else 0)
