"""``pmupart exec``: run an AArch64 assembly program against the model, print its PMU state."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("exec")
@click.argument("program", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--core", default="cortex-a76", show_default=True, help="Catalogue core.")
@click.option("--vpmu", type=click.Choice(["none", "emulated", "partitioned"]), default="none",
              show_default=True,
              help="Run on a bare PE (none), or on a PE configured like the emulated vPMU "
                   "(MDCR_EL2.TPM = 1, every PMU access traps to the hypervisor model) or the "
                   "partitioned one (HPMN = N - 2, FGT traps on PMOVS/PMEVTYPER/PMCCFILTR).")
@click.option("--precise", is_flag=True, help="Also count LD/ST/BR_RETIRED and MEM_ACCESS.")
@click.option("--max-instructions", type=int, default=10**9, show_default=True)
def exec_cmd(program: Path, core: str, vpmu: str, precise: bool, max_instructions: int) -> None:
    """Assemble and run PROGRAM (.S) at EL1, then print the PMU state and registers.

    \b
    The program ends with PSCI SYSTEM_OFF (mov x0, #0x84000008; hvc #0), or a WFI with
    no interrupt that could wake it.
    """
    from pmupart.arch import PE
    from pmupart.cli import fail
    from pmupart.guest.aarch64 import AArch64Program, AsmError, GuestError

    try:
        pe = PE.from_core(core)
    except ValueError as e:
        fail(str(e))
    n = pe.num_counters
    with pe.at_el(2):
        if vpmu == "emulated":
            pe.write("MDCR_EL2", n | (1 << 6))
        elif vpmu == "partitioned":
            pe.write("MDCR_EL2", max(n - 2, 1) | (1 << 7))
            if pe.fgt:
                fgt = (1 << 18) | (1 << 13) | (1 << 14)
                pe.write("HDFGRTR_EL2", fgt)
                pe.write("HDFGWTR_EL2", fgt)
    try:
        prog = AArch64Program.from_asm(program.read_text(), precise=precise,
                                       max_instructions=max_instructions)
        r = prog(pe)
    except AsmError as e:
        fail(f"{program}: {e}")
    except GuestError as e:
        fail(str(e), code=1)
    s = pe.snapshot()
    click.echo(f"program {program.name}: stopped ({r.stop}) at pc={r.pc:#x} EL{r.el}, "
               f"{r.instructions} instructions, {r.cycles} cycles (core {core}, vPMU {vpmu})")
    click.echo(f"PMCR_EL0={s.pmcr:#x} MDCR_EL2={s.mdcr_el2:#x} HPMN={pe.hpmn} "
               f"PMCNTENSET={s.pmcnten:#x} PMINTENSET={s.pminten:#x} PMOVSSET={s.pmovs:#x} "
               f"PMUIRQ={int(s.pmuirq)}")
    for i, (cnt, typ) in enumerate(zip(s.evcntr, s.evtyper, strict=True)):
        click.echo(f"  PMEVCNTR{i}_EL0 = {cnt:#018x}  PMEVTYPER{i}_EL0 = {typ:#010x}")
    click.echo(f"  PMCCNTR_EL0    = {s.pmccntr:#018x}  PMCCFILTR_EL0   = {s.pmccfiltr:#010x}")
    for ex in r.exceptions:
        click.echo(f"exception {ex.kind} from EL{ex.from_el}: EC={ex.ec:#04x} ESR={ex.esr:#x} "
                   f"ELR={ex.elr:#x}")
    regs = "  ".join(f"x{i}={v:#x}" for i, v in enumerate(r.x) if v)
    click.echo(f"registers: {regs}")
