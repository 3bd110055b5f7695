"""``pmupart exec``: run an AArch64 assembly program against the model, print its PMU state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

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
@click.option("--precise", is_flag=True, help="Also count LD/ST/BR_RETIRED and MEM_ACCESS.")
@click.option("--max-instructions", type=int, default=10**9, show_default=True)
def exec_cmd(program: Path, core: str, vpmu: str, reserved: int, revision: str, precise: bool,
             max_instructions: int) -> None:
    """Assemble and run PROGRAM (.S) at EL1, then print the PMU state as the program's EL1
    sees it, the exceptions it took and its registers.

    \b
    The program ends with PSCI SYSTEM_OFF (mov x0, #0x84000008; hvc #0), or a WFI with
    no interrupt that could wake it.
    """
    from pmupart.arch import PE
    from pmupart.cli import fail

    try:
        import llvmlite  # noqa: F401  (the native counting hooks)
        import unicorn  # noqa: F401

        from pmupart.guest.aarch64 import AArch64Program, AsmError, GuestError, RunResult
    except ImportError as e:
        from pmupart.errors import GUEST_EXTRA_HINT
        fail(f"pmupart exec needs the AArch64 emulator: {GUEST_EXTRA_HINT} ({e})")

    try:
        prog = AArch64Program.from_asm(program.read_text(), precise=precise,
                                       max_instructions=max_instructions)
    except AsmError as e:
        fail(f"{program}: {e}")
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
    except GuestError as e:
        fail(str(e), code=1)
    r = results[0]
    click.echo(f"program {program.name}: stopped ({r.stop}) at pc={r.pc:#x} EL{r.el}, "
               f"{r.instructions} instructions, {r.cycles} cycles "
               f"(core {core}, vPMU {vpmu})")
    for name, v in shown.items():
        click.echo(f"  {name:16s} = {v}")
    for ex in r.exceptions:
        click.echo(f"exception {ex.kind} from EL{ex.from_el}: EC={ex.ec:#04x} ESR={ex.esr:#x} "
                   f"ELR={ex.elr:#x}")
    regs = "  ".join(f"x{i}={v:#x}" for i, v in enumerate(r.x) if v)
    click.echo(f"registers: {regs}")


def _kvm_vcpu(core: str, vpmu: str, reserved: int, revision: str = "v8") -> Any:
    """A VMM's setup: a machine of two ``core`` CPUs, a VM with a vGIC, one vCPU with the PMU
    (partitioned if asked), its overflow interrupt on PPI 23, initialised."""
    from pmupart import Machine
    from pmupart.cli import fail
    from pmupart.host.topology import Topology
    from pmupart.kvm import KvmError, uapi

    ctrl = uapi.KVM_ARM_VCPU_PMU_V3_CTRL
    try:
        topo = Topology.from_mapping({"name": core, "cluster": [{"core": core, "count": 2}]})
        m = Machine.from_topology(topo, reserved_host_counters=reserved, revision=revision)
        v = m.kvm.create_vm().create_vcpu(pmu=True)
        if vpmu == "partitioned":
            v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION, 1)
        v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_IRQ, 23)
        v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_INIT, None)
    except KvmError as e:
        fail(f"setting up the {vpmu} vPMU on {core}: {e}")
    except ValueError as e:
        fail(str(e))
    return v
