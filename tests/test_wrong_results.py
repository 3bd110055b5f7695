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
