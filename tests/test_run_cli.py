"""``pmupart run``: the report's sections and formats, determinism, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from pmupart.cli import main

EX = Path(__file__).resolve().parent.parent / "examples"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["run", *args])
    return r.exit_code, r.stdout, r.stderr


def test_report_has_guest_host_and_overhead_sections() -> None:
    code, out, err = run(str(EX / "hetero-migration.toml"), "--duration", "40ms")
    assert code == 0, err
    assert "== vm0 (partitioned vPMU): guest perf stat -a ==" in out
    assert "Performance counter stats for 'system wide':" in out
    # a heterogeneous host: one row per core PMU, named pmu/event/ as perf does
    assert "armv9_cortex_a720/cpu_cycles/" in out and "armv9_cortex_a520/cpu_cycles/" in out
    assert "Exits and traps by reason" in out
    assert "simulated 0.040 s" in out
    assert "simulated s per wall s" in err  # wall time goes to stderr only


def test_same_seed_same_bytes() -> None:
    a = run(str(EX / "shared-6-counters.toml"), "--duration", "30ms")
    b = run(str(EX / "shared-6-counters.toml"), "--duration", "30ms")
    assert a[0] == b[0] == 0
    assert a[1] == b[1]


def test_json_and_csv() -> None:
    code, out, _ = run(str(EX / "subset-counters.toml"), "--duration", "20ms", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["vms"] and doc["host"] is not None
    row = doc["vms"][0]["perf_stat"][0]
    assert {"counter-value", "event", "event-runtime", "pcnt-running"} <= set(row)
    code, out, _ = run(str(EX / "subset-counters.toml"), "--duration", "20ms", "-x,")
    assert code == 0
    data = [ln for ln in out.splitlines() if ln and not ln.startswith("#")]
    assert data and all(ln.count(",") >= 6 for ln in data)


def test_bad_input_exits_2() -> None:
    code, _, err = run(str(EX / "does-not-exist.toml"))
    assert code == 2 and "pmupart: error:" in err
    code, _, err = run(str(EX / "hetero-migration.toml"), "--set", "vm[0].nr_counters=x")
    assert code == 2 and "vm[0].nr_counters" in err
    code, _, err = run(str(EX / "hetero-migration.toml"), "--duration", "fast")
    assert code == 2 and "duration" in err


def test_report_golden() -> None:
    """The whole std report of a short run, byte for byte (regenerate with
    PMUPART_UPDATE_GOLDEN=1 and review the diff: any change of model, cost or layout shows)."""
    from conftest import check_golden

    code, out, _ = run(str(EX / "subset-counters.toml"), "--duration", "20ms")
    assert code == 0
    out = out.replace(str(EX / "subset-counters.toml"), "examples/subset-counters.toml")
    check_golden("run/subset-counters-20ms.txt", out)
