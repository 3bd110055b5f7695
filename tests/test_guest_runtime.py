"""The AArch64 runner's robustness, cycle model, automatic precise mode, images, GIC model,
hypervisor API and the `pmupart cc` / `pmupart exec` commands (kernel-code-deltas §5.3-§5.6)."""

from __future__ import annotations

import os
import signal
import stat
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("unicorn")
pytest.importorskip("llvmlite")

from click.testing import CliRunner

from pmupart.arch import PE
from pmupart.cli import main
from pmupart.guest.aarch64 import (
    EXCEPTIONS_KEPT,
    PSCI_SYSTEM_OFF,
    RAM_BASE,
    AArch64Program,
    GicV3,
    GuestContext,
    HypResult,
    ImageError,
    SysregTrap,
    assemble,
)
from pmupart.guest.aarch64.gic import GICR_BASE, SPURIOUS

OFF = "mov x0, #0x84000008\nhvc #0\n"
VECTORS = """
    .align 11
vectors:
    .org vectors + 0x200
    add x27, x27, #1
    eret
    .org vectors + 0x400
    add x27, x27, #1
    eret
"""


# ---------------------------------------------------------------- robust runs (§5.6)
def test_fault_at_an_empty_vector_stops_at_once_naming_vbar_and_the_vector() -> None:
    t = time.perf_counter()
    r = AArch64Program.from_asm("msr daifclr, #0\nudf #0\n")(PE.from_core("cortex-a76"))
    assert time.perf_counter() - t < 1.0
    assert r.stop == "exception-loop"
    assert r.reason.startswith("nested fault at a vector with no code: the exception vector "
                               "0x200 holds 0x00000000")
    assert "VBAR_EL1 = 0x0, vector 0x200 (VBAR_EL1 + 0x200: synchronous" in r.reason
    assert r.exception_count == 1 and r.exceptions[0].ec == 0x00


def test_handler_returning_to_its_fault_is_a_loop() -> None:
    src = "adr x0, vec\nmsr VBAR_EL1, x0\nudf #0\n.align 11\nvec:\n.org vec + 0x200\neret\n"
    r = AArch64Program.from_asm(src)(PE.from_core("cortex-a76"))
    assert r.stop == "exception-loop"
    assert "raised 257 times in a row with no instruction retired in between" in r.reason
    assert r.exception_count == 256
    assert len(r.exceptions) == EXCEPTIONS_KEPT


def test_exception_records_are_bounded_with_a_count() -> None:
    src = f"""
        adr x0, vectors
        msr VBAR_EL1, x0
        mov x1, #1000
    loop:
        svc #7
        subs x1, x1, #1
        b.ne loop
        {OFF}
        {VECTORS}
    """
    r = AArch64Program.from_asm(src)(PE.from_core("cortex-a76"))
    assert r.stop == "poweroff" and r.x[27] == 1000
    assert r.exception_count == 1000 and r.irq_count == 0
    assert len(r.exceptions) == EXCEPTIONS_KEPT
    assert all(e.ec == 0x15 and e.esr & 0xFFFF == 7 for e in r.exceptions)


def test_sigint_stops_cleanly_with_a_partial_result() -> None:
    src = """
        mov x0, #0x8
        msr PMEVTYPER0_EL0, x0
        mov x0, #1
        msr PMCNTENSET_EL0, x0
        msr PMCR_EL0, x0
    spin:
        b spin
    """
    pe = PE.from_core("cortex-a76")
    prog = AArch64Program.from_asm(src, interruptible=True, max_instructions=10**15)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t = time.perf_counter()
    r = prog(pe)
    timer.join()
    assert time.perf_counter() - t < 5.0
    assert r.stop == "interrupted" and r.reason.startswith("SIGINT")
    assert r.instructions > 1000
    pe.el = 1
    # Exact so far: the counter counted every instruction from the enabling MSR on.
    assert pe.read("PMEVCNTR0_EL0").value == r.instructions - 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_instruction_limit_default_and_cli() -> None:
    assert AArch64Program(b"\0" * 4).max_instructions == 10**9
    r = AArch64Program.from_asm("spin: b spin", max_instructions=5000)(PE.from_core("cortex-a76"))
    assert r.stop == "limit" and "instruction limit (5000)" in r.reason


# ---------------------------------------------------------------- cycles (§5.3)
def test_back_to_back_pmccntr_reads_differ_and_cpi_average_holds() -> None:
    src = """
        mov x0, #0x80000000
        msr PMCNTENSET_EL0, x0
        mov x0, #1
        msr PMCR_EL0, x0
        mrs x1, PMCCNTR_EL0
        mrs x2, PMCCNTR_EL0
        mrs x3, PMCCNTR_EL0
        mov x4, #50000
    loop:
        subs x4, x4, #1
        b.ne loop
        mrs x5, PMCCNTR_EL0
        mov x0, #0x84000008
        hvc #0
    """
    pe = PE.from_core("cortex-x925")  # CPI 0.4
    r = AArch64Program.from_asm(src)(pe)
    cost = pe.core.costs.sysreg_access
    assert r.x[1] < r.x[2] < r.x[3]
    assert r.x[2] - r.x[1] == cost + 1  # the MRS's access cost, and at least one cycle
    # Over the loop the average is the core's CPI (the in-place costs on top).
    loop_cycles = r.x[5] - r.x[3]
    assert abs(loop_cycles - (100_001 * 0.4 + cost)) <= 3
    # Every cycle delivered: CPI x instructions + the six accesses' cost.
    assert abs(r.cycles - (int(r.instructions * 0.4) + 6 * cost)) <= 3


# ---------------------------------------------------------------- precise mode (§5.4)
def test_precise_mode_switches_itself_on_and_pmceid_shows_counted_events() -> None:
    src = """
        mrs x10, PMCEID0_EL0
        mrs x11, PMCEID1_EL0
        mov x0, #0x13
        msr PMEVTYPER0_EL0, x0
        mov x0, #1
        msr PMCNTENSET_EL0, x0
        msr PMCR_EL0, x0
        mov x5, #0x8000
        mov x1, #100
    loop:
        ldr x2, [x5]
        str x2, [x5, #8]
        subs x1, x1, #1
        b.ne loop
        mrs x20, PMEVCNTR0_EL0
        mov x0, #0x84000008
        hvc #0
    """
    pe = PE.from_core("cortex-a76")
    p = AArch64Program.from_asm(src)
    assert not p.precise
    r = p(pe)
    assert r.x[20] == 200
    assert r.precise_switch_s is not None and r.precise_switch_s < 0.5
    assert r.x[10] == sum(1 << e for e in (0x00, 0x06, 0x07, 0x08, 0x11, 0x13, 0x1E)
                          if (pe.read("PMCEID0_EL0").value or 0) >> e & 1)
    assert r.x[11] == (pe.read("PMCEID1_EL0").value or 0) & (1 << 1)  # BR_RETIRED (0x21)
    assert AArch64Program.from_asm(OFF)(pe).precise_switch_s is None


# ---------------------------------------------------------------- images
def elf_bytes(segments: list[tuple[int, bytes, int]], entry: int, machine: int = 183,
              e_type: int = 2) -> bytes:
    """A minimal ELF-64 executable: one PT_LOAD per (addr, data, flags)."""
    phoff = 64
    data_off = phoff + 56 * len(segments)
    hdr = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    hdr += struct.pack("<HHIQQQIHHHHHH", e_type, machine, 1, entry, phoff, 0, 0, 64, 56,
                       len(segments), 64, 0, 0)
    ph = b""
    body = b""
    for addr, data, flags in segments:
        ph += struct.pack("<IIQQQQQQ", 1, flags, data_off + len(body), addr, addr, len(data),
                          len(data), 4)
        body += data
    return hdr + ph + body


def test_elf_image_runs_where_it_is_linked() -> None:
    code = assemble("mov x1, #7\n" + OFF, RAM_BASE + 0x80000).code
    p = AArch64Program.from_elf(elf_bytes([(RAM_BASE + 0x80000, code, 5)], RAM_BASE + 0x80000))
    assert p.ram_base == RAM_BASE
    r = p(PE.from_core("cortex-a76"))
    assert r.stop == "poweroff" and r.x[1] == 7


@pytest.mark.parametrize(("data", "msg"), [
    (b"MZ" + bytes(100), "no \\\\x7fELF magic"),
    (elf_bytes([(RAM_BASE, b"\0" * 4, 5)], RAM_BASE, machine=62), "not EM_AARCH64"),
    (elf_bytes([(RAM_BASE, b"\0" * 4, 5)], RAM_BASE, e_type=1), "relocatable"),
    (elf_bytes([(RAM_BASE, b"\0" * 4, 5)], RAM_BASE)[:100], "truncated"),
    (elf_bytes([(0x0900_0000, b"\0" * 4, 5)], 0x0900_0000), "outside the guest's RAM"),
    (elf_bytes([(RAM_BASE + 0x100_0000 - 0x100, b"\0" * 4, 5)], RAM_BASE + 0x100_0000 - 0x100),
     "overlaps the initial stacks"),
    (elf_bytes([(RAM_BASE, b"\0" * 4, 6)], RAM_BASE), "not in an executable segment"),
])
def test_bad_images_get_clear_errors(data: bytes, msg: str) -> None:
    with pytest.raises(ImageError, match=msg):
        AArch64Program.from_elf(data)


def test_raw_image_and_image_over_the_uart() -> None:
    code = assemble("mov x1, #9\n" + OFF, 0x4008_0000).code
    r = AArch64Program.from_raw(code, 0x4008_0000)(PE.from_core("cortex-a76"))
    assert r.x[1] == 9
    with pytest.raises(ImageError, match="overlaps the GIC distributor"):
        AArch64Program(b"\0" * 4, base=0x1000, mem_size=0x1000_0000)


def test_exec_cli_raw_binary_exit_codes(tmp_path: Path) -> None:
    raw = tmp_path / "p.bin"
    raw.write_bytes(assemble("spin: b spin", 0x4008_0000).code)
    res = CliRunner().invoke(main, ["exec", str(raw)])
    assert res.exit_code == 2 and "needs a load address (--base)" in res.output
    res = CliRunner().invoke(main, ["exec", str(raw), "--base", "0x40080000",
                                    "--max-instructions", "1000"])
    assert res.exit_code == 3, res.output
    assert "stopped (limit)" in res.output and "instruction limit (1000)" in res.output
    # A semihosting SYS_EXIT's status becomes the command's; SYS_WRITE0 is the console.
    src = """
        mov x0, #4
        adr x1, msg
        .word 0xd45e0000
        mov x0, #0x18
        adr x1, block
        .word 0xd45e0000
    msg:
        .word 0x0a6b6f
        .align 3
    block:
        .quad 0x20026
        .quad 5
    """
    s = tmp_path / "exit5.S"
    s.write_text(src)
    res = CliRunner().invoke(main, ["exec", str(s)])
    assert res.exit_code == 5
    assert res.output.startswith("ok\nprogram exit5.S: stopped (exit) with status 5")


# ---------------------------------------------------------------- hypervisor API
class RegHyp:
    """A hypervisor that answers HVC #1 through the guest's registers and memory."""

    def __init__(self) -> None:
        self.ctx: GuestContext | None = None

    def attach(self, ctx: GuestContext) -> None:
        self.ctx = ctx

    def sysreg_trap(self, cpu: Any, trap: SysregTrap) -> HypResult:
        return HypResult(undef=True)

    def hvc(self, cpu: Any, imm: int, x: list[int]) -> int | None:
        if x[0] == PSCI_SYSTEM_OFF:
            return None
        ctx = self.ctx
        assert ctx is not None
        ctx.set_reg(2, ctx.get_reg(1) * 2)  # vcpu_set_reg
        ctx.set_reg(31, 5)  # XZR: ignored
        ctx.write_mem(0x8000, struct.pack("<Q", ctx.get_reg(31) + 0x55))
        ctx.elr_el1 = 0x1234
        ctx.spsr_el1 = 0x3C5
        return 0


def test_hypervisor_reads_and_writes_guest_registers_and_memory() -> None:
    hyp = RegHyp()
    src = "mov x1, #21\nmov x0, #1\nhvc #1\nmrs x3, ELR_EL1\nmrs x4, SPSR_EL1\n" \
          "mov x5, #0x8000\nldr x6, [x5]\n" + OFF
    r = AArch64Program.from_asm(src, hypervisor=hyp)(PE.from_core("cortex-a76"))
    assert (r.x[2], r.x[3], r.x[4], r.x[6]) == (42, 0x1234, 0x3C5, 0x55)
    assert hyp.ctx is not None
    with pytest.raises(ValueError, match=r"0\.\.31"):
        hyp.ctx.get_reg(32)


# ---------------------------------------------------------------- GIC model
def test_gic_cpu_interface_signals_acks_and_drops_priority() -> None:
    g = GicV3()
    line = 1 << 23
    assert g.signalled(line) is None  # IGRPEN1 = 0, PPI disabled
    g.write_icc("ICC_IGRPEN1_EL1", 1)
    g.mmio_write(GICR_BASE + 0x10000 + 0x100, 4, line)  # ISENABLER0
    g.mmio_write(GICR_BASE + 0x10000 + 0x417, 1, 0x80)  # IPRIORITYR byte 23
    assert g.signalled(line) is None  # PMR = 0 masks everything
    g.write_icc("ICC_PMR_EL1", 0x80)
    assert g.signalled(line) is None  # priority must be below the mask
    g.write_icc("ICC_PMR_EL1", 0xF7)
    assert g.read_icc("ICC_PMR_EL1", 0) == 0xF0  # 5 priority bits
    assert g.signalled(line) == 23 and g.signalled(0) is None  # level-sensitive
    assert g.read_icc("ICC_IAR1_EL1", line) == 23
    assert g.read_icc("ICC_RPR_EL1", line) == 0x80
    assert g.read_icc("ICC_IAR1_EL1", line) == SPURIOUS  # active: not signalled again
    assert g.mmio_read(GICR_BASE + 0x10000 + 0x300, 4, line) == line  # ISACTIVER0
    g.write_icc("ICC_EOIR1_EL1", 23)
    assert g.read_icc("ICC_RPR_EL1", 0) == 0xFF and g.active == 0
    # EOImode = 1: EOIR drops the priority only; DIR deactivates.
    g.write_icc("ICC_CTLR_EL1", 2)
    assert g.read_icc("ICC_IAR1_EL1", line) == 23
    g.write_icc("ICC_EOIR1_EL1", 23)
    assert g.active == line and g.signalled(line) is None
    g.write_icc("ICC_DIR_EL1", 23)
    assert g.signalled(line) == 23
    # GICR_ISPENDR0 latches; ICPENDR0 clears the latch, not the line.
    g.mmio_write(GICR_BASE + 0x10000 + 0x200, 4, line)
    assert g.signalled(0) == 23
    g.mmio_write(GICR_BASE + 0x10000 + 0x280, 4, line)
    assert g.signalled(0) is None
    g.mmio_write(GICR_BASE + 0x14, 4, 0)  # GICR_WAKER.ProcessorSleep = 0
    assert g.mmio_read(GICR_BASE + 0x14, 4, 0) == 0
    assert g.mmio_read(GICR_BASE + 0x8, 4, 0) & (1 << 4)  # GICR_TYPER.Last


def test_gic_routes_the_pmu_interrupt_once_the_guest_uses_it() -> None:
    src = f"""
        adr x0, vectors
        msr VBAR_EL1, x0
        mrs x21, ICC_IAR1_EL1          // nothing pending: 1023
        mov x0, #1
        msr ICC_IGRPEN1_EL1, x0
        mov x0, #0xf0
        msr ICC_PMR_EL1, x0
        mov x0, #0x8
        msr PMEVTYPER0_EL0, x0
        mov x0, #-20
        msr PMEVCNTR0_EL0, x0
        mov x0, #1
        msr PMINTENSET_EL1, x0
        msr PMCNTENSET_EL0, x0
        msr PMCR_EL0, x0
        msr daifclr, #2
        mov x1, #100
    loop1:                              // overflows; PPI 23 not enabled: nothing taken
        subs x1, x1, #1
        b.ne loop1
        mov x6, #0x{GICR_BASE + 0x10100:x}
        mov x7, #0x800000
        str w7, [x6]                    // GICR_ISENABLER0: PPI 23
        isb
    after:
        nop
        mov x0, #0x84000008
        hvc #0
        .align 11
    vectors:
        .org vectors + 0x280
        mrs x22, ICC_IAR1_EL1
        mov x0, #1
        msr PMOVSCLR_EL0, x0
        msr ICC_EOIR1_EL1, x22
        mrs x23, ELR_EL1
        add x27, x27, #1
        eret
    """
    r = AArch64Program.from_asm(src)(PE.from_core("cortex-a76"))
    assert r.stop == "poweroff"
    assert r.x[21] == 1023 and r.x[22] == 23 and r.x[27] == 1 and r.irq_count == 1
    # The enable takes effect at the next context synchronization (the ISB ends the block).
    assert r.x[23] == AArch64Program.from_asm(src).labels["after"]


# ---------------------------------------------------------------- pmupart cc
def fake_compiler(tmp_path: Path, name: str, rc: int = 0) -> Path:
    log = tmp_path / "argv.txt"
    f = tmp_path / name
    f.write_text(f"#!/bin/sh\necho \"$@\" > {log}\n"
                 + ("echo 'error: bad' >&2\nexit 1\n" if rc else
                    "while [ $# -gt 1 ]; do [ \"$1\" = -o ] && : > \"$2\"; shift; done\n"))
    f.chmod(f.stat().st_mode | stat.S_IEXEC)
    return f


@pytest.mark.parametrize(("name", "flags"), [
    ("aarch64-linux-gnu-gcc", []),
    ("clang", ["--target=aarch64-none-elf", "-fuse-ld=lld"]),
])
def test_cc_drives_cross_gcc_and_clang(tmp_path: Path, name: str, flags: list[str]) -> None:
    cc = fake_compiler(tmp_path, name)
    src = tmp_path / "t.c"
    src.write_text("int main(void) { return 0; }\n")
    out = tmp_path / "t.elf"
    res = CliRunner().invoke(main, ["cc", str(src), "-o", str(out), "--cc", str(cc),
                                    "-X", "-DX=1"])
    assert res.exit_code == 0, res.output
    argv = (tmp_path / "argv.txt").read_text().split()
    assert argv[:len(flags)] == flags
    for f in ("-ffreestanding", "-nostdlib", "-mstrict-align", "-T", "-DX=1", str(src)):
        assert f in argv
    assert any(a.endswith("crt0.S") for a in argv) and any(a.endswith("link.ld") for a in argv)
    assert argv[-2:] == ["-o", str(out)]


def test_cc_reports_compiler_failures_and_zig_flags(tmp_path: Path) -> None:
    cc = fake_compiler(tmp_path, "aarch64-linux-gnu-gcc", rc=1)
    src = tmp_path / "t.c"
    src.write_text("x")
    res = CliRunner().invoke(main, ["cc", str(src), "--cc", str(cc)])
    assert res.exit_code == 2 and "failed (exit 1)" in res.output and "error: bad" in res.output
    res = CliRunner().invoke(main, ["cc", str(src), "--cc", "no-such-cc-anywhere"])
    assert res.exit_code == 2 and "not found" in res.output
    res = CliRunner().invoke(main, ["cc", str(src), "--print-command"])
    assert res.exit_code == 0
    assert "-m ziglang cc -target aarch64-freestanding-none" in res.output
