"""Our C guest test suite (tests/guest_c/pmu_suite.c), compiled with `pmupart cc` (the ziglang
wheel from the test extra), run on a bare PE, on PEs configured like each vPMU (the
ForwardingHypervisor emulates what traps) and on KVM vCPUs of the model with the emulated
and the partitioned backends (the series' design as intended: revision "intent"), across
catalogue cores from PMUv3 to PMUv3p9."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("unicorn")
pytest.importorskip("llvmlite")

from pmupart.arch import PE
from pmupart.guest.aarch64 import AArch64Program, RunResult
from pmupart.guest.cc import build
from pmupart.guest.vmm import pmu_vcpu

SRC = Path(__file__).parent / "guest_c"
CORES = ["cortex-a53", "cortex-a76", "neoverse-v2", "cortex-a720", "c1-pro"]
CONFIGS = ["bare", "pe-partitioned", "pe-emulated", "kvm-emulated", "kvm-partitioned"]


@pytest.fixture(scope="session")
def elf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("guest_c")
    return {name: build([SRC / f"{name}.c"], out / f"{name}.elf")
            for name in ("pmu_suite", "hello", "exception_loop")}


def pe_like(core: str, config: str) -> PE:
    """A bare PE, or one with MDCR_EL2/FGT programmed as each vPMU programs them."""
    pe = PE.from_core(core)
    if config == "bare":
        return pe
    with pe.at_el(2):
        if config == "pe-partitioned":
            assert pe.write("MDCR_EL2", 4 | (1 << 7)).ok  # HPMN = 4, HPME
            if pe.core is not None and pe.core.fgt:
                fgt = (1 << 18) | (1 << 13) | (1 << 14)  # PMOVS, PMEVTYPERn, PMCCFILTR
                assert pe.write("HDFGRTR_EL2", fgt).ok
                assert pe.write("HDFGWTR_EL2", fgt).ok
        else:
            assert pe.write("MDCR_EL2", 4 | (1 << 6)).ok  # HPMN = 4, TPM
    return pe


def run(path: Path, core: str, config: str) -> tuple[RunResult, Any]:
    prog = AArch64Program.from_elf(path)
    if not config.startswith("kvm"):
        return prog(pe_like(core, config)), None
    v = pmu_vcpu(core, config.split("-")[1], revision="intent")
    out: list[RunResult] = []
    v.run(lambda cpu: out.append(prog(cpu)), cpu=0)
    return out[0], v


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("core", CORES)
def test_pmu_suite(elf: dict[str, Path], core: str, config: str) -> None:
    r, vcpu = run(elf["pmu_suite"], core, config)
    assert r.stop == "exit", (r.stop, r.reason, r.console)
    assert "FAIL" not in r.console, r.console
    assert r.exit_status == 0
    assert "SUMMARY:" in r.console
    n = 6 if config == "bare" else 4  # HPMN 4 / 2 of 6 reserved for the host
    assert r.read_symbol("pmcr_n") == n
    # SW_INCR on a counter that filters EL1 out: the architecture (and a PE, and the
    # partitioned backend's hardware counter) does not count it; the emulated vPMU counts
    # it, as kvm_pmu_counter_increment ignores the filter (KvmOptions.emulated_swinc_el_filter).
    assert r.read_symbol("swinc_filtered") == (10 if config == "kvm-emulated" else 0)
    assert r.read_symbol("irq_count_total") == 2
    assert r.irq_count == 2
    pmuver = r.read_symbol("pmuver")
    assert ("64-bit counters: LP = 1" in r.console) == (pmuver >= 6)
    if vcpu is not None:
        # §5.5: the guest's interrupts went host IRQ -> KVM (injection, its cost) -> guest.
        assert vcpu.stats.irqs_injected == 2
        assert vcpu.stats.exits["pmu_irq"] == 2
        assert vcpu.vm.kvm.host.stats.pmu_irqs >= 2
        assert vcpu.stats.el2_cycles >= 2 * vcpu.vm.kvm.costs.vgic_inject
        # its EOI (ICC_EOIR1_EL1, EOImode 0) deactivates the PPI the vGIC listed with
        # ICH_LR_EOI: a maintenance interrupt, an exit, each time (vgic_v3_populate_lr)
        assert vcpu.stats.exits["vgic_maintenance"] == (2 if vcpu.vm.irqchip else 0)


def test_hello_prints_and_leaves_its_symbol(elf: dict[str, Path]) -> None:
    r, _ = run(elf["hello"], "cortex-a76", "bare")
    assert r.console == "hello from EL1, PMCR_EL0.N = 6\nu\n"
    assert r.exit_status == 0 and r.stop == "exit"
    assert r.read_symbol("hello_answer") == 42
    assert r.read_symbol("hello_answer", 1) == 42
    with pytest.raises(KeyError, match="no symbol 'nope'"):
        r.read_symbol("nope")


def test_exception_loop_program_stops_fast(elf: dict[str, Path]) -> None:
    import time

    t = time.perf_counter()
    r, _ = run(elf["exception_loop"], "cortex-a76", "bare")
    assert time.perf_counter() - t < 1.0
    assert r.stop == "exception-loop"
    assert "VBAR_EL1 = 0x0" in r.reason and "vector 0x200" in r.reason
    assert "cannot be fetched" in r.reason  # RAM starts at 0x40000000: nothing at 0x200


def test_exec_cli_on_elf(elf: dict[str, Path]) -> None:
    from click.testing import CliRunner

    from pmupart.cli import main

    res = CliRunner().invoke(main, ["exec", str(elf["hello"]), "--read-symbol",
                                    "hello_answer:4"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("hello from EL1, PMCR_EL0.N = 6\nu\n")
    assert "stopped (exit) with status 0" in res.output
    assert "symbol hello_answer = 0x2a" in res.output
    res = CliRunner().invoke(main, ["exec", str(elf["pmu_suite"]), "--vpmu", "partitioned",
                                    "--core", "cortex-a720", "--revision", "intent"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["exec", str(elf["exception_loop"])])
    assert res.exit_code == 3
    assert "stopped (exception-loop)" in res.output and "reason: nested fault" in res.output
    res = CliRunner().invoke(main, ["exec", str(elf["hello"]), "--read-symbol", "nope"])
    assert res.exit_code == 2 and "no symbol 'nope'" in res.output


def test_scenario_vm_program_takes_an_elf(elf: dict[str, Path]) -> None:
    from conftest import one_vm_program_scenario

    from pmupart.scenario import load_scenario_text
    from pmupart.sim.session import run_scenario

    text = one_vm_program_scenario("elf", elf["hello"])
    r = run_scenario(load_scenario_text(text))
    ctx = next(c for c in r.contexts if c.vcpu is not None)
    assert ctx.program_ran
    res = ctx.program_result
    assert isinstance(res, RunResult)
    assert res.stop == "exit" and res.console.startswith("hello from EL1")
    assert res.read_symbol("hello_answer") == 42
