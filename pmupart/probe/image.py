"""The conformance image: the probe catalogue compiled to AArch64 by our own assembler.

Layout (position independent; every address is ``adr``-relative):

* an arm64 Image header (Linux ``Documentation/arch/arm64/booting.rst`` layout: branch,
  text_offset, image_size, flags, magic ``ARM\\x64`` at 0x38), so
  ``qemu-system-aarch64 -M virt[,virtualization=on] -kernel IMAGE`` loads and enters it;
* three configuration words right after the header (offsets 0x40, 0x48, 0x50): the PL011
  data register address (0x09000000 on QEMU ``virt``; 0 = no UART), whether to try Arm
  semihosting (``HLT #0xF000``; the image checks at boot that the call does not fault), and
  the GIC distributor's GICD_ISPENDR0 (where the EL2 monitor reads the PMU interrupt's
  pending state);
* **EL2 mode**: a small EL2 monitor that sets up HCR_EL2/MDCR_EL2/CPTR_EL2, drops to EL1
  and afterwards serves a hypercall ABI (read/write a register at EL2, report the last
  exception taken to EL2, spin at EL2, power off) and records every trap to EL2 and every
  exception at EL2 (ESR_EL2 and the EL it came from) before skipping the instruction;
* the EL1 part, common to both modes: vectors that record an exception (ESR_EL1, the EL it
  came from) and skip the instruction, an EL0 trampoline, a console, the ID-register
  preamble, then the probes, one block of code per op, each followed by a report line.

Under the model (:mod:`pmupart.probe.model`) the EL1 part runs on the unicorn runner and a
Python hypervisor implements the same hypercall ABI on the model's PE, so the same machine
code runs on both sides.  Output goes to the UART, to semihosting, and always to a log
buffer in memory (which is how the model run reads it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

from pmupart.guest.aarch64.asm import assemble
from pmupart.probe.catalogue import (
    FORMAT_VERSION,
    M64,
    Op,
    Params,
    Probe,
    build_catalogue,
    digest,
    outcomes,
)

PREFIX = f"PMUPROBE/{FORMAT_VERSION}"
UART_VIRT = 0x09000000  #: QEMU virt's PL011 (hw/arm/virt.c memmap VIRT_UART)
PSCI_SYSTEM_OFF = 0x84000008  #: Arm DEN0022 PSCI SYSTEM_OFF (SMC32)
TEXT_OFFSET = 0x80000
CFG_UART, CFG_SEMI, CFG_GIC = 0x40, 0x48, 0x50  #: file offsets of the configuration words
#: QEMU virt's GICv2 distributor GICD_ISPENDR0 (hw/arm/virt.c VIRT_GIC_DIST 0x08000000;
#: GICv2 §4.3.7): bit 23 is the pending state of PPI 23, the PMU interrupt (level-sensitive,
#: so pending while the PMU asserts it)
GICD_ISPENDR0_VIRT = 0x08000200
PMU_PPI = 23

# The hypercall ABI between the EL1 part and the EL2 monitor (x0 = function).
FN_READ, FN_WRITE, FN_TRAPQ, FN_WORK, FN_IRQ = 1, 2, 3, 4, 5
WORK_ITERATIONS = 1000  #: loop iterations of a "work" op (EL2 monitor and EL1/EL0 code)

# Writable data, after the code (page aligned so stores never share a page with code).
D_EL1REC, D_EL2REC, D_EL0SP, D_EL0LR, D_LOGPTR, D_LINELEN, D_SEMI, D_BOOTEL = \
    0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38
D_SEMIBLK = 0x40
D_LINE = 0x100
STACK_TOP = 0x5000
EL0_STACK_TOP = 0x6000
D_LOG = 0x8000
LOG_SIZE = 0x100000
DATA_SIZE = D_LOG + LOG_SIZE

#: ID registers the preamble reports at EL1 (spec §4 ID registers; arch/arm64/tools/sysreg),
#: and how to name them.
ID_REGS = (("MIDR_EL1", "MIDR_EL1"), ("ID_AA64PFR0_EL1", "S3_0_C0_C4_0"),
           ("ID_AA64DFR0_EL1", "ID_AA64DFR0_EL1"), ("ID_AA64DFR1_EL1", "ID_AA64DFR1_EL1"),
           ("ID_AA64MMFR0_EL1", "ID_AA64MMFR0_EL1"), ("PMCEID0_EL0", "PMCEID0_EL0"),
           ("PMCEID1_EL0", "PMCEID1_EL0"))


@dataclass(frozen=True)
class ProbeImage:
    """A built image: its bytes (loaded at any 4 KiB-aligned address), labels as offsets,
    the catalogue it runs and the EL2 register table of the hypercall ABI."""

    params: Params
    probes: list[Probe]
    code: bytes
    labels: dict[str, int]
    el2_regs: tuple[str, ...]
    digest: str

    @property
    def el1_entry(self) -> int:
        return self.labels["el1_entry"]

    @property
    def data(self) -> int:
        return self.labels["data_start"]

    def begin_line(self) -> str:
        return f"{PREFIX} BEGIN {self.params.text()} digest={self.digest}"

    def with_console(self, uart: int | None, semihosting: bool,
                     gic_ispendr: int | None = GICD_ISPENDR0_VIRT) -> bytes:
        """The image bytes with the console (and interrupt controller) words patched."""
        b = bytearray(self.code)
        b[CFG_GIC:CFG_GIC + 8] = struct.pack("<Q", gic_ispendr or 0)
        b[CFG_UART:CFG_UART + 8] = struct.pack("<Q", uart or 0)
        b[CFG_SEMI:CFG_SEMI + 8] = struct.pack("<Q", 1 if semihosting else 0)
        return bytes(b)


def _el2_regs(probes: list[Probe]) -> tuple[str, ...]:
    regs = {"PMCR_EL0"}
    for p in probes:
        for op in p.ops:
            if op.el == 2 and op.kind in ("r", "w"):
                regs.add(op.reg)
    return tuple(sorted(regs))


def _mask_asm(op: Op) -> list[str]:
    if op.kind != "r" or op.mask == M64:
        return []
    if op.mask == 0:
        return ["mov x1, #0"]
    return [f"mov x2, #{op.mask:#x}", "and x1, x1, x2"]


def _op_asm(op: Op, opid: int, el2_index: dict[str, int], lbl: str) -> list[str]:
    """The code of one op, ending with its report (recorded ops)."""
    out: list[str] = [f"// {opid:#06x}: {op.text()}" if op.recorded else f"// {op.text()}"]
    if op.kind == "work":
        if op.el == 2:
            return [*out, f"mov x0, #{FN_WORK}", "hvc #0"]
        body = [f"mov x3, #{WORK_ITERATIONS}", f"{lbl}_loop: subs x3, x3, #1",
                f"b.ne {lbl}_loop"]
        if op.el == 1:
            return [*out, *body]
        return [*out, f"adr x9, {lbl}_el0", "bl run_el0", f"b {lbl}_done", f"{lbl}_el0:",
                *body, "svc #0", f"{lbl}_done:"]
    if op.kind == "irq":
        out += [f"mov x0, #{FN_IRQ}", "hvc #0", "mov x1, x0"]
    elif op.el == 2:
        idx = el2_index[op.reg]
        if op.kind == "r":
            out += [f"mov x0, #{FN_READ}", f"mov x1, #{idx}", "hvc #0", "mov x1, x0"]
        else:
            out += [f"mov x0, #{FN_WRITE}", f"mov x1, #{idx}", f"mov x2, #{op.value:#x}",
                    "hvc #0"]
    else:
        access = f"mrs x1, {op.reg}" if op.kind == "r" else f"msr {op.reg}, x1"
        if op.kind == "w":
            out.append(f"mov x1, #{op.value:#x}")
        if op.el == 1:
            out.append(access)
        else:
            out += [f"adr x9, {lbl}_el0", "bl run_el0", f"b {lbl}_done", f"{lbl}_el0:",
                    access, "svc #0", f"{lbl}_done:"]
    flags = (1 if op.kind == "w" else 0) | (2 if op.nz else 0)
    out += _mask_asm(op)
    out += [f"mov x0, #{opid}", f"mov x2, #{flags}", "bl report"]
    return out


def _runtime(p: Params, el2_regs: tuple[str, ...], begin: str) -> str:
    el2 = p.mode == "el2"
    entry = "el2_entry" if el2 else "el1_entry"
    L: list[str] = []
    a = L.append
    # -- arm64 Image header (booting.rst): code0/1, text_offset, image_size, flags, magic.
    a("_start:")
    a(f"b {entry}")
    a(".word 0")
    a(f".quad {TEXT_OFFSET:#x}")
    a(f".quad image_end - _start + {DATA_SIZE:#x}")
    a(".quad 0xa")  # little-endian, 4K pages, placement anywhere
    a(".quad 0")
    a(".quad 0")
    a(".quad 0")
    a(".word 0x644d5241")  # "ARM\x64"
    a(".word 0")
    a(f"cfg_uart: .quad {UART_VIRT:#x}")
    a("cfg_semi: .quad 1")
    a(f"cfg_gic: .quad {GICD_ISPENDR0_VIRT:#x}")
    if el2:
        a(f"""
el2_entry:
    adr x1, data_start
    add sp, x1, #{STACK_TOP >> 12}, lsl #12
    mrs x0, CURRENTEL
    lsr x0, x0, #2
    str x0, [x1, #{D_BOOTEL}]
    cmp x0, #2
    b.ne el2_missing
    adr x0, vec_el2
    msr S3_4_C12_C0_0, x0        // VBAR_EL2
    mov x0, #0x80000000          // HCR_EL2.RW: EL1 is AArch64, nothing else trapped
    msr HCR_EL2, x0
    mov x0, #0x33ff              // CPTR_EL2: RES1 bits, no FP/SIMD traps
    msr S3_4_C1_C1_2, x0
    msr S3_4_C1_C1_3, xzr        // HSTR_EL2
    mov x0, #3                   // CNTHCTL_EL2: EL1 timer access
    msr S3_4_C14_C1_0, x0
    mrs x0, PMCR_EL0             // MDCR_EL2.HPMN = N, no traps (as Linux's __init_el2_debug)
    lsr x0, x0, #11
    mov x1, #0x1f
    and x0, x0, x1
    msr MDCR_EL2, x0
    mov x0, #0x30d00800          // SCTLR_EL1: RES1 bits, MMU and caches off
    msr S3_0_C1_C0_0, x0
    mov x0, #0x3c5               // SPSR_EL2: EL1h, DAIF masked
    msr S3_4_C4_C0_0, x0
    adr x0, el1_entry
    msr S3_4_C4_C0_1, x0         // ELR_EL2
    isb
    eret
el2_missing:
    adr x0, str_noel2
    bl puts
el2_missing_loop:
    wfi
    b el2_missing_loop
el2_cur_sync:                    // an exception at EL2 (a register the PE lacks): record, skip
    mrs x16, S3_4_C5_C2_0        // ESR_EL2
    mov x17, #2
    lsl x17, x17, #60
    b el2_record
el2_low_sync:
    mrs x16, S3_4_C5_C2_0
    lsr x17, x16, #26
    cmp x17, #0x16               // HVC from AArch64
    b.eq el2_hvc
    mrs x17, S3_4_C4_C0_0        // SPSR_EL2.M[3:2]: the EL the trap came from
    lsr x17, x17, #2
    lsl x17, x17, #62
    lsr x17, x17, #2
el2_record:                      // x16 ESR_EL2, x17 the EL it came from in bits [61:60]
    orr x16, x16, x17
    adr x17, data_start
    str x16, [x17, #{D_EL2REC}]
    mrs x16, S3_4_C4_C0_1
    add x16, x16, #4
    msr S3_4_C4_C0_1, x16
    eret
el2_hvc:
    mrs x18, S3_4_C4_C0_1
    mrs x19, S3_4_C4_C0_0
    mov x16, #{PSCI_SYSTEM_OFF:#x}
    cmp x0, x16
    b.eq el2_off
    cmp x0, #{FN_READ}
    b.eq el2_read
    cmp x0, #{FN_WRITE}
    b.eq el2_write
    cmp x0, #{FN_TRAPQ}
    b.eq el2_trapq
    cmp x0, #{FN_WORK}
    b.eq el2_work
    cmp x0, #{FN_IRQ}
    b.eq el2_irq
    mov x0, #-1
    b el2_ret
el2_read:
    adr x16, el2_rd_tab
    add x16, x16, x1, lsl #3
    br x16
el2_write:
    adr x16, el2_wr_tab
    add x16, x16, x1, lsl #3
    br x16
el2_trapq:
    adr x16, data_start
    ldr x0, [x16, #{D_EL2REC}]
    str xzr, [x16, #{D_EL2REC}]
    b el2_ret
el2_irq:                         // the PMU PPI's pending state in the GIC distributor
    ldr x16, cfg_gic
    mov x0, #-1
    cbz x16, el2_ret
    ldr w0, [x16]
    lsr x0, x0, #{PMU_PPI}
    mov x16, #1
    and x0, x0, x16
    b el2_ret
el2_work:
    mov x16, #{WORK_ITERATIONS}
el2_work_loop:
    subs x16, x16, #1
    b.ne el2_work_loop
    mov x0, #0
el2_ret:
    msr S3_4_C4_C0_1, x18
    msr S3_4_C4_C0_0, x19
    eret
el2_off:
    smc #0                       // PSCI SYSTEM_OFF (QEMU virt with virtualization=on: SMC)
    b el2_off
el2_unexpected:
    b el2_unexpected
el2_rd_tab:""")
        for r in el2_regs:
            a(f"mrs x0, {r}")
            a("b el2_ret")
        a("el2_wr_tab:")
        for r in el2_regs:
            a(f"msr {r}, x2")
            a("b el2_ret")
        a(".align 11")
        a("vec_el2:")
        for i in range(16):
            a({4: "b el2_cur_sync", 8: "b el2_low_sync"}.get(i, "b el2_unexpected"))
            a(".align 7")
    trapq = [f"mov x0, #{FN_TRAPQ}", "hvc #0", "mov x24, x0"] if el2 else []
    a(f"""
el1_entry:
    adr x1, data_start
    add sp, x1, #{STACK_TOP >> 12}, lsl #12
    {"" if el2 else "mrs x0, CURRENTEL"}
    {"" if el2 else "lsr x0, x0, #2"}
    {"" if el2 else f"str x0, [x1, #{D_BOOTEL}]"}
    add x0, x1, #{EL0_STACK_TOP >> 12}, lsl #12
    msr SP_EL0, x0
    adr x0, vec_el1
    msr VBAR_EL1, x0
    isb
    ldr x0, cfg_semi             // semihosting: on if asked and HLT #0xF000 does not fault
    str x0, [x1, #{D_SEMI}]
    cbz x0, el1_console_ok
    str xzr, [x1, #{D_EL1REC}]
    mov x0, #0x13                // SYS_ERRNO: harmless
    hlt #0xf000
    adr x1, data_start
    ldr x0, [x1, #{D_EL1REC}]
    cbz x0, el1_console_ok
    str xzr, [x1, #{D_SEMI}]
    str xzr, [x1, #{D_EL1REC}]
el1_console_ok:
    bl preamble
    bl probes
    adr x0, str_end
    bl puts
    adr x1, data_start
    ldr x0, [x1, #{D_SEMI}]
    cbz x0, el1_off
    mov x0, #0x20026             // ADP_Stopped_ApplicationExit
    str x0, [x1, #{D_SEMIBLK}]
    str xzr, [x1, #{D_SEMIBLK + 8}]
    add x1, x1, #{D_SEMIBLK}
    mov x0, #0x18                // SYS_EXIT
    hlt #0xf000
el1_off:
    mov x0, #{PSCI_SYSTEM_OFF:#x}
    hvc #0
el1_halt:
    wfi
    b el1_halt
el1_cur_sync:                    // an exception from EL1: record ESR_EL1 (from EL1), skip
    mrs x16, ESR_EL1
    mov x17, #1
    lsl x17, x17, #60
    orr x16, x16, x17
    b el1_record
el1_low_sync:                    // from EL0: SVC returns to run_el0's caller; others recorded
    mrs x16, ESR_EL1
    lsr x17, x16, #26
    cmp x17, #0x15
    b.eq el0_back
el1_record:                      // x16: ESR_EL1 with the EL it came from in bits [61:60]
    adr x17, data_start
    str x16, [x17, #{D_EL1REC}]
    mrs x16, ELR_EL1
    add x16, x16, #4
    msr ELR_EL1, x16
    eret
el0_back:
    adr x17, data_start
    ldr x16, [x17, #{D_EL0SP}]
    add sp, x16, #0
    ldr x30, [x17, #{D_EL0LR}]
    ret
el1_unexpected:
    adr x0, str_unexpected
    bl puts
    b el1_off
run_el0:                         // run the code at x9 at EL0 until it executes SVC
    adr x16, data_start
    add x17, sp, #0
    str x17, [x16, #{D_EL0SP}]
    str x30, [x16, #{D_EL0LR}]
    msr ELR_EL1, x9
    mov x17, #0x3c0              // EL0t, DAIF masked
    msr SPSR_EL1, x17
    eret
putc:                            // w0: one character; clobbers x10-x14
    adr x10, data_start
    ldr x11, [x10, #{D_LOGPTR}]
    mov x12, #{LOG_SIZE - 1:#x}
    cmp x11, x12
    b.hs putc_uart
    add x13, x10, #{D_LOG >> 12}, lsl #12
    add x13, x13, x11
    strb w0, [x13]
    add x11, x11, #1
    str x11, [x10, #{D_LOGPTR}]
putc_uart:
    ldr x12, cfg_uart
    cbz x12, putc_line
    strb w0, [x12]
putc_line:
    ldr x11, [x10, #{D_LINELEN}]
    add x13, x10, #{D_LINE}
    add x13, x13, x11
    strb w0, [x13]
    add x11, x11, #1
    str x11, [x10, #{D_LINELEN}]
    cmp w0, #10
    b.ne putc_ret
    str xzr, [x10, #{D_LINELEN}]
    ldr x12, [x10, #{D_SEMI}]
    cbz x12, putc_ret
    strb wzr, [x13, #1]
    mov x12, x0
    mov x14, x1
    mov x0, #4                   // SYS_WRITE0
    add x1, x10, #{D_LINE}
    hlt #0xf000
    mov x0, x12
    mov x1, x14
putc_ret:
    ret
puts:                            // x0: NUL-terminated string; clobbers x7, x10-x14
    stp x29, x30, [sp, #-16]!
    mov x7, x0
puts_loop:
    ldrb w0, [x7]
    cbz w0, puts_done
    bl putc
    add x7, x7, #1
    b puts_loop
puts_done:
    ldp x29, x30, [sp], #16
    ret
puthex:                          // x0 left-aligned value, x1 digits; clobbers x5, x6
    stp x29, x30, [sp, #-16]!
    mov x5, x0
    mov x6, x1
puthex_loop:
    lsr x0, x5, #60
    lsl x5, x5, #4
    cmp x0, #10
    b.lt puthex_digit
    add x0, x0, #87
    b puthex_out
puthex_digit:
    add x0, x0, #48
puthex_out:
    bl putc
    subs x6, x6, #1
    b.ne puthex_loop
    ldp x29, x30, [sp], #16
    ret
report:                          // x0 opid, x1 value, x2 flags (bit 0 write, bit 1 nz)
    stp x29, x30, [sp, #-16]!
    mov x20, x0
    mov x21, x1
    mov x22, x2
    adr x3, data_start
    ldr x23, [x3, #{D_EL1REC}]
    str xzr, [x3, #{D_EL1REC}]
    mov x24, #0
    {chr(10).join("    " + t for t in trapq)}
    adr x0, str_prefix
    bl puts
    lsl x0, x20, #48
    mov x1, #4
    bl puthex
    cbnz x24, report_t2
    cbnz x23, report_t1
    tbnz x22, #0, report_ok
    tbnz x22, #1, report_nz
    adr x0, str_v
    bl puts
    mov x0, x21
    mov x1, #16
    bl puthex
    b report_nl
report_t2:
    adr x0, str_t2
    bl puts
    mov x0, x24
    mov x1, #16
    bl puthex
    b report_nl
report_t1:
    adr x0, str_t1
    bl puts
    mov x0, x23
    mov x1, #16
    bl puthex
    b report_nl
report_ok:
    adr x0, str_ok
    bl puts
    b report_nl
report_nz:
    adr x0, str_nz
    bl puts
    mov x0, #48
    cbz x21, report_nz_out
    mov x0, #49
report_nz_out:
    bl putc
report_nl:
    mov x0, #10
    bl putc
    ldp x29, x30, [sp], #16
    ret
id_line:                         // x0 name string, x1 value
    stp x29, x30, [sp, #-16]!
    mov x25, x1
    mov x26, x0
    adr x0, str_id
    bl puts
    mov x0, x26
    bl puts
    mov x0, #32
    bl putc
    mov x0, x25
    mov x1, #16
    bl puthex
    mov x0, #10
    bl putc
    ldp x29, x30, [sp], #16
    ret
preamble:
    stp x29, x30, [sp, #-16]!
    adr x0, str_begin
    bl puts""")
    for name, enc in ID_REGS:
        a(f"mrs x1, {enc}")
        a(f"adr x0, str_id_{name}")
        a("bl id_line")
    if el2:
        a(f"mov x0, #{FN_READ}")
        a(f"mov x1, #{el2_regs.index('PMCR_EL0')}")
        a("hvc #0")
        a("mov x1, x0")
    else:
        a("mrs x1, PMCR_EL0")
    a("adr x0, str_id_PMCR_EL0")
    a("bl id_line")
    a("adr x1, data_start")
    a(f"ldr x1, [x1, #{D_BOOTEL}]")
    a("adr x0, str_id_BOOT_EL")
    a("bl id_line")
    a("ldp x29, x30, [sp], #16")
    a("ret")
    a(".align 11")
    a("vec_el1:")
    for i in range(16):
        a({0: "b el1_cur_sync", 4: "b el1_cur_sync", 8: "b el1_low_sync"}
          .get(i, "b el1_unexpected"))
        a(".align 7")
    strings = {"str_prefix": f"{PREFIX} ", "str_v": " v ", "str_t1": " t1 ",
               "str_t2": " t2 ", "str_ok": " ok", "str_nz": " nz ", "str_id": f"{PREFIX} ID ",
               "str_begin": begin + "\n", "str_end": f"{PREFIX} END\n",
               "str_noel2": f"{PREFIX} ERROR not entered at EL2: boot with "
                            "-M virt,virtualization=on\n",
               "str_unexpected": f"{PREFIX} ERROR unexpected exception\n"}
    for name, _ in (*ID_REGS, ("PMCR_EL0", ""), ("BOOT_EL", "")):
        strings[f"str_id_{name}"] = name
    for k, v in strings.items():
        esc = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        a(f'{k}: .asciz "{esc}"')
    a(".align 2")
    return "\n".join(L)


@lru_cache(maxsize=8)
def build_image(p: Params) -> ProbeImage:
    """Assemble the image for ``p`` (deterministic: same parameters, same bytes; cached,
    so treat the result as read-only)."""
    probes = build_catalogue(p)
    el2_regs = _el2_regs(probes) if p.mode == "el2" else ()
    idx = {r: i for i, r in enumerate(el2_regs)}
    dg = digest(p, probes)
    begin = f"{PREFIX} BEGIN {p.text()} digest={dg}"
    body = ["probes:", "stp x29, x30, [sp, #-16]!"]
    k = 0
    outs = {(o.probe.name, o.index): o.opid for o in outcomes(probes)}
    for pi, pr in enumerate(probes):
        body.append(f"// probe {pi}: {pr.name}")
        for j, op in enumerate(pr.ops):
            k += 1
            opid = outs.get((pr.name, j), -1)
            body += _op_asm(op, opid, idx, f"op{k}")
    body += ["ldp x29, x30, [sp], #16", "ret", ".align 12", "image_end:", "data_start:"]
    text = _runtime(p, el2_regs, begin) + "\n" + "\n".join(body) + "\n"
    asm = assemble(text, base=0)
    return ProbeImage(p, probes, asm.code, asm.labels, el2_regs, dg)
