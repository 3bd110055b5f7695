"""``pmupart check SCENARIO``: violations printed with time, CPU, vCPU, rule and values; exit 1
when an invariant broke, 0 when none did, 2 on bad input (issue 5; cli.py exit codes)."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from pmupart.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["check", *args])
    return r.exit_code, r.stdout, r.stderr


def test_check_is_registered() -> None:
    code, out, _ = run("--help")
    assert code == 0 and "invariant checker" in out


def test_v1_example_exits_1_and_prints_the_violations() -> None:
    code, out, _ = run(str(EXAMPLES / "hetero-migration-v1.toml"), "--duration", "40ms")
    assert code == 1, out
    lines = out.splitlines()
    assert lines[0].startswith("pmupart check: hetero-migration-v1")
    v = next(x for x in lines if "[hpmn-legal]" in x)
    # time, CPU, vCPU, rule, values
    assert v.startswith("t=") and " cpu" in v and "vm0:vcpu" in v and "hpmn=8" in v
    assert "cpu_counters=6" in v
    assert lines[-1].startswith("verdict: ") and "violations of" in lines[-1]


def test_default_example_exits_0() -> None:
    code, out, _ = run(str(EXAMPLES / "hetero-migration.toml"), "--duration", "40ms",
                       "--seed", "7")
    assert code == 0, out
    assert re.fullmatch(r"verdict: OK — \d+ invariants held over 0\.040 s \(0 violations\)",
                        out.splitlines()[-1])


def test_notes_list_documented_exceptions() -> None:
    code, out, _ = run(str(EXAMPLES / "hetero-migration.toml"), "--duration", "20ms", "--notes")
    assert code == 0 and "note: " in out


def test_bad_input_exits_2(tmp_path: Path) -> None:
    code, _, err = run(str(tmp_path / "nope.toml"))
    assert code == 2 and "nope.toml" in err
    code, _, err = run(str(EXAMPLES / "hetero-migration.toml"), "--duration", "soon")
    assert code == 2 and "duration" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario]\nname = 3\n")
    code, _, err = run(str(bad))
    assert code == 2 and err.startswith("pmupart: error:")
