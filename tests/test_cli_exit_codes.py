"""The exit-code table (README, pmupart/cli.py) and the checks before a run (issue 14)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pmupart.cli import main

EX = Path(__file__).resolve().parent.parent / "examples"
HM = str(EX / "hetero-migration.toml")


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_the_table_is_the_same_in_the_readme_and_the_cli_docstring() -> None:
    import pmupart.cli as cli
    readme = (EX.parent / "README.md").read_text(encoding="utf-8")
    for code in (0, 1, 2, 3, 70, 130):
        assert f"| {code} |" in readme
        assert f"\n{code:<4}  " in (cli.__doc__ or "")


def test_a_guest_program_that_raises_exits_3_with_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "userprog14.py").write_text("def boom(cpu):\n    return 1 / 0\n",
                                            encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        code, out, err = run("run", HM, "--duration", "5ms", "--set",
                             'vm[0].program="userprog14:boom"')
    finally:
        sys.path.remove(str(tmp_path))
    assert code == 3 and out == ""
    assert "userprog14.py" in err and "ZeroDivisionError" in err
    assert "the guest program boom raised on vm0:vcpu0" in err


def test_output_paths_are_checked_before_the_run(tmp_path: Path) -> None:
    code, _, err = run("run", HM, "--trace", str(tmp_path / "no" / "t.json"))
    assert code == 2 and "--trace: cannot write" in err and "no such directory" in err
    assert "simulated" not in err  # nothing ran
    code, _, err = run("run", HM, "--plot", str(tmp_path), "--duration", "5ms")
    assert code == 2 and "--plot" in err


def test_option_errors_name_the_option() -> None:
    for args, needle in ((("--seed", "-1"), "--seed"), (("-x", ""), "-x/--field-separator"),
                         (("--json", "-x,"), "--json and -x"),
                         (("--duration", "fast"), "--duration: expected a duration"),
                         (("--duration", "0ms"), "--duration: expected a duration above zero")):
        code, _, err = run("run", HM, *args)
        assert code == 2 and needle in err, (args, err)


def test_interrupt_exits_130_and_leaves_no_trace_file(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    p = subprocess.Popen([sys.executable, "-m", "pmupart", "run", HM, "--duration", "600s",
                          "--no-fast-forward", "--trace", str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(2.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert b"pmupart: interrupted" in err and b"Traceback" not in err
    assert os.listdir(tmp_path) == []


def test_record_faster_than_the_max_sample_rate_is_refused() -> None:
    code, _, err = run("run", str(EX / "cover-letter-record.toml"), "--set",
                       "vm[0].perf.freq=200000")
    assert code == 2 and "perf_event_max_sample_rate = 100000" in err and "vm[0].perf.freq" in err
    code, _, err = run("run", str(EX / "cover-letter-record.toml"), "--set",
                       "vm[0].perf.freq=200000", "--set", "host.perf_event_max_sample_rate=300000",
                       "--duration", "1ms")
    assert code in (0, 1), err


def test_a_long_run_is_warned_about_with_its_estimate() -> None:
    import dataclasses

    from pmupart.scenario import load_scenario
    from pmupart.sim.limits import check_sizes
    spec = load_scenario(EX / "cover-letter-record.toml")
    assert check_sizes(spec) == []
    long = dataclasses.replace(spec, duration_ns=3600 * 10**9)
    assert check_sizes(long) == []  # skipped ahead by sampling windows (120 s: 2.2 s wall)
    (w,) = check_sizes(long, fast_forward=False)
    assert "may take about" in w and "min of wall time" in w


def test_sysfs_import_refuses_two_pmus_claiming_one_cpu(tmp_path: Path) -> None:
    code, _, err = run("sysfs", "rk3399", "--write", str(tmp_path / "dev"))
    assert code == 0, err
    a53, a72 = tmp_path / "dev" / "armv8_cortex_a53", tmp_path / "dev" / "armv8_cortex_a72"
    (a72 / "cpus").write_text("3-5\n", encoding="utf-8")
    code, _, err = run("sysfs", "--import", str(tmp_path / "dev"))
    assert code == 2 and "both claim CPU 3" in err and "cpus:1" in err
    (a53 / "cpus").write_bytes(b"\xff\xfe")
    code, _, err = run("sysfs", "--import", str(tmp_path / "dev"))
    assert code == 2 and "not UTF-8" in err and "Traceback" not in err


def test_progress_off_a_terminal_prints_status_lines(capsys: Any) -> None:
    from pmupart.sim.cli_run import status_lines

    show = status_lines(10**9, time.perf_counter() - 10, every_s=0.0)
    show(5 * 10**8)
    err = capsys.readouterr().err
    assert "simulated 0.500 of 1.000 s (50%)" in err


def test_the_engine_reports_progress_with_simulated_time() -> None:
    import dataclasses

    from pmupart.scenario import load_scenario
    from pmupart.sim.session import run_scenario

    spec = dataclasses.replace(load_scenario(EX / "shared-6-counters.toml"),
                               duration_ns=50 * 10**6)
    seen: list[int] = []
    run_scenario(spec, progress=seen.append, fast_forward=False)
    assert len(seen) >= 5 and seen == sorted(seen)  # not only at the end
    assert 0 < seen[0] < spec.duration_ns


def test_a_nul_in_a_file_name_is_bad_input_for_every_command() -> None:
    """Found by benchmarks/fuzz_loader.py: click.Path's os.stat raised ValueError (exit 70)."""
    for args in (["run", HM, "--trace", "a\x00b"], ["run", "a\x00b"], ["check", "x\x00"],
                 ["sysfs", "--import", "d\x00"]):
        code, _, err = run(*args)
        assert code == 2 and "NUL character" in err and "Traceback" not in err, (args, err)


def test_the_estimate_knows_sampling_windows() -> None:
    """30 s of stress-ng under perf record at 4 kHz on a pinned vCPU runs in seconds with the
    engine's sampling windows (about 0.3 s of it in detail): no warning; with fast-forward off
    every sample is simulated, and the estimate says so."""
    from pmupart.check.cover_letter import scenario
    from pmupart.sim.limits import check_sizes, estimate_wall_s

    spec = scenario("stress", "emulated", 750.0)  # the published 30 s
    assert estimate_wall_s(spec) < 10 and check_sizes(spec) == []
    assert estimate_wall_s(spec, fast_forward=False) > 60
    (w,) = check_sizes(spec, fast_forward=False)
    assert "may take about" in w


def test_the_estimate_knows_that_phases_restart_sampling_windows() -> None:
    """The same 30 s in phases of 100 ms: each change of phase starts the sampling windows
    over (about 0.3 s in detail each), so the run is in detail throughout: a warning.  Two
    phases alike but for their length are one: no change, no warning."""
    import dataclasses

    from pmupart.check.cover_letter import scenario
    from pmupart.sim.limits import check_sizes, estimate_wall_s

    spec = scenario("stress", "emulated", 750.0)
    name, wl = next(iter(spec.workloads.items()))
    ph = dataclasses.replace(wl.phases[0], duration_ns=100_000_000)
    other = dataclasses.replace(ph, kernel_fraction=ph.kernel_fraction + 0.1)

    def phased(*phases: object) -> object:
        return dataclasses.replace(spec, workloads={
            **spec.workloads, name: dataclasses.replace(wl, phases=phases)})

    two = phased(ph, other)
    assert estimate_wall_s(two) == pytest.approx(estimate_wall_s(spec, fast_forward=False))
    assert len(check_sizes(two)) == 1
    assert estimate_wall_s(phased(ph, ph)) == pytest.approx(estimate_wall_s(spec))
    assert check_sizes(phased(ph)) == []


def test_the_estimate_knows_host_sampling_windows() -> None:
    """Ten minutes of host ``perf record -a -F 1000`` on 8 CPUs beside guests counting: host
    sampling windows skip it after a warm-up, so no warning; with fast-forward off, or with a
    guest perf record too (guest and host sampling windows do not mix), every sample is
    simulated: a warning."""
    import dataclasses

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_engine

    from pmupart.sim import PerfMode, PerfSession
    from pmupart.sim.limits import check_sizes

    spec = bench_engine.spec("host-record", 600.0)
    assert check_sizes(spec) == []
    assert len(check_sizes(spec, fast_forward=False)) == 1
    rec = PerfSession(bench_engine.GUEST_EVENTS[:2], mode=PerfMode.RECORD, freq=1000)
    both = dataclasses.replace(spec, vms=tuple(dataclasses.replace(v, perf=rec)
                                               for v in spec.vms))
    assert len(check_sizes(both)) == 1
