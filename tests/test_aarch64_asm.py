"""The assembler: every instruction form checked against capstone, and its errors."""

from __future__ import annotations

import pytest

capstone = pytest.importorskip("capstone")

from pmupart.guest.aarch64.asm import AsmError, assemble  # noqa: E402

CASES = [
    ("mov x0, #0x3e8", "mov x0, #0x3e8"),
    ("mov x2, #-2", "mov x2, #-2"),
    ("mov w3, #5", "mov w3, #5"),
    ("movz x4, #1, lsl #16", "mov x4, #0x10000"),
    ("movk x4, #2, lsl #32", "movk x4, #2, lsl #32"),
    ("add x6, x6, #1", "add x6, x6, #1"),
    ("add sp, sp, #16", "add sp, sp, #0x10"),
    ("sub x7, x7, #1, lsl #12", "sub x7, x7, #1, lsl #12"),
    ("adds x8, x8, x9", "adds x8, x8, x9"),
    ("subs x0, x0, #1", "subs x0, x0, #1"),
    ("sub x1, x2, x3, lsl #4", "sub x1, x2, x3, lsl #4"),
    ("cmp x0, #3", "cmp x0, #3"),
    ("cmp x1, x2", "cmp x1, x2"),
    ("cmn w1, #1", "cmn w1, #1"),
    ("and x1, x2, x3", "and x1, x2, x3"),
    ("orr w1, w2, w3", "orr w1, w2, w3"),
    ("eor x1, x2, x3", "eor x1, x2, x3"),
    ("ands x1, x2, x3", "ands x1, x2, x3"),
    ("tst x1, x2", "tst x1, x2"),
    ("lsl x1, x2, #3", "lsl x1, x2, #3"),
    ("lsr w1, w2, #3", "lsr w1, w2, #3"),
    ("mul x1, x2, x3", "mul x1, x2, x3"),
    ("mov x1, x2", "mov x1, x2"),
    ("mov x1, sp", "mov x1, sp"),
    ("ldr x1, [x2]", "ldr x1, [x2]"),
    ("ldr x1, [x2, #16]", "ldr x1, [x2, #0x10]"),
    ("ldr w1, [x2, #-4]", "ldur w1, [x2, #-4]"),
    ("ldr x1, [x2, #8]!", "ldr x1, [x2, #8]!"),
    ("str x1, [sp], #16", "str x1, [sp], #0x10"),
    ("str w1, [x3, #4]", "str w1, [x3, #4]"),
    ("strb w1, [x2, #3]", "strb w1, [x2, #3]"),
    ("ldrb w1, [x2]", "ldrb w1, [x2]"),
    ("ldp x1, x2, [sp, #16]", "ldp x1, x2, [sp, #0x10]"),
    ("stp x29, x30, [sp, #-16]!", "stp x29, x30, [sp, #-0x10]!"),
    ("ldp x29, x30, [sp], #16", "ldp x29, x30, [sp], #0x10"),
    ("b 0x1000", "b #0x1000"),
    ("b.ne 0x1000", "b.ne #0x1000"),
    ("b.hs 0x1010", "b.hs #0x1010"),
    ("bl 0x1000", "bl #0x1000"),
    ("cbz x1, 0x1000", "cbz x1, #0x1000"),
    ("cbnz w1, 0x1000", "cbnz w1, #0x1000"),
    ("tbz x1, #40, 0x1000", "tbz x1, #0x28, #0x1000"),
    ("tbnz w1, #3, 0x1000", "tbnz w1, #3, #0x1000"),
    ("br x1", "br x1"),
    ("blr x2", "blr x2"),
    ("ret", "ret"),
    ("ret x3", "ret x3"),
    ("adr x5, 0x1100", "adr x5, #0x1100"),
    ("mrs x0, PMCR_EL0", "mrs x0, pmcr_el0"),
    ("msr PMEVTYPER5_EL0, x1", "msr pmevtyper5_el0, x1"),
    ("mrs x3, PMEVCNTR30_EL0", "mrs x3, pmevcntr30_el0"),
    ("msr pmccfiltr_el0, x2", "msr pmccfiltr_el0, x2"),
    ("msr PMINTENSET_EL1, x2", "msr pmintenset_el1, x2"),
    ("msr MDCR_EL2, x2", "msr mdcr_el2, x2"),
    ("mrs x1, vbar_el1", "mrs x1, vbar_el1"),
    ("mrs x1, S3_3_C9_C12_0", "mrs x1, pmcr_el0"),
    ("msr daifclr, #2", "msr daifclr, #2"),
    ("msr daifset, #0xf", "msr daifset, #0xf"),
    ("dmb ish", "dmb ish"),
    ("dsb sy", "dsb sy"),
    ("isb", "isb"),
    ("eret", "eret"),
    ("svc #1", "svc #1"),
    ("hvc #0", "hvc #0"),
    ("brk #3", "brk #3"),
    ("wfi", "wfi"),
    ("nop", "nop"),
    ("udf #0", "udf #0"),
]


@pytest.mark.parametrize(("src", "expected"), CASES)
def test_encoding_matches_capstone(src: str, expected: str) -> None:
    a = assemble(src, base=0x1000)
    cs = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    insns = list(cs.disasm(a.code, 0x1000))
    assert len(insns) == 1, src
    assert f"{insns[0].mnemonic} {insns[0].op_str}".strip() == expected


def test_wide_immediate_expands_to_movz_movk() -> None:
    a = assemble("mov x1, #0x123456789")
    cs = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    assert [f"{i.mnemonic} {i.op_str}" for i in cs.disasm(a.code, 0x1000)] == [
        "mov x1, #0x6789", "movk x1, #0x2345, lsl #16", "movk x1, #1, lsl #32"]


def test_labels_equ_align_org_and_data() -> None:
    a = assemble(".equ N, 4\nstart: mov x0, #N*2\n b later\n .align 4\nlater: .quad 0x1122\n"
                 " .org later + 0x20\nend: .word 7")
    assert a.labels == {"start": 0x1000, "later": 0x1010, "end": 0x1030}
    assert a.code[0x10:0x18] == (0x1122).to_bytes(8, "little")
    assert a.code[-4:] == (7).to_bytes(4, "little")


@pytest.mark.parametrize(("src", "msg"), [
    ("nop\nfoo x1", r"^line 2: unknown instruction 'foo'"),
    ("add x1, x2, #5000", r"^line 1: add/sub immediate .* must be 0\.\.4095, not 5000"),
    ("mrs x0, PMFOO_EL0", r"^line 1: unknown system register 'PMFOO_EL0'"),
    ("b nowhere", r"^line 1: undefined symbol 'nowhere'"),
    ("mov x1, #lbl\nlbl: nop", r"^line 1: mov immediate uses 'lbl' before it is defined"),
    ("x: nop\nx: nop", r"^line 2: label 'x' defined twice"),
    ("ldr x1, [x2, #3]!, #4", r"^line 1: too many operands|^line 1: expected"),
    ("mov x32, #1", r"^line 1: expected a register x0-x30/w0-w30, not 'x32'"),
])
def test_errors_name_the_line_and_what_was_expected(src: str, msg: str) -> None:
    with pytest.raises(AsmError, match=msg):
        assemble(src)
