"""``pmupart exec``: run an AArch64 program (assembly, ELF, raw binary) against the model, print
its console output and PMU state."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pmupart.guest.aarch64.runner import DEFAULT_MAX_INSTRUCTIONS

_SHOWN = ("PMCR_EL0", "PMCNTENSET_EL0", "PMINTENSET_EL1", "PMOVSSET_EL0", "PMUSERENR_EL0",
          "PMSELR_EL0", "PMCCNTR_EL0", "PMCCFILTR_EL0")


@click.command("exec")
@click.argument("program", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--core", default="cortex-a76", show_default=True, help="Catalogue core.")
@click.option("--vpmu", type=click.Choice(["none", "emulated", "partitioned"]), default="none",
              show_default=True,
              help="none: run on a bare PE at EL1.  emulated / partitioned: run as the guest "
                   "of a KVM vCPU with that vPMU backend, on a machine of two such cores.")
@click.option("--reserved", "reserved", type=int, default=2, show_default=True,
              help="arm_pmuv3.reserved_host_counters for --vpmu partitioned/emulated.")
@click.option("--revision", type=click.Choice(["upstream", "v8", "intent"]), default="v8",
              show_default=True,
              help="The KVM revision for --vpmu (pmupart.kvm.revision): v8 as posted, the "
                   "cover letter's intent, or upstream (no partitioned backend).")
@click.option("--precise", is_flag=True,
              help="Count LD/ST/BR_RETIRED and MEM_ACCESS from the start (precise mode also "
                   "switches itself on when the program programs one of them).")
@click.option("--max-instructions", type=int, default=DEFAULT_MAX_INSTRUCTIONS,
              show_default=True, help="Stop after this many instructions (exit status 3).")
@click.option("--base", default=None, help="Load address of a raw binary (0x hex).")
@click.option("--entry", default=None, help="Entry point of a raw binary (default: --base).")
@click.option("--read-symbol", "read_symbols", multiple=True, metavar="NAME[:SIZE]",
              help="After the run, print the SIZE-byte (default 8) value at ELF symbol NAME "
                   "(repeatable).")
def exec_cmd(program: Path, core: str, vpmu: str, reserved: int, revision: str, precise: bool,
             max_instructions: int, base: str | None, entry: str | None,
             read_symbols: tuple[str, ...]) -> None:
    """Run PROGRAM at EL1 and print its console output, then the PMU state as the program's
    EL1 sees it, the exceptions it took and its registers.

    \b
    PROGRAM is an AArch64 assembly file (.S, our assembler), an ELF executable (e.g. built
    by `pmupart cc`: segments loaded where linked, symbols readable with --read-symbol), or a
    raw binary with --base/--entry.  It ends with a semihosting SYS_EXIT (the runtime's
    exit(), main's return), PSCI SYSTEM_OFF (mov x0, #0x84000008; hvc #0), or a WFI with no
    interrupt that could wake it.

    \b
    Exit status:
      the guest's own status   when it ends with SYS_EXIT (0-255, its choice)
      0                        PSCI SYSTEM_OFF or a final WFI
      1                        the model found a problem (a state it cannot continue from)
      2                        bad input (file, options)
      3                        the guest raised: an exception loop, a fault (a load,
                               store or fetch where nothing is mapped), the
                               instruction limit
      130                      interrupted (SIGINT); the partial result is printed
    A guest that exits with 1, 2, 3 or 130 itself is told apart by the first line, which
    names how the run stopped ("stopped (exit)" and the guest's status).
    """
    from pmupart.arch import PE
    from pmupart.cli import EXIT_GUEST_PROGRAM, fail

    try:
        import llvmlite  # noqa: F401  (the native counting hooks)
        import unicorn  # noqa: F401

        from pmupart.guest.aarch64 import (
            AArch64Program,
            AsmError,
            GuestError,
            GuestFault,
            ImageError,
            RunResult,
        )
    except ImportError as e:
        from pmupart.errors import GUEST_EXTRA_HINT
        fail(f"pmupart exec needs the AArch64 emulator: {GUEST_EXTRA_HINT} ({e})")

    def num(text: str | None, what: str) -> int | None:
        if text is None:
            return None
        try:
            return int(text.replace("_", ""), 0)
        except ValueError:
            fail(f"{what} must be an integer (0x hex), not {text!r}")

    if max_instructions < 1:
        fail(f"--max-instructions must be at least 1, not {max_instructions}")
    wanted: list[tuple[str, int]] = []
    for spec in read_symbols:
        name, _, size = spec.partition(":")
        n = num(size, "--read-symbol SIZE") if size else 8
        if not name or n is None or not 1 <= n <= 8:
            fail(f"--read-symbol wants NAME or NAME:SIZE with SIZE 1..8, not {spec!r}")
        wanted.append((name, n))
    try:
        prog = AArch64Program.from_file(program, base=num(base, "--base"),
                                        entry=num(entry, "--entry"), precise=precise,
                                        max_instructions=max_instructions, interruptible=True)
    except AsmError as e:
        fail(f"{program}: {e}")
    except (ImageError, ValueError) as e:
        fail(f"{program}: {e}")
    for name, _ in wanted:
        if name not in prog.labels:
            fail(f"{program}: no symbol {name!r} in the image")
    shown: dict[str, str] = {}

    def guest(cpu: Any) -> RunResult:
        r = prog(cpu)
        cpu.el = 1
        n = (cpu.read("PMCR_EL0").value or 0) >> 11 & 0x1F
        for name in (*_SHOWN, *(f"PMEVTYPER{i}_EL0" for i in range(n)),
                     *(f"PMEVCNTR{i}_EL0" for i in range(n))):
            acc = cpu.read(name)
            shown[name] = f"{acc.value:#x}" if acc.ok and acc.value is not None \
                else acc.outcome.name
        return r

    results: list[RunResult] = []
    try:
        if vpmu == "none":
            try:
                pe = PE.from_core(core)
            except ValueError as e:
                fail(str(e))
            results.append(guest(pe))
        else:
            vcpu = _kvm_vcpu(core, vpmu, reserved, revision)
            vcpu.run(lambda cpu: results.append(guest(cpu)), cpu=0)
            if not results:
                fail(f"the vCPU did not run the program (KVM_RUN failed on {core})", code=1)
    except GuestFault as e:  # the program's own fault: exit 3, as the table says
        fail(f"the program faulted: {e}", code=EXIT_GUEST_PROGRAM)
    except GuestError as e:
        fail(str(e), code=1)
    r = results[0]
    if r.console:
        click.echo(r.console, nl=not r.console.endswith("\n"))
    status = f" with status {r.exit_status}" if r.exit_status is not None else ""
    click.echo(f"program {program.name}: stopped ({r.stop}){status} at pc={r.pc:#x} EL{r.el}, "
               f"{r.instructions} instructions, {r.cycles} cycles "
               f"(core {core}, vPMU {vpmu})")
    if r.reason:
        click.echo(f"reason: {r.reason}")
    if r.precise_switch_s is not None:
        click.echo(f"precise counting switched on during the run "
                   f"({r.precise_switch_s * 1e3:.2f} ms)")
    for name, v in shown.items():
        click.echo(f"  {name:16s} = {v}")
    kept = len(r.exceptions)
    if r.exception_count > kept:
        click.echo(f"{r.exception_count} exceptions ({r.irq_count} IRQs); the last {kept}:")
    for ex in r.exceptions:
        click.echo(f"exception {ex.kind} from EL{ex.from_el}: EC={ex.ec:#04x} ESR={ex.esr:#x} "
                   f"ELR={ex.elr:#x}")
    regs = "  ".join(f"x{i}={v:#x}" for i, v in enumerate(r.x) if v)
    click.echo(f"registers: {regs}")
    for sym, nbytes in wanted:
        click.echo(f"symbol {sym} = {r.read_symbol(sym, nbytes):#x}")
    code = _exit_code(r)
    if code:
        sys.exit(code)


def _exit_code(r: Any) -> int:
    """The command's exit status for a finished run (see ``exec_cmd``'s help)."""
    if r.stop == "exit":
        return int(r.exit_status or 0)
    if r.stop in ("poweroff", "wfi"):
        return 0
    if r.stop == "interrupted":
        return 130
    return 3  # exception loop, instruction limit, unmodelled exception


def _kvm_vcpu(core: str, vpmu: str, reserved: int, revision: str = "v8") -> Any:
    """``pmu_vcpu`` with its errors as the command's (exit 2)."""
    from pmupart.cli import fail
    from pmupart.guest.vmm import pmu_vcpu
    from pmupart.kvm import KvmError

    try:
        return pmu_vcpu(core, vpmu, reserved, revision)
    except KvmError as e:
        fail(f"setting up the {vpmu} vPMU on {core}: {e}")
    except ValueError as e:
        fail(str(e))
