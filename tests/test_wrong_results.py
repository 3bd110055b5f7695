"""The wrong results of issue 14, each with the check that would have caught it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pmupart.check import Checker
from pmupart.cli import main
from pmupart.scenario import load_scenario
from pmupart.sim.session import run_scenario

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples"


def _with_program(tmp_path: Path, program: str) -> Path:
    """hetero-migration.toml with a guest program on its VM, which also has a perf session."""
    text = (EX / "hetero-migration.toml").read_text(encoding="utf-8")
    text = text.replace('workload = "compute"\n',
                        f'workload = "compute"\nprogram = "{program}"\n', 1)
    p = tmp_path / "prog.toml"
    p.write_text(text.replace('duration = "200ms"', 'duration = "60ms"'), encoding="utf-8")
    return p


@pytest.mark.parametrize("program", ["pmupart.guest.programs:counting_loop",
                                     str(ROOT / "tests" / "asm" / "pmu_counting.S")])
def test_guest_program_and_guest_perf_session_count_sanely(tmp_path: Path,
                                                           program: str) -> None:
    """The program used to reset counter 0 under the guest driver's 2^63 bias: perf stat
    printed 9,223,372,036,855,775,232 instructions and ``run`` exited 0."""
    if program.endswith(".S"):
        pytest.importorskip("unicorn")
    spec = load_scenario(_with_program(tmp_path, program))
    checker = Checker()
    result = run_scenario(spec, listeners=[checker.listener])
    checker.finish(result)
    assert checker.ok, checker.render()
    counts = {r.event: r.count for r in result.vms[0].events}
    # 60 ms of a vCPU at up to 2 GHz: far below 2^32, let alone 2^63
    assert 0 < counts["inst_retired"] < 200_000_000
    assert 0 < counts["cpu_cycles"] < 200_000_000
    code = CliRunner().invoke(main, ["run", str(_with_program(tmp_path, program))]).exit_code
    assert code == 0


def test_run_says_so_and_exits_1_when_the_checker_flags_its_counts() -> None:
    r = CliRunner().invoke(main, ["run", str(EX / "hetero-migration-v1.toml"),
                                  "--duration", "40ms"])
    assert r.exit_code == 1, r.stderr
    head = r.stdout.split("== vm0")[0]
    assert "!! the invariant checker flagged this run" in head  # before any count
    assert "flagged this run's counts" in r.stderr
    r = CliRunner().invoke(main, ["run", str(EX / "hetero-migration-v1.toml"),
                                  "--duration", "40ms", "--json"])
    assert r.exit_code == 1
    import json
    assert json.loads(r.stdout)["flagged"].startswith("verdict: ")


def test_a_vcpu_never_runs_on_two_cpus_and_perf_times_stay_within_the_run() -> None:
    """After each migration the vCPU used to run on the new CPU while still finishing its
    block on the old one (44.5 us over 200 ms), and the fast-forward windows counted the
    switch before they opened: the guest's time_enabled came out longer than the run."""
    for name in ("hetero-migration.toml", "cycle-counter-only.toml"):
        spec = load_scenario(EX / name)
        checker = Checker()
        result = run_scenario(spec, listeners=[checker.listener])
        checker.finish(result)
        assert {"one-cpu", "perf-times"} <= {inv.name for inv in checker.invariants}
        assert checker.ok, checker.render()
        elapsed = max(hc.now_ns for hc in result.machine.host.cpus)
        for ctx in result.contexts:
            if ctx.driver is not None:
                for r in ctx.driver.results():
                    assert r.time_running <= r.time_enabled <= elapsed


def test_the_one_cpu_invariant_reports_a_thread_on_two_cpus() -> None:
    from pmupart.check.invariants import OneCpuAtATime

    spec = load_scenario(EX / "hetero-migration.toml")
    checker = Checker()
    result = run_scenario(spec, listeners=[checker.listener])
    checker.finish(result)
    inv = next(i for i in checker.invariants if isinstance(i, OneCpuAtATime))
    inv.on_event("switch_in", {"ctx": "vm0:vcpu0", "cpu": 0, "t": 100})
    inv.on_event("switch_out", {"ctx": "vm0:vcpu0", "cpu": 0, "t": 5_000})
    inv.on_event("switch_in", {"ctx": "vm0:vcpu0", "cpu": 1, "t": 4_000})  # overlap 1 us
    inv.on_event("switch_in", {"ctx": "vm0:vcpu0", "cpu": 2, "t": 6_000})  # still on cpu1
    msgs = [v.details() for v in checker.violations if v.rule == "one-cpu"]
    assert any("runs on two CPUs at once" in m and "overlap_ns=1000" in m for m in msgs)
    assert any("while still running on another CPU" in m for m in msgs)


def test_the_perf_times_invariant_reports_enabled_past_the_run() -> None:
    spec = load_scenario(EX / "cycle-counter-only.toml")
    checker = Checker()
    result = run_scenario(spec, listeners=[checker.listener])
    drv = next(c.driver for c in result.contexts if c.driver is not None)
    drv.enabled_ns[0] += 10**9
    checker.finish(result)
    assert checker.counts["perf-times"] == 1
    assert "time_enabled > the elapsed time" in checker.render()


def test_trace_is_the_same_bytes_for_the_same_run(tmp_path: Path) -> None:
    """Squeezed-event instants held a Python repr with a memory address."""
    import subprocess
    import sys

    outs = []
    for i in range(2):  # two processes: addresses differ between them
        out = tmp_path / f"t{i}.json"
        subprocess.run([sys.executable, "-m", "pmupart", "run",
                        str(EX / "shared-6-counters.toml"), "--duration", "30ms",
                        "--trace", str(out)], check=True, capture_output=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert b"host event squeezed out" in outs[0]
    assert b" object at 0x" not in outs[0] and b"PerfEvent(" not in outs[0]
