"""Access checks (spec §8): sweeps over every N in 0..31 and every HPMN in 0..N, PMUSERENR
gating at EL0, TPM/TPMCR, each fine-grained trap bit, EL2-only and absent-feature registers.

Every expectation below is written from the spec's rules, independently of pmupart.arch.pe.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pmupart.arch import PE, NoFgtCounterAccess, NoFgtUnimplementedAccess, Outcome, Policies

pytestmark = pytest.mark.filterwarnings("ignore:what-if PE")

OK, UNDEF, TRAP1, TRAP2 = Outcome.OK, Outcome.UNDEFINED, Outcome.TRAP_EL1, Outcome.TRAP_EL2
C = 1 << 31
F0 = 1 << 32
ALL = (1 << 33) - 1
# PMUSERENR_EL0 bits (spec §4)
EN, SW, CR, ER, UEN, IR, TID = 1, 2, 4, 8, 16, 32, 64
# MDCR_EL2 bits (spec §2)
TPMCR, TPM, HPME = 1 << 5, 1 << 6, 1 << 7
# HCR_EL2 (spec §8.1 ELIsInHost)
TGE, E2H = 1 << 27, 1 << 34


def mk(n: int, *, fgt: bool = True, pmuver: str = "V3P5", **kw: object) -> PE:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PE(num_counters=n, pmuver=pmuver, fgt=fgt, hpmn0=True, **kw)  # type: ignore[arg-type]


def el2(pe: PE, name: str, value: int | None = None) -> int:
    """Access at EL2 (always permitted for these registers, spec §8.1 step 4)."""
    with pe.at_el(2):
        if value is None:
            a = pe.read(name)
            assert a.outcome is OK and a.value is not None
            return a.value
        assert pe.write(name, value).outcome is OK
        return 0


def set_hpmn(pe: PE, h: int, extra: int = 0) -> None:
    el2(pe, "MDCR_EL2", h | extra)


@contextmanager
def at(pe: PE, el: int) -> Iterator[PE]:
    with pe.at_el(el):
        yield pe


# ---------------------------------------------------------------- the N x HPMN sweep

def expected_counter_access(n_ctr: int, N: int, h: int, el: int, fgt: bool,
                            pol_acc: NoFgtCounterAccess,
                            pol_unimpl: NoFgtUnimplementedAccess) -> str:
    """Outcome of a PMEVCNTR/PMEVTYPER/PMXEV* access to counter n_ctr (spec §8.1 steps 1 and
    f, §8.2): 'OK', 'UNDEF', 'TRAP2' or 'RAZWI'."""
    if n_ctr >= N:
        if fgt or pol_unimpl is NoFgtUnimplementedAccess.UNDEFINED:
            return "UNDEF"
        return "RAZWI"
    if el == 2:
        return "OK"
    if n_ctr >= h:  # GetNumEventCountersAccessible() = HPMN at EL0/EL1 (spec §1)
        if fgt or pol_acc is NoFgtCounterAccess.TRAP_EL2:
            return "TRAP2"
        return "UNDEF" if pol_acc is NoFgtCounterAccess.UNDEFINED else "RAZWI"
    return "OK"


def _check_counter_access(pe: PE, name: str, idx: int, el: int, want: str) -> None:
    marker = 0x5A5A0000 + idx
    r = pe.read(name)
    if want == "OK":
        assert r.outcome is OK, (name, el, r)
    elif want == "RAZWI":
        assert r == type(r)(OK, 0), (name, el, r)
    else:
        assert r.outcome is (UNDEF if want == "UNDEF" else TRAP2), (name, el, want, r)
        assert r.value is None
    w = pe.write(name, marker)
    if want in ("OK", "RAZWI"):
        assert w.outcome is OK, (name, el, w)
    else:
        assert w.outcome is (UNDEF if want == "UNDEF" else TRAP2), (name, el, want, w)


def sweep(N: int, fgt: bool, pol_acc: NoFgtCounterAccess,
          pol_unimpl: NoFgtUnimplementedAccess) -> None:
    pols = Policies(no_fgt_counter_access=pol_acc, no_fgt_unimplemented=pol_unimpl)
    pe = mk(N, fgt=fgt, policies=pols)
    impl = (1 << N) - 1
    for h in range(N + 1):
        set_hpmn(pe, h, HPME)
        el2(pe, "PMUSERENR_EL0", EN)
        for el in (0, 1, 2):
            acc = h if el <= 1 else N
            with pe.at_el(el):
                # spec §1/§3: accessible() and PMCR_EL0.N as read at this EL
                assert pe.accessible() == acc
                assert (pe.read("PMCR_EL0").value or 0) >> 11 & 0x1F == acc
                # RAZ/WI bits of the bitmap registers (spec §8.2, ARM §J1.3.1.98)
                mask = ((1 << acc) - 1) | C
                bitmaps = ["PMCNTEN", "PMOVS"] + (["PMINTEN"] if el >= 1 else [])
                for b in bitmaps:
                    suf = "_EL1" if b == "PMINTEN" else "_EL0"
                    el2(pe, b + "CLR" + suf, ALL)
                    assert pe.write(b + "SET" + suf, ALL).ok
                    assert el2(pe, b + "SET" + suf) == mask & (impl | C), (b, N, h, el)
                    el2(pe, b + "SET" + suf, ALL)
                    assert pe.read(b + "SET" + suf).value == mask & (impl | C)
                    assert pe.read(b + "CLR" + suf).value == mask & (impl | C)
                    assert pe.write(b + "CLR" + suf, ALL).ok
                    assert el2(pe, b + "SET" + suf) == (impl | C) & ~mask, (b, N, h, el)
                if el == 0:
                    assert pe.read("PMINTENSET_EL1").outcome is UNDEF  # spec §4
                # counter-indexed registers: direct and through PMSELR
                for n_ctr in range(31):
                    want = expected_counter_access(n_ctr, N, h, el, fgt, pol_acc, pol_unimpl)
                    for name in (f"PMEVCNTR{n_ctr}_EL0", f"PMEVTYPER{n_ctr}_EL0"):
                        _check_counter_access(pe, name, n_ctr, el, want)
                    assert pe.write("PMSELR_EL0", n_ctr).ok  # any SEL can be written (§4)
                    for name in ("PMXEVCNTR_EL0", "PMXEVTYPER_EL0"):
                        _check_counter_access(pe, name, n_ctr, el, want)
                # SEL = 31: PMXEVTYPER is PMCCFILTR (exempt from the index checks);
                # PMXEVCNTR is counter 31 >= N (spec §4, §8.2)
                assert pe.write("PMSELR_EL0", 31).ok
                assert pe.read("PMXEVTYPER_EL0").outcome is OK
                want31 = expected_counter_access(31, N, h, el, fgt, pol_acc, pol_unimpl)
                _check_counter_access(pe, "PMXEVCNTR_EL0", 31, el, want31)


@pytest.mark.parametrize("N", range(32))
def test_sweep_with_fgt(N: int) -> None:
    """spec §1, §3 (PMCR_EL0.N), §8.1 steps 1/f, §8.2 (FEAT_FGT: trap to EL2 / UNDEFINED)."""
    sweep(N, True, NoFgtCounterAccess.TRAP_EL2, NoFgtUnimplementedAccess.UNDEFINED)


@pytest.mark.parametrize("pol_unimpl", list(NoFgtUnimplementedAccess))
@pytest.mark.parametrize("pol_acc", list(NoFgtCounterAccess))
@pytest.mark.parametrize("N", [0, 1, 2, 5, 6, 7, 20, 30, 31])
def test_sweep_without_fgt(N: int, pol_acc: NoFgtCounterAccess,
                           pol_unimpl: NoFgtUnimplementedAccess) -> None:
    """spec §8.2 without FEAT_FGT: each CONSTRAINED UNPREDICTABLE choice as a policy."""
    sweep(N, False, pol_acc, pol_unimpl)


@pytest.mark.parametrize("N", range(32))
def test_sweep_without_fgt_default_policies(N: int) -> None:
    # Every N without FGT under the default policies (a trap to EL2, UNDEFINED above N).
    """spec §8.2 without FEAT_FGT, default policies, every N."""
    p = Policies()
    sweep(N, False, p.no_fgt_counter_access, p.no_fgt_unimplemented)


def test_raz_wi_counter_keeps_its_value() -> None:
    # spec §8.2 RAZ/WI choice without FGT: the write is ignored, EL2 still sees the value.
    pe = mk(6, fgt=False, policies=Policies(no_fgt_counter_access=NoFgtCounterAccess.RAZ_WI))
    set_hpmn(pe, 4)
    el2(pe, "PMEVCNTR5_EL0", 77)
    pe.el = 1
    assert pe.read("PMEVCNTR5_EL0") == type(pe.read("PMEVCNTR5_EL0"))(OK, 0)
    assert pe.write("PMEVCNTR5_EL0", 1).ok
    assert el2(pe, "PMEVCNTR5_EL0") == 77


# ---------------------------------------------------------------- HPMN edge cases (spec §9)

@pytest.mark.parametrize(("hpmn", "policy", "eff"), [
    (0, "clamp", 1), (7, "clamp", 6), (31, "clamp", 6),
    (0, "as-n", 6), (9, "as-n", 6),
    (0, "all-reserved", 0), (9, "all-reserved", 0),
])
def test_reserved_hpmn_policies(hpmn: int, policy: str, eff: int) -> None:
    # HPMN = 0 without FEAT_HPMN0, or HPMN > N: CONSTRAINED UNPREDICTABLE, a named policy.
    """spec §9, §1 EffectiveHPMN (ARM §J1.3.1.95): reserved HPMN values."""
    pe = PE(6, "V3P5", fgt=True, policies=Policies.from_mapping({"reserved_hpmn": policy}))
    set_hpmn(pe, hpmn)
    assert pe.hpmn_constrained_unpredictable
    assert pe.hpmn == eff
    assert pe.accessible(1) == eff and pe.accessible(2) == 6
    with pe.at_el(1):
        assert (pe.read("PMCR_EL0").value or 0) >> 11 & 0x1F == eff


def test_hpmn_zero_with_hpmn0_is_legal() -> None:
    pe = PE(6, "V3P5", fgt=True, hpmn0=True)
    set_hpmn(pe, 0)
    assert not pe.hpmn_constrained_unpredictable and pe.hpmn == 0
    pe.el = 1
    # spec §9: only PMCCNTR (and PMICNTR) accessible; every event counter traps with FGT
    assert pe.read("PMCCNTR_EL0").ok
    assert all(pe.read(f"PMEVCNTR{i}_EL0").outcome is TRAP2 for i in range(6))


def test_no_el2_means_all_counters_accessible() -> None:
    """spec §1: without EL2, hpmn = N; spec §2: MDCR_EL2 absent."""
    pe = PE(6, "V3P1", el2=False)
    assert pe.hpmn == 6 and pe.accessible(0) == 6
    assert pe.read("MDCR_EL2").outcome is UNDEF
    with pytest.raises(ValueError, match=r"PE.el must be an exception level 0..1"):
        pe.el = 2


def test_policy_from_mapping_errors() -> None:
    """DESIGN.md decision 3: policies are named; bad names are misuse."""
    with pytest.raises(ValueError, match=r"unknown policy 'nope'"):
        Policies.from_mapping({"nope": 1})
    with pytest.raises(ValueError, match=r"policy reserved_hpmn must be one of"):
        Policies.from_mapping({"reserved_hpmn": "sideways"})


# ---------------------------------------------------------------- PMUSERENR gating (spec §8.3)

# (register, read bits, write bits) that grant EL0 access before PMUv3p9 (spec §8.3);
# None: the direction is UNDEFINED (RO/WO register, or never at EL0).
EL0_GRANTS: list[tuple[str, set[int] | None, set[int] | None]] = [
    ("PMCR_EL0", {EN}, {EN}),
    ("PMCNTENSET_EL0", {EN}, {EN}), ("PMCNTENCLR_EL0", {EN}, {EN}),
    ("PMOVSSET_EL0", {EN}, {EN}), ("PMOVSCLR_EL0", {EN}, {EN}),
    ("PMEVTYPER2_EL0", {EN}, {EN}), ("PMXEVTYPER_EL0", {EN}, {EN}),
    ("PMCCFILTR_EL0", {EN}, {EN}),
    ("PMCEID0_EL0", {EN}, None), ("PMCEID1_EL0", {EN}, None),
    ("PMEVCNTR2_EL0", {EN, ER}, {EN}), ("PMXEVCNTR_EL0", {EN, ER}, {EN}),
    ("PMSELR_EL0", {EN, ER}, {EN, ER}),
    ("PMCCNTR_EL0", {EN, CR}, {EN}),
    ("PMSWINC_EL0", None, {EN, SW}),
]


@pytest.mark.parametrize("tge", [False, True])
@pytest.mark.parametrize(("name", "rd", "wr"), EL0_GRANTS)
def test_pmuserenr_gating_at_el0(name: str, rd: set[int] | None, wr: set[int] | None,
                                 tge: bool) -> None:
    pe = mk(6)
    set_hpmn(pe, 6)
    el2(pe, "PMSELR_EL0", 2)
    if tge:  # a VHE host's EL0: the gate's trap goes to EL2 (spec §8.1 step 2b)
        el2(pe, "HCR_EL2", TGE | E2H)
    trap = TRAP2 if tge else TRAP1
    for bits in range(16):  # EN/SW/CR/ER in every combination
        el2(pe, "PMUSERENR_EL0", bits)
        pe.el = 0
        for grant, direction in ((rd, False), (wr, True)):
            got = (pe.write(name, 0) if direction else pe.read(name)).outcome
            if grant is None:
                assert got is UNDEF
            else:
                assert got is (OK if any(bits & g for g in grant) else trap), \
                    (name, direction, bits, got)
        pe.el = 2


def test_el0_always_undefined() -> None:
    """spec §4 (PMUSERENR writes, PMINTEN* UNDEFINED at EL0), §2 (MDCR_EL2), §8.3."""
    pe = mk(6)
    el2(pe, "PMUSERENR_EL0", EN | SW | CR | ER)
    pe.el = 0
    assert pe.read("PMUSERENR_EL0").ok  # reads always allowed at EL0
    assert pe.write("PMUSERENR_EL0", 0).outcome is UNDEF
    for name in ("PMINTENSET_EL1", "PMINTENCLR_EL1", "PMMIR_EL1", "MDCR_EL2", "HCR_EL2",
                 "HDFGRTR_EL2", "ID_AA64DFR0_EL1"):
        assert pe.read(name).outcome is UNDEF, name


def test_pmuserenr_uen_on_pmuv3p9() -> None:
    # spec §8.3: with UEN=1, EN is ignored; PMUACR_EL1 bits gate each counter (RAZ/WI);
    # PMCR_EL0 still traps; ER/CR make counter writes ignored; SW bypasses PMUACR for PMSWINC.
    pe = mk(6, pmuver="V3P9")
    set_hpmn(pe, 6)
    el2(pe, "PMEVCNTR1_EL0", 11)
    el2(pe, "PMEVCNTR2_EL0", 22)
    el2(pe, "PMCCNTR_EL0", 33)
    el2(pe, "PMCNTENSET_EL0", 0b110 | C)
    el2(pe, "PMUACR_EL1", 0b10 | C)  # counter 1 and the cycle counter
    el2(pe, "PMUSERENR_EL0", UEN)
    pe.el = 0
    assert pe.read("PMCR_EL0").outcome is TRAP1
    assert pe.read("PMEVCNTR1_EL0").value == 11
    assert pe.read("PMEVCNTR2_EL0") == type(pe.read("PMEVCNTR2_EL0"))(OK, 0)  # RAZ
    assert pe.write("PMEVCNTR2_EL0", 5).ok and el2(pe, "PMEVCNTR2_EL0") == 22  # WI
    assert pe.read("PMCNTENSET_EL0").value == 0b10 | C  # only PMUACR-enabled bits show
    assert pe.read("PMCCNTR_EL0").value == 33
    assert pe.write("PMEVCNTR1_EL0", 12).ok and el2(pe, "PMEVCNTR1_EL0") == 12
    assert pe.write("PMEVTYPER1_EL0", 0x11).ok and el2(pe, "PMEVTYPER1_EL0") == 0x11
    # ER=1: writes of the event counters *and* their type registers are ignored
    # (ARM §D24.5.10/§D24.5.12 "permitted writes ... are ignored if {UEN,ER} == {1,1}")
    el2(pe, "PMUSERENR_EL0", UEN | ER)
    assert pe.write("PMEVCNTR1_EL0", 99).ok and el2(pe, "PMEVCNTR1_EL0") == 12
    el2(pe, "PMSELR_EL0", 1)
    assert pe.write("PMXEVCNTR_EL0", 99).ok and el2(pe, "PMEVCNTR1_EL0") == 12
    assert pe.write("PMEVTYPER1_EL0", 0x08).ok and el2(pe, "PMEVTYPER1_EL0") == 0x11
    assert pe.write("PMXEVTYPER_EL0", 0x08).ok and el2(pe, "PMEVTYPER1_EL0") == 0x11
    assert pe.read("PMEVTYPER1_EL0").value == 0x11
    assert pe.write("PMCCFILTR_EL0", 1 << 31).ok and el2(pe, "PMCCFILTR_EL0") == 1 << 31
    # CR=1: PMCCNTR and PMCCFILTR (also through PMXEVTYPER, SEL = 31) writes ignored
    el2(pe, "PMUSERENR_EL0", UEN | CR)
    assert pe.write("PMCCNTR_EL0", 1).ok and el2(pe, "PMCCNTR_EL0") == 33
    assert pe.write("PMCCFILTR_EL0", 0).ok and el2(pe, "PMCCFILTR_EL0") == 1 << 31
    el2(pe, "PMSELR_EL0", 31)
    assert pe.write("PMXEVTYPER_EL0", 0).ok and el2(pe, "PMCCFILTR_EL0") == 1 << 31
    assert pe.write("PMEVTYPER1_EL0", 0x08).ok and el2(pe, "PMEVTYPER1_EL0") == 0x08
    # PMUSERENR/PMINTEN writes stay UNDEFINED
    assert pe.write("PMUSERENR_EL0", 0).outcome is UNDEF
    # TID=1 traps PMCEID reads, whether EN or UEN grants the access (ARM §D24.5.4)
    for grant in (UEN, EN):
        el2(pe, "PMUSERENR_EL0", grant | TID)
        assert pe.read("PMCEID0_EL0").outcome is TRAP1
        assert pe.read("PMCEID1_EL0").outcome is TRAP1
        assert pe.read("PMCCFILTR_EL0").ok
        el2(pe, "PMUSERENR_EL0", grant)
        assert pe.read("PMCEID0_EL0").ok
    el2(pe, "HCR_EL2", TGE | E2H)  # routed to EL2 under TGE like the other EL0 gates
    el2(pe, "PMUSERENR_EL0", EN | TID)
    assert pe.read("PMCEID0_EL0").outcome is TRAP2


def test_pmuserenr_uen_ignored_before_pmuv3p9() -> None:
    # UEN is a PMUv3p9 field: RES0 before, so EN alone decides (spec §4, §8.3)
    pe = mk(6, pmuver="V3P8")
    el2(pe, "PMUSERENR_EL0", UEN | EN)
    assert el2(pe, "PMUSERENR_EL0") == EN
    pe.el = 0
    assert pe.read("PMCR_EL0").ok


def test_pmicntr_at_el0_needs_uen() -> None:
    pe = mk(6, pmuver="V3P9", icntr=True)
    el2(pe, "PMUSERENR_EL0", EN)
    el2(pe, "PMUACR_EL1", F0)
    pe.el = 0
    assert pe.read("PMICNTR_EL0").outcome is TRAP1  # EN does not enable it (spec §8.3)
    el2(pe, "PMUSERENR_EL0", UEN)
    assert pe.read("PMICNTR_EL0").ok


# ---------------------------------------------------------------- TPM / TPMCR (spec §8.4)

TPM_READ = {"PMCCFILTR_EL0", "PMCCNTR_EL0", "PMCNTENCLR_EL0", "PMCNTENSET_EL0", "PMCR_EL0",
            "PMEVCNTR0_EL0", "PMEVTYPER0_EL0", "PMINTENCLR_EL1", "PMINTENSET_EL1",
            "PMOVSCLR_EL0", "PMOVSSET_EL0", "PMSELR_EL0", "PMUSERENR_EL0",
            "PMXEVCNTR_EL0", "PMXEVTYPER_EL0", "PMCEID0_EL0", "PMCEID1_EL0", "PMMIR_EL1",
            "PMICFILTR_EL0", "PMICNTR_EL0",
            # PMUACR_EL1 at EL1: "elsif EL2Enabled() && MDCR_EL2.TPM == '1' then trap"
            # (ARM §D24.5.25; kernel-code-deltas §2.1)
            "PMUACR_EL1"}
TPM_WRITE = (TPM_READ - {"PMCEID0_EL0", "PMCEID1_EL0", "PMMIR_EL1"}) | {"PMSWINC_EL0",
                                                                        "PMZR_EL0"}
PMU_REGS = sorted(TPM_READ | TPM_WRITE | {"PMUACR_EL1"})
WO = {"PMSWINC_EL0", "PMZR_EL0"}
RO = {"PMCEID0_EL0", "PMCEID1_EL0", "PMMIR_EL1"}


def _full_pe() -> PE:
    return mk(6, pmuver="V3P9", icntr=True, fgt2=True)


@pytest.mark.parametrize("name", PMU_REGS)
def test_tpm_traps_listed_registers(name: str) -> None:
    pe = _full_pe()
    set_hpmn(pe, 6, TPM)
    pe.el = 1
    if name not in WO:
        want = TRAP2 if name in TPM_READ else OK
        assert pe.read(name).outcome is want
    if name not in RO:
        want = TRAP2 if name in TPM_WRITE else OK
        assert pe.write(name, 0).outcome is want
    # TPM does not apply at EL2 (spec §8.1 step 4)
    pe.el = 2
    assert (pe.read(name) if name not in WO else pe.write(name, 0)).outcome is OK


def test_tpmcr_traps_pmcr_only_and_after_pmuserenr() -> None:
    pe = mk(6)
    set_hpmn(pe, 6, TPMCR)
    pe.el = 1
    assert pe.read("PMCR_EL0").outcome is TRAP2
    assert pe.write("PMCR_EL0", 0).outcome is TRAP2
    assert pe.read("PMCNTENSET_EL0").ok and pe.read("PMCCNTR_EL0").ok
    pe.el = 0  # PMUSERENR.EN = 0: the EL0 gate traps to EL1 first (spec §8.4)
    assert pe.read("PMCR_EL0").outcome is TRAP1
    el2(pe, "PMUSERENR_EL0", EN)
    assert pe.read("PMCR_EL0").outcome is TRAP2


def test_tpm_applies_to_vhe_host_el0_and_fgt_does_not() -> None:
    # spec §9: VHE host EL0 (E2H=TGE=1): FGT bits do not apply (ELIsInHost), TPM does.
    pe = mk(6)
    el2(pe, "HCR_EL2", TGE | E2H)
    el2(pe, "PMUSERENR_EL0", EN)
    el2(pe, "HDFGRTR_EL2", 1 << 15)  # PMCCNTR_EL0
    pe.el = 0
    assert pe.read("PMCCNTR_EL0").ok
    set_hpmn(pe, 6, TPM)
    assert pe.read("PMCCNTR_EL0").outcome is TRAP2
    # ... and still limited to HPMN counters (spec §1)
    set_hpmn(pe, 4)
    assert pe.read("PMEVCNTR4_EL0").outcome is TRAP2
    assert pe.accessible() == 4


# ---------------------------------------------------------------- FGT (spec §8.5, §8.6)

# field -> (bit, registers it traps on read, registers it traps on write)
FGT_FIELDS: dict[str, tuple[int, set[str], set[str]]] = {
    "PMEVCNTRn_EL0": (12, {"PMEVCNTR0_EL0", "PMXEVCNTR_EL0"},
                      {"PMEVCNTR0_EL0", "PMXEVCNTR_EL0"}),
    "PMEVTYPERn_EL0": (13, {"PMEVTYPER0_EL0", "PMXEVTYPER_EL0"},
                       {"PMEVTYPER0_EL0", "PMXEVTYPER_EL0"}),
    "PMCCFILTR_EL0": (14, {"PMCCFILTR_EL0"}, {"PMCCFILTR_EL0"}),
    "PMCCNTR_EL0": (15, {"PMCCNTR_EL0"}, {"PMCCNTR_EL0"}),
    "PMCNTEN": (16, {"PMCNTENSET_EL0", "PMCNTENCLR_EL0"}, {"PMCNTENSET_EL0", "PMCNTENCLR_EL0"}),
    "PMINTEN": (17, {"PMINTENSET_EL1", "PMINTENCLR_EL1"}, {"PMINTENSET_EL1", "PMINTENCLR_EL1"}),
    "PMOVS": (18, {"PMOVSSET_EL0", "PMOVSCLR_EL0"}, {"PMOVSSET_EL0", "PMOVSCLR_EL0"}),
    "PMSELR_EL0": (19, {"PMSELR_EL0"}, {"PMSELR_EL0"}),
    "PMSWINC_EL0": (20, set(), {"PMSWINC_EL0"}),
    "PMCR_EL0": (21, set(), {"PMCR_EL0"}),
    "PMMIR_EL1": (22, {"PMMIR_EL1"}, set()),
    "PMUSERENR_EL0": (57, {"PMUSERENR_EL0"}, {"PMUSERENR_EL0"}),
    "PMCEIDn_EL0": (58, {"PMCEID0_EL0", "PMCEID1_EL0"}, set()),
}
FGT_REGS = sorted(set().union(*(r | w for _, r, w in FGT_FIELDS.values())) | {"PMZR_EL0"})


@pytest.mark.parametrize("xsel31", [False, True])
@pytest.mark.parametrize("field", sorted(FGT_FIELDS))
def test_each_fgt_bit_traps_exactly_its_registers(field: str, xsel31: bool) -> None:
    bit, rd, wr = FGT_FIELDS[field]
    pe = mk(6, pmuver="V3P9")
    set_hpmn(pe, 6)
    el2(pe, "PMSELR_EL0", 31 if xsel31 else 0)
    el2(pe, "PMUSERENR_EL0", EN)
    # Set the bit in both registers where it exists; a RES0 bit must not trap anything.
    if rd or field in ("PMSWINC_EL0", "PMCR_EL0"):
        el2(pe, "HDFGRTR_EL2", (1 << bit) if rd else 0)
    if wr or field in ("PMMIR_EL1", "PMCEIDn_EL0"):
        el2(pe, "HDFGWTR_EL2", (1 << bit) if wr else 0)
    for el in (1, 0):
        pe.el = el
        for name in FGT_REGS:
            # EL1 registers are UNDEFINED at EL0; with SEL = 31, PMXEVCNTR names counter
            # 31 >= N: UNDEFINED before any FGT check (spec §8.1 step 1), while PMXEVTYPER
            # is PMCCFILTR yet keeps its own FGT bit (spec §8.5)
            undef = (el == 0 and name.endswith("_EL1")) or \
                (xsel31 and name == "PMXEVCNTR_EL0")
            if name not in WO:
                got = pe.read(name).outcome
                want = UNDEF if undef else TRAP2 if name in rd else OK
                assert got is want, (field, el, name, "read", got)
            if name not in RO:
                keep = {"PMUSERENR_EL0": EN, "PMSELR_EL0": 31 if xsel31 else 0}
                got = pe.write(name, keep.get(name, 0)).outcome
                want = UNDEF if undef or (el == 0 and name == "PMUSERENR_EL0") else \
                    TRAP2 if name in wr else OK
                assert got is want, (field, el, name, "write", got)
        pe.el = 2
        # FGT never traps EL2's own accesses
        for name in FGT_REGS:
            if name not in WO and not (xsel31 and name == "PMXEVCNTR_EL0"):
                assert pe.read(name).outcome is OK


def test_fgt_trap_beats_pmuserenr_pass_and_loses_to_pmuserenr_fail() -> None:
    # spec §8.1: EL0 gate (2b) before FGT (2c)
    pe = mk(6)
    el2(pe, "HDFGRTR_EL2", 1 << 15)
    pe.el = 0
    assert pe.read("PMCCNTR_EL0").outcome is TRAP1
    el2(pe, "PMUSERENR_EL0", CR)
    assert pe.read("PMCCNTR_EL0").outcome is TRAP2


def test_fgt2_traps_icntr_registers() -> None:
    # spec §8.6: polarity 0 = trap
    pe = mk(6, pmuver="V3P9", icntr=True, fgt2=True)
    pe.el = 1
    assert pe.read("PMICNTR_EL0").ok  # boot state: Linux sets the n-bits (no trap)
    assert pe.write("PMUACR_EL1", 0).ok
    # Linux leaves nPMZR_EL0 = 0 (spec §8.6 lists only nPMICNTR/nPMICFILTR/nPMUACR)
    assert pe.write("PMZR_EL0", 0).outcome is TRAP2
    el2(pe, "HDFGWTR2_EL2", el2(pe, "HDFGWTR2_EL2") | (1 << 21))
    assert pe.write("PMZR_EL0", 0).ok
    el2(pe, "HDFGRTR2_EL2", 0)
    el2(pe, "HDFGWTR2_EL2", 0)
    for name in ("PMICNTR_EL0", "PMICFILTR_EL0", "PMUACR_EL1"):
        assert pe.read(name).outcome is TRAP2, name
        assert pe.write(name, 0).outcome is TRAP2, name
    assert pe.write("PMZR_EL0", 0).outcome is TRAP2
    # nPMICFILTR trapping: F0 of PMCNTENSET reads as 0 at EL1
    el2(pe, "PMCNTENSET_EL0", F0)
    assert pe.read("PMCNTENSET_EL0").value == 0
    assert el2(pe, "PMCNTENSET_EL0") == F0


# ---------------------------------------------------------------- EL2-only, absent features

@pytest.mark.parametrize("name", ["MDCR_EL2", "HCR_EL2", "HDFGRTR_EL2", "HDFGWTR_EL2",
                                  "HDFGRTR2_EL2", "HDFGWTR2_EL2"])
def test_el2_registers_undefined_below_el2(name: str) -> None:
    """spec §2 (MDCR_EL2 accessor), §8.5/§8.6 (FGT registers are EL2's)."""
    pe = mk(6, fgt2=True)
    el2(pe, "PMUSERENR_EL0", EN)
    for el in (0, 1):
        pe.el = el
        assert pe.read(name).outcome is UNDEF
        assert pe.write(name, 0).outcome is UNDEF
    pe.el = 2
    assert pe.read(name).ok


@pytest.mark.parametrize(("name", "kw", "present_kw"), [
    ("PMZR_EL0", {"pmuver": "V3P8"}, {"pmuver": "V3P9"}),
    ("PMUACR_EL1", {"pmuver": "V3P8"}, {"pmuver": "V3P9"}),
    ("PMMIR_EL1", {"pmuver": "V3P1"}, {"pmuver": "V3P4"}),
    ("PMICNTR_EL0", {"pmuver": "V3P9"}, {"pmuver": "V3P9", "icntr": True}),
    ("PMICFILTR_EL0", {"pmuver": "V3P9"}, {"pmuver": "V3P9", "icntr": True}),
    ("HDFGRTR_EL2", {"fgt": False}, {"fgt": True}),
    ("HDFGWTR_EL2", {"fgt": False}, {"fgt": True}),
    ("HDFGRTR2_EL2", {}, {"fgt2": True}),
    ("HDFGWTR2_EL2", {}, {"fgt2": True}),
])
def test_absent_feature_registers_undefined(name: str, kw: dict[str, object],
                                            present_kw: dict[str, object]) -> None:
    # spec §8.1 step 0: feature absent -> UNDEFINED at every EL
    for el in (0, 1, 2):
        pe = mk(6, **kw)  # type: ignore[arg-type]
        el2(pe, "PMUSERENR_EL0", EN)
        pe.el = el
        if name not in WO:
            assert pe.read(name).outcome is UNDEF
        else:
            assert pe.write(name, 0).outcome is UNDEF
    pe = mk(6, **present_kw)  # type: ignore[arg-type]
    pe.el = 2
    assert (pe.write(name, 0) if name in WO else pe.read(name)).outcome is OK


def test_ro_wo_directions_undefined() -> None:
    """spec §4 (PMCEID RO, PMSWINC/PMZR WO), §8.1 accessors."""
    pe = mk(6, pmuver="V3P9")
    pe.el = 1
    assert pe.write("PMCEID0_EL0", 0).outcome is UNDEF
    assert pe.write("PMMIR_EL1", 0).outcome is UNDEF
    assert pe.write("ID_AA64DFR0_EL1", 0).outcome is UNDEF
    assert pe.read("PMSWINC_EL0").outcome is UNDEF
    assert pe.read("PMZR_EL0").outcome is UNDEF


# ---------------------------------------------------------------- ID registers, PMCEID (§4, §10)

def test_id_registers() -> None:
    pe = mk(6, pmuver="V3P9", icntr=True, fgt2=True)
    pe.el = 1
    dfr0 = pe.read("ID_AA64DFR0_EL1").value or 0
    assert (dfr0 >> 8) & 0xF == 0b1001 and (dfr0 >> 60) & 0xF == 1
    assert ((pe.read("ID_AA64DFR1_EL1").value or 0) >> 36) & 0xF == 1
    assert ((pe.read("ID_AA64MMFR0_EL1").value or 0) >> 56) & 0xF == 0b0010
    pe = PE(6, "V3")
    pe.el = 1
    assert ((pe.read("ID_AA64DFR0_EL1").value or 0) >> 8) & 0xF == 1
    assert ((pe.read("ID_AA64MMFR0_EL1").value or 0) >> 56) & 0xF == 0


def test_pmceid_advertises_implemented_events() -> None:
    pe = PE(6, "V3P1", events=frozenset({0x00, 0x08, 0x11, 0x1E, 0x21, 0x4001}))
    pe.el = 1
    p0 = pe.read("PMCEID0_EL0").value or 0
    p1 = pe.read("PMCEID1_EL0").value or 0
    # spec §10: SW_INCR -> PMCEID0[0], INST_RETIRED -> [8], CPU_CYCLES -> [17], CHAIN -> [30];
    # 0x21 -> PMCEID1[1]; 0x4001 -> PMCEID0[33]
    assert p0 == (1 << 0) | (1 << 8) | (1 << 17) | (1 << 30) | (1 << 33)
    assert p1 == 1 << 1


# ---------------------------------------------------------------- misuse (library errors)

def test_misuse_raises_value_error() -> None:
    """DESIGN.md decision 2 / issue 2: misuse raises, naming the thing and the rule."""
    pe = PE(6)
    with pytest.raises(ValueError, match=r"unknown system register 'PMCR_EL1'.*PMCR_EL0"):
        pe.read("PMCR_EL1")
    with pytest.raises(ValueError, match=r"PMCR_EL0 must fit in 64 bits"):
        pe.write("PMCR_EL0", 1 << 64)
    with pytest.raises(ValueError, match=r"PE.el must be an exception level 0..2"):
        pe.el = 3
    with pytest.raises(TypeError):
        pe.el = 1.0  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"num_counters .* must be 0..31"):
        PE(32)
    with pytest.raises(ValueError, match=r"PMU version must be one of"):
        PE(6, "V3P6")


# ---------------------------------------------------------------- construction, UNKNOWN read-back

@pytest.mark.filterwarnings("error")
def test_every_catalogue_core_builds_without_what_if_warnings() -> None:
    from pmupart.arch import CORES

    for name, core in CORES.items():
        pe = PE.from_core(name)
        assert pe.num_counters == core.num_counters and pe.hpmn == core.num_counters
        assert pe.fgt == core.fgt and pe.hpmn0 == core.hpmn0
        # Linux boot state (spec §2): HPMN = N, no PMU trap, so EL1 reaches every counter
        pe.el = 1
        assert (pe.read("PMCR_EL0").value or 0) >> 11 & 0x1F == core.num_counters
        if core.num_counters:
            assert pe.read(f"PMEVCNTR{core.num_counters - 1}_EL0").ok


@pytest.mark.parametrize(("kw", "pattern"), [
    ({"num_counters": 0}, r"0 event counters with EL2 needs FEAT_HPMN0"),
    ({"hpmn0": True}, r"FEAT_HPMN0 without FEAT_FGT"),
    ({"fgt2": True}, r"FEAT_FGT2 without FEAT_FGT"),
    ({"icntr": True}, r"FEAT_PMUv3_ICNTR before PMUv3p9"),
])
def test_what_if_combinations_warn(kw: dict[str, object], pattern: str) -> None:
    # DESIGN.md: a combination no shipped core has is a what-if: warn, do not refuse
    args: dict[str, object] = {"num_counters": 6, "pmuver": "V3P5"} | kw
    with pytest.warns(UserWarning, match=pattern):
        PE(**args)  # type: ignore[arg-type]


def test_unknown_readback_zero_for_mdcr_and_pmselr() -> None:
    # spec §9: a CONSTRAINED UNPREDICTABLE HPMN reads back UNKNOWN; spec §8.2: without FGT a
    # SEL >= N (other than 31) reads back UNKNOWN.  Policy ZERO reads 0, WRITTEN the value.
    from pmupart.arch import UnknownReadback

    for pol, hpmn_back, sel_back in ((UnknownReadback.ZERO, 0, 0),
                                     (UnknownReadback.WRITTEN, 9, 20)):
        pe = PE(6, "V3P5", policies=Policies(unknown_readback=pol))
        el2(pe, "MDCR_EL2", 9 | HPME)
        assert el2(pe, "MDCR_EL2") == hpmn_back | HPME
        el2(pe, "PMSELR_EL0", 20)
        assert el2(pe, "PMSELR_EL0") == sel_back
        el2(pe, "PMSELR_EL0", 31)
        assert el2(pe, "PMSELR_EL0") == 31
    pe = PE(6, "V3P5", fgt=True, policies=Policies(unknown_readback=UnknownReadback.ZERO))
    el2(pe, "PMSELR_EL0", 20)
    assert el2(pe, "PMSELR_EL0") == 20  # with FEAT_FGT, SEL reads back as written


# ---------------------------------------------------------------- bitmap masks (ARM §J1.3.1.98-101)

def _icntr_pe() -> PE:
    pe = mk(6, pmuver="V3P9", icntr=True, fgt2=True)
    set_hpmn(pe, 6)
    return pe


def test_f0_hidden_at_el0_without_uen() -> None:
    # GetPMUAccessMask: the instruction counter's bit is accessible at EL0 only with UEN = 1
    """spec §8.3; GetPMUAccessMask (ARM §J1.3.1.98)."""
    pe = _icntr_pe()
    el2(pe, "PMCNTENSET_EL0", F0 | 1)
    el2(pe, "PMUSERENR_EL0", EN)
    pe.el = 0
    assert pe.read("PMCNTENSET_EL0").value == 1
    assert pe.write("PMCNTENCLR_EL0", F0).ok
    assert el2(pe, "PMCNTENSET_EL0") == F0 | 1
    el2(pe, "PMUSERENR_EL0", UEN)
    el2(pe, "PMUACR_EL1", F0 | 1)
    assert pe.read("PMCNTENSET_EL0").value == F0 | 1
    assert pe.write("PMCNTENCLR_EL0", F0).ok
    assert el2(pe, "PMCNTENSET_EL0") == 1


@pytest.mark.parametrize(("bit", "ctl"), [(ER, 0b111), (CR, C), (IR, F0)])
def test_uen_read_only_bits_cover_the_controls(bit: int, ctl: int) -> None:
    # spec §8.3 / GetPMUWriteMask: with UEN = 1, ER/CR/IR make the event counters / cycle
    # counter / instruction counter read-only at EL0, their enable/flag bits included
    pe = _icntr_pe()
    el2(pe, "PMUACR_EL1", F0 | C | 0b111)
    el2(pe, "PMUSERENR_EL0", UEN | bit)
    pe.el = 0
    for reg in ("PMCNTENSET_EL0", "PMOVSSET_EL0"):
        assert pe.write(reg, F0 | C | 0b111).ok
        assert el2(pe, reg) == (F0 | C | 0b111) & ~ctl, reg
        assert pe.read(reg).value == (F0 | C | 0b111) & ~ctl  # reads still see them
        el2(pe, reg, ctl)
        assert pe.write(reg.replace("SET", "CLR"), F0 | C | 0b111).ok
        assert el2(pe, reg) == ctl, reg  # CLR of read-only bits ignored too


def test_fgt2_write_mask_for_f0() -> None:
    # GetPMUWriteMask: F0 controls ignore writes when a write of PMICFILTR would trap
    # (HDFGWTR2.nPMICFILTR = 0); PMZR's F0 follows nPMICNTR; reads follow HDFGRTR2
    """spec §8.6 nPMICFILTR/nPMICNTR; GetPMUReadMask/WriteMask (ARM §J1.3.1.100/101)."""
    pe = _icntr_pe()
    el2(pe, "HDFGWTR2_EL2", (1 << 4) | (1 << 21) | (1 << 2))  # nPMICFILTR = 0 for writes
    pe.el = 1
    assert pe.write("PMCNTENSET_EL0", F0).ok
    assert el2(pe, "PMCNTENSET_EL0") == 0
    el2(pe, "PMCNTENSET_EL0", F0)
    assert pe.read("PMCNTENSET_EL0").value == F0  # HDFGRTR2.nPMICFILTR = 1: visible
    el2(pe, "PMICNTR_EL0", 5)
    assert pe.write("PMZR_EL0", F0).ok and el2(pe, "PMICNTR_EL0") == 0  # nPMICNTR = 1
    el2(pe, "PMICNTR_EL0", 5)
    el2(pe, "HDFGWTR2_EL2", (1 << 4) | (1 << 21) | (1 << 3))  # nPMICNTR = 0
    assert pe.write("PMZR_EL0", F0).ok and el2(pe, "PMICNTR_EL0") == 5
    # a VHE host's EL0 is exempt (HCR_EL2.{E2H,TGE} = {1,1})
    el2(pe, "HDFGRTR2_EL2", 1 << 4)
    assert pe.read("PMCNTENSET_EL0").value == 0
    el2(pe, "HCR_EL2", TGE | E2H)
    el2(pe, "PMUSERENR_EL0", UEN)
    el2(pe, "PMUACR_EL1", F0)
    pe.el = 0
    assert pe.read("PMCNTENSET_EL0").value == F0
