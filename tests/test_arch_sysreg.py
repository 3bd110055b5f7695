"""The register table (spec §2-§4, §8.5-§8.6): the validating loader, lookups, field views
and decoding.  Expectations come from the spec's layout tables, not from the loader."""

from __future__ import annotations

import re

import pytest

from pmupart.arch import (
    BY_ENCODING,
    BY_NAME,
    MDCR_EL2,
    PMCR_EL0,
    REGISTERS,
    decode,
    lookup,
    lookup_encoding,
    view,
)
from pmupart.arch.sysreg import parse_table
from pmupart.errors import SysregTableError

GOOD = """\
Sysreg FOO_EL1 3 0 9 14 1
Res0 63:8
Field 7:4 A
Field 3 B
Res1 2
Field 1:0 C
EndSysreg
"""


def _bad(text: str, line: int, pattern: str) -> None:
    with pytest.raises(SysregTableError) as ei:
        parse_table(text, "t.txt")
    assert ei.value.line == line
    assert str(ei.value).startswith(f"t.txt:{line}: ")
    assert re.search(pattern, str(ei.value)), str(ei.value)


# ---------------------------------------------------------------- loader validation

def test_good_table_parses() -> None:
    """issue 2 / style §1.10: the table grammar."""
    (r,) = parse_table(GOOD, "t.txt")
    assert r.name == "FOO_EL1" and r.encoding == (3, 0, 9, 14, 1)
    assert [f.name for f in r.named_fields()] == ["A", "B", "C"]
    assert r.res1_mask() == 0b100


def test_loader_rejects_overlapping_fields() -> None:
    """style §1.10 generator rules: no overlap (file:line)."""
    text = GOOD.replace("Field 3 B", "Field 4 B")  # overlaps A (7:4)
    _bad(text, 4, r"starts at bit 4, not 3")


def test_loader_rejects_gaps() -> None:
    """style §1.10 generator rules: no gap."""
    text = GOOD.replace("Field 3 B\n", "")  # bit 3 left out
    _bad(text, 4, r"starts at bit 2, not 3")


def test_loader_rejects_unspecified_low_bits() -> None:
    """style §1.10: fields cover 63..0."""
    text = GOOD.replace("Field 1:0 C\n", "")
    _bad(text, 6, r"bits 1:0 unspecified")


@pytest.mark.parametrize("bits", ["64", "64:60", "3:5", "x"])
def test_loader_rejects_bits_outside_0_63(bits: str) -> None:
    """style §1.10: bits within 0..63."""
    text = GOOD.replace("Res0 63:8", f"Res0 {bits}")
    _bad(text, 2, r"bit range")


def test_loader_rejects_enum_value_that_does_not_fit() -> None:
    """style §1.10: enum values fit their field."""
    text = GOOD.replace("Field 7:4 A\n", "Enum 7:4 A\n  0b0001 ONE\n  0b10000 TOO_BIG\nEndEnum\n")
    _bad(text, 5, r"enum value 0b10000 of A does not fit in 4 bits")


def test_loader_rejects_missing_endsysreg_before_next_register() -> None:
    """style §1.10: block nesting."""
    text = GOOD.replace("EndSysreg\n", "") + GOOD.replace("FOO_EL1 3 0 9 14 1", "BAR 3 0 9 14 2")
    _bad(text, 7, r"missing EndSysreg")


def test_loader_rejects_missing_endsysreg_at_end_of_file() -> None:
    """style §1.10: block nesting."""
    _bad(GOOD.replace("EndSysreg\n", ""), 1, r"FOO_EL1: missing EndSysreg")


def test_loader_rejects_duplicate_encodings() -> None:
    """DESIGN.md decision 1: one register per encoding."""
    text = GOOD + GOOD.replace("FOO_EL1", "BAR_EL1")
    _bad(text, 8, r"BAR_EL1 has the encoding of FOO_EL1 \(S3_0_C9_C14_1\)")


def test_loader_rejects_duplicate_names() -> None:
    """DESIGN.md decision 1: registers defined once."""
    text = GOOD + GOOD.replace("14 1", "14 2")
    _bad(text, 8, r"FOO_EL1 defined twice")


def test_loader_rejects_duplicate_field_names() -> None:
    """style §1.10: field names unique in a register."""
    text = GOOD.replace("Field 3 B", "Field 3 A")
    _bad(text, 4, r"field A defined twice")


@pytest.mark.parametrize("enc", ["4 0 9 14 1", "3 8 9 14 1", "3 0 16 14 1", "3 0 9 14 8"])
def test_loader_rejects_encodings_out_of_range(enc: str) -> None:
    # op0 is 2 bits, op1/op2 3 bits, CRn/CRm 4 bits.
    """spec §4 encodings: op0 2 bits, op1/op2 3 bits, CRn/CRm 4 bits."""
    _bad(GOOD.replace("3 0 9 14 1", enc), 1, r"out of range")


def test_loader_rejects_unknown_directive_and_option() -> None:
    """style §1.10: the table grammar is closed."""
    _bad(GOOD.replace("Res1 2", "Bogus 2"), 5, r"unknown directive 'Bogus'")
    _bad(GOOD.replace("Field 3 B", "Field 3 B XX"), 4, r"unknown field option 'XX'")


def test_loader_rejects_field_outside_block() -> None:
    """style §1.10: block nesting."""
    _bad("Field 3 B\n", 1, r"outside a Sysreg block")


def test_family_needs_index() -> None:
    """spec §4: <n> families carry their n range."""
    text = GOOD.replace("FOO_EL1", "FOO<n>_EL1")
    _bad(text, 1, r"needs 'Index lo hi'")


def test_family_expands_with_encodings() -> None:
    """spec §4: n = CRm[1:0]:op2 encoding of <n> families."""
    text = GOOD.replace("FOO_EL1 3 0 9 14 1", "FOO<n>_EL1 3 3 14 8+n/8 n%8").replace(
        "Res0 63:8", "Index 0 9\nRes0 63:8")
    regs = parse_table(text, "t.txt")
    assert [r.name for r in regs] == [f"FOO{n}_EL1" for n in range(10)]
    assert regs[9].encoding == (3, 3, 14, 9, 1)
    assert all(r.index == n for n, r in enumerate(regs))


# ---------------------------------------------------------------- the shipped table

def test_shipped_table_has_every_required_register() -> None:
    # spec §2-§4 and §8 list these registers (issue 2).
    names = {"PMCR_EL0", "PMCNTENSET_EL0", "PMCNTENCLR_EL0", "PMOVSSET_EL0", "PMOVSCLR_EL0",
             "PMINTENSET_EL1", "PMINTENCLR_EL1", "PMSELR_EL0", "PMXEVCNTR_EL0",
             "PMXEVTYPER_EL0", "PMCCNTR_EL0", "PMCCFILTR_EL0", "PMSWINC_EL0", "PMUSERENR_EL0",
             "PMCEID0_EL0", "PMCEID1_EL0", "PMMIR_EL1", "PMZR_EL0", "PMUACR_EL1",
             "PMICNTR_EL0", "PMICFILTR_EL0", "MDCR_EL2", "HDFGRTR_EL2", "HDFGWTR_EL2",
             "HDFGRTR2_EL2", "HDFGWTR2_EL2", "HCR_EL2", "ID_AA64DFR0_EL1", "ID_AA64DFR1_EL1",
             "ID_AA64MMFR0_EL1"}
    names |= {f"PMEVCNTR{n}_EL0" for n in range(31)} | {f"PMEVTYPER{n}_EL0" for n in range(31)}
    assert names <= set(BY_NAME)
    assert len(BY_ENCODING) == len(REGISTERS)


@pytest.mark.parametrize(("name", "enc"), [
    ("MDCR_EL2", (3, 4, 1, 1, 1)),  # spec §2
    ("PMCR_EL0", (3, 3, 9, 12, 0)),  # spec §3
    ("PMCCFILTR_EL0", (3, 3, 14, 15, 7)),  # spec §4
    ("PMUSERENR_EL0", (3, 3, 9, 14, 0)),
    ("PMSWINC_EL0", (3, 3, 9, 12, 4)),
    ("HDFGRTR_EL2", (3, 4, 3, 1, 4)),  # spec §8.5
    ("HDFGWTR_EL2", (3, 4, 3, 1, 5)),
    ("HDFGRTR2_EL2", (3, 4, 3, 1, 0)),  # spec §8.6
    ("HDFGWTR2_EL2", (3, 4, 3, 1, 1)),
])
def test_encodings_match_spec(name: str, enc: tuple[int, int, int, int, int]) -> None:
    assert lookup(name).encoding == enc
    assert lookup_encoding(*enc) is lookup(name)


@pytest.mark.parametrize("n", range(31))
def test_counter_family_encodings(n: int) -> None:
    # spec §4: PMEVCNTR<n> is C14_C{8..11}, PMEVTYPER<n> C14_C{12..15}, n = CRm[1:0]:op2
    assert lookup(f"PMEVCNTR{n}_EL0").encoding == (3, 3, 14, 8 + n // 8, n % 8)
    assert lookup(f"PMEVTYPER{n}_EL0").encoding == (3, 3, 14, 12 + n // 8, n % 8)


@pytest.mark.parametrize(("reg", "field", "msb", "lsb"), [
    # spec §2 MDCR_EL2
    ("MDCR_EL2", "HPMN", 4, 0), ("MDCR_EL2", "TPMCR", 5, 5), ("MDCR_EL2", "TPM", 6, 6),
    ("MDCR_EL2", "HPME", 7, 7), ("MDCR_EL2", "HPMD", 17, 17), ("MDCR_EL2", "HCCD", 23, 23),
    ("MDCR_EL2", "HLP", 26, 26), ("MDCR_EL2", "MTPME", 28, 28), ("MDCR_EL2", "HPMFZO", 29, 29),
    ("MDCR_EL2", "PMSSE", 31, 30), ("MDCR_EL2", "HPMFZS", 36, 36), ("MDCR_EL2", "PMEE", 41, 40),
    # spec §3 PMCR_EL0
    ("PMCR_EL0", "E", 0, 0), ("PMCR_EL0", "P", 1, 1), ("PMCR_EL0", "C", 2, 2),
    ("PMCR_EL0", "D", 3, 3), ("PMCR_EL0", "X", 4, 4), ("PMCR_EL0", "DP", 5, 5),
    ("PMCR_EL0", "LC", 6, 6), ("PMCR_EL0", "LP", 7, 7), ("PMCR_EL0", "FZO", 9, 9),
    ("PMCR_EL0", "N", 15, 11), ("PMCR_EL0", "IMP", 31, 24), ("PMCR_EL0", "FZS", 32, 32),
    # spec §4
    ("PMEVTYPER7_EL0", "P", 31, 31), ("PMEVTYPER7_EL0", "U", 30, 30),
    ("PMEVTYPER7_EL0", "NSH", 27, 27), ("PMEVTYPER7_EL0", "MT", 25, 25),
    ("PMUSERENR_EL0", "EN", 0, 0), ("PMUSERENR_EL0", "SW", 1, 1), ("PMUSERENR_EL0", "CR", 2, 2),
    ("PMUSERENR_EL0", "ER", 3, 3), ("PMUSERENR_EL0", "UEN", 4, 4), ("PMUSERENR_EL0", "IR", 5, 5),
    ("PMUSERENR_EL0", "TID", 6, 6), ("PMSELR_EL0", "SEL", 4, 0),
    ("PMCNTENSET_EL0", "C", 31, 31), ("PMCNTENSET_EL0", "F0", 32, 32),
    ("PMCNTENSET_EL0", "P", 30, 0),
    ("ID_AA64DFR0_EL1", "PMUVer", 11, 8), ("ID_AA64DFR0_EL1", "HPMN0", 63, 60),
    ("ID_AA64DFR1_EL1", "PMICNTR", 39, 36), ("ID_AA64MMFR0_EL1", "FGT", 59, 56),
    ("HCR_EL2", "TGE", 27, 27), ("HCR_EL2", "E2H", 34, 34),
    # spec §8.5 (both registers) and §8.6
    ("HDFGRTR_EL2", "PMEVCNTRn_EL0", 12, 12), ("HDFGRTR_EL2", "PMEVTYPERn_EL0", 13, 13),
    ("HDFGRTR_EL2", "PMCCFILTR_EL0", 14, 14), ("HDFGRTR_EL2", "PMCCNTR_EL0", 15, 15),
    ("HDFGRTR_EL2", "PMCNTEN", 16, 16), ("HDFGRTR_EL2", "PMINTEN", 17, 17),
    ("HDFGRTR_EL2", "PMOVS", 18, 18), ("HDFGRTR_EL2", "PMSELR_EL0", 19, 19),
    ("HDFGRTR_EL2", "PMMIR_EL1", 22, 22), ("HDFGRTR_EL2", "PMUSERENR_EL0", 57, 57),
    ("HDFGRTR_EL2", "PMCEIDn_EL0", 58, 58), ("HDFGWTR_EL2", "PMSWINC_EL0", 20, 20),
    ("HDFGWTR_EL2", "PMCR_EL0", 21, 21), ("HDFGWTR_EL2", "PMUSERENR_EL0", 57, 57),
    ("HDFGRTR2_EL2", "nPMICNTR_EL0", 2, 2), ("HDFGRTR2_EL2", "nPMICFILTR_EL0", 3, 3),
    ("HDFGRTR2_EL2", "nPMUACR_EL1", 4, 4), ("HDFGWTR2_EL2", "nPMZR_EL0", 21, 21),
])
def test_field_positions_match_spec(reg: str, field: str, msb: int, lsb: int) -> None:
    """spec §2, §3, §4, §8.5, §8.6 layout tables."""
    f = lookup(reg).field(field)
    assert (f.msb, f.lsb) == (msb, lsb)


def test_fgt_read_register_has_no_write_only_fields() -> None:
    # spec §8.5: PMSWINC and PMCR are RES0 in HDFGRTR_EL2; PMMIR is RES0 in HDFGWTR_EL2.
    rd = {f.name for f in lookup("HDFGRTR_EL2").named_fields()}
    wr = {f.name for f in lookup("HDFGWTR_EL2").named_fields()}
    assert "PMSWINC_EL0" not in rd and "PMCR_EL0" not in rd
    assert "PMMIR_EL1" not in wr and "PMCEIDn_EL0" not in wr


# ---------------------------------------------------------------- lookup

def test_lookup_is_case_insensitive_and_accepts_generic_names() -> None:
    """DESIGN.md decision 1: lookup by name and by encoding."""
    assert lookup("mdcr_el2") is BY_NAME["MDCR_EL2"]
    assert lookup("S3_4_C1_C1_1") is BY_NAME["MDCR_EL2"]
    assert lookup(" pmevcntr30_el0 ").index == 30
    assert BY_NAME["MDCR_EL2"].s_name == "S3_4_C1_C1_1"


def test_lookup_unknown_name_suggests() -> None:
    with pytest.raises(ValueError, match=r"unknown system register 'MDCR_EL3'.*did you mean "
                                         r"'MDCR_EL2'"):
        lookup("MDCR_EL3")
    with pytest.raises(ValueError, match=r"unknown system register 'PMEVCNTR31_EL0'"):
        lookup("PMEVCNTR31_EL0")  # n runs 0..30 only (spec §1)
    with pytest.raises(TypeError):
        lookup(3)  # type: ignore[arg-type]


def test_lookup_encoding_unknown_is_none() -> None:
    """DESIGN.md decision 1: lookup by encoding."""
    assert lookup_encoding(3, 7, 15, 15, 7) is None


# ---------------------------------------------------------------- views and decode

def test_view_fields_and_replace() -> None:
    """issue 2: immutable field views (MDCR_EL2(v).HPMN, .replace)."""
    v = MDCR_EL2((1 << 17) | (1 << 7) | 4)
    assert (v.HPMN, v.HPME, v.HPMD, v.TPM) == (4, 1, 1, 0)
    w = v.replace(HPMN=3, TPM=True)
    assert (w.HPMN, w.TPM, w.HPMD) == (3, 1, 1)
    assert v.HPMN == 4  # immutable: replace makes a new view
    assert int(w) == (1 << 17) | (1 << 7) | (1 << 6) | 3
    assert w == view("MDCR_EL2", int(w)) and hash(w) == hash(view("MDCR_EL2", int(w)))


def test_view_is_immutable() -> None:
    """issue 2: field views are immutable."""
    v = PMCR_EL0(1)
    with pytest.raises(AttributeError, match=r"immutable"):
        v.E = 0  # type: ignore[misc]


def test_replace_errors() -> None:
    """issue 2: misuse names the field, its width and the value."""
    v = MDCR_EL2(0)
    with pytest.raises(ValueError, match=r"MDCR_EL2.HPMN is 5 bits wide \(0..31\), not 32"):
        v.replace(HPMN=32)
    with pytest.raises(ValueError, match=r"not -1"):
        v.replace(HPME=-1)
    with pytest.raises(ValueError, match=r"has no field 'HPNM'.*did you mean 'HPMN'"):
        v.replace(HPNM=1)
    with pytest.raises(ValueError, match=r"has no field"):
        _ = v.NOPE


def test_view_rejects_values_wider_than_64_bits() -> None:
    """issue 2: a value wider than the register is misuse."""
    with pytest.raises(ValueError, match=r"must fit in 64 bits"):
        MDCR_EL2(1 << 64)
    with pytest.raises(ValueError, match=r"non-negative"):
        MDCR_EL2(-1)


def test_decode_text() -> None:
    # most significant field first; single bits by name, wide fields NAME=v
    """issue 2 / style §1.10: decode to 'HPME|HPMD|HPMN=4', unknown bits in hex."""
    assert decode("MDCR_EL2", (1 << 17) | (1 << 7) | 4) == "HPMD|HPME|HPMN=4"
    assert decode("MDCR_EL2", 0) == "0"
    # unknown (not modelled) bits in hex
    assert decode("MDCR_EL2", (1 << 7) | (1 << 63)) == "HPME|0x8000000000000000"
    # enum names
    assert decode("ID_AA64DFR0_EL1", 0b0110 << 8) == "PMUVer=V3P5"
    assert decode("PMCR_EL0", (6 << 11) | 1) == "N=6|E"
    assert decode("PMEVTYPER3_EL0", (1 << 27) | 0x11) == "NSH|evtCount=0x11"  # 8+ bits: hex


def test_counter_name_tables_follow_the_register_table() -> None:
    """EVCNTR_NAMES/EVTYPER_NAMES[n] is the family member with index n, and 31 the cycle
    counter's register (ARM §D24.5.2)."""
    from pmupart.arch.sysreg import BY_NAME, EVCNTR_NAMES, EVTYPER_NAMES

    for n in range(31):
        assert BY_NAME[EVCNTR_NAMES[n]].index == n == BY_NAME[EVTYPER_NAMES[n]].index
        assert BY_NAME[EVCNTR_NAMES[n]].family == "PMEVCNTR<n>_EL0"
        assert BY_NAME[EVTYPER_NAMES[n]].family == "PMEVTYPER<n>_EL0"
    assert (EVCNTR_NAMES[31], EVTYPER_NAMES[31]) == ("PMCCNTR_EL0", "PMCCFILTR_EL0")
