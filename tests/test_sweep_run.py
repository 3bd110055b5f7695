"""Sweep runs: metrics from the run report, errors recorded, checkpoint and resume, the
results file, determinism whatever runs it, and a worker killed mid-sweep (pmupart.sweep)."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pmupart.cli import main
from pmupart.sweep import Checkpoint, SweepRunError, execute, load_sweep, load_sweep_text
from pmupart.sweep.report import summarize, summary_table
from pmupart.sweep.results import read_results, write_csv, write_parquet
from pmupart.sweep.runner import extract, parse_metric_path, values_at
from pmupart.sweep.spec import Metric

TINY = Path(__file__).parent / "sweeps" / "tiny.toml"


def tiny_text(extra_axes: str = "", duration: str = "5ms") -> str:
    text = TINY.read_text(encoding="utf-8").replace('duration = "5ms"',
                                                    f'duration = "{duration}"')
    return text.replace("[[metric]]", extra_axes + "\n[[metric]]", 1)


def strip_wall(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in ("wall_s", "_unmatched")} for r in rows]


# ---------------------------------------------------------------------- metrics
REPORT = {
    "vms": [{"name": "vm0", "perf_stat": [
        {"event": "cpu_cycles", "counter-value": "200.000000", "retired": 400,
         "pcnt-running": 100.0},
        {"event": "l1d_cache", "counter-value": "<not counted>", "retired": 7,
         "pcnt-running": 0.0}]}],
    "host": [{"session": "perf stat -a", "perf_stat": [
        {"event": "armv8_cortex_a55/cpu_cycles/", "counter-value": "10", "retired": 10},
        {"event": "armv9_cortex_a710/cpu_cycles/", "counter-value": "30", "retired": 40}]}],
    "violations": {"share": 3},
}


def test_metric_paths_and_selectors() -> None:
    assert parse_metric_path("vms[vm0].perf_stat[*].pcnt-running") == [
        ("key", "vms"), ("match", "vm0"), ("key", "perf_stat"), ("all", ""),
        ("key", "pcnt-running")]
    assert values_at(REPORT, "vms[0].perf_stat[cpu_cycles].counter-value") == [200.0]
    assert values_at(REPORT, "vms[vm0].perf_stat[l1d_cache].counter-value") == []  # <not counted>
    assert values_at(REPORT, "host[0].perf_stat[cpu_cycles].counter-value") == [10.0, 30.0]
    assert values_at(REPORT, "host[0].perf_stat[armv8_cortex_a55/cpu_cycles/].retired") == [10]
    assert values_at(REPORT, "violations.share") == [3.0]
    with pytest.raises(ValueError, match="empty selector"):
        parse_metric_path("vms[].x")
    got, unmatched = extract(REPORT, [
        Metric("g", "vms[vm0].perf_stat[cpu_cycles].counter-value",
               "vms[vm0].perf_stat[cpu_cycles].retired"),
        Metric("h", "host[*].perf_stat[cpu_cycles].counter-value",
               "host[*].perf_stat[cpu_cycles].retired"),
        Metric("run", "vms[vm0].perf_stat[*].pcnt-running", reduce="min"),
        Metric("n", "vms[vm0].perf_stat[*].event", reduce="count"),
        Metric("leak", "violations.no-leak", default=0),
        Metric("typo", "vms[vm0].perf_stat[cpu_cylces].counter-value"),
    ])
    assert got == {"g": 0.5, "h": 0.8, "run": 0.0, "n": 0.0, "leak": 0.0, "typo": None}
    assert unmatched == ["typo"]


# ---------------------------------------------------------------------- runs
def test_rows_metrics_errors_and_report(tmp_path: Path) -> None:
    sw = load_sweep_text(tiny_text('[[axis]]\nkey = "vm[0].nr_counters"\nvalues = [2, 20]\n'),
                         "t.toml", base_dir=TINY.parent)
    sw = _only(sw, 8)
    rows = execute(sw, workers=0)
    assert [r["point"] for r in rows] == list(range(8))
    bad = [r for r in rows if r["nr_counters"] == 20]
    good = [r for r in rows if r["nr_counters"] == 2]
    assert bad and all(r["verdict"] == "error" and "EINVAL" in r["error"] for r in bad)
    assert all(r["guest_cycles"] is None for r in bad)
    for r in good:  # 2 counters for 4 events: the guest multiplexes, cycles still count
        assert r["verdict"] == "ok" and r["error"] is None
        assert r["guest_cycles"] == pytest.approx(1.0, abs=0.01)
        assert r["host_l1d"] == pytest.approx(1.0, abs=0.01)
        assert 0 <= r["guest_running"] < 100
    out = write_parquet(rows, sw, tmp_path / "r.parquet")
    back, meta = read_results(out)
    assert strip_wall(back) == strip_wall(rows)
    assert meta["name"] == "tiny" and [a["name"] for a in meta["axes"]][-1] == "nr_counters"
    text = summary_table(back, meta)
    assert "EINVAL" in text and "raised" in text
    groups = summarize(back, meta, ["nr_counters"])
    assert [(g["nr_counters"], g["runs"], g["err"]) for g in groups] == [(2, 4, 0), (20, 4, 4)]
    csv = write_csv(rows, sw, tmp_path / "r.csv").read_text(encoding="utf-8").splitlines()
    assert csv[0].split(",")[:4] == ["point", "preset", "reserved", "partition"]
    assert len(csv) == 9


def _only(sw: Any, n: int) -> Any:
    import dataclasses
    return dataclasses.replace(sw, points=sw.points[:n])


def test_checkpoint_resume_runs_only_what_is_missing(tmp_path: Path) -> None:
    sw = load_sweep(TINY)
    ck = Checkpoint(tmp_path / "r.parquet.ckpt.jsonl", sw)
    seen: list[int] = []

    def stop_after_two(rows: list[dict[str, Any]], done: int, total: int) -> None:
        seen.extend(r["point"] for r in rows)
        if len(seen) >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(sw, checkpoint=ck, workers=0, batch=2, on_rows=stop_after_two)
    assert len(ck.load()) == 4
    with ck.path.open("a", encoding="utf-8") as fh:  # a write torn by a crash
        fh.write('{"point": 9, "preset": "hetero')
    with pytest.raises(SweepRunError, match="--resume"):
        execute(sw, checkpoint=ck, workers=0)
    again: list[int] = []
    rows = execute(sw, checkpoint=ck, resume=True, workers=0, batch=2,
                   on_rows=lambda rs, d, t: again.extend(r["point"] for r in rs))
    assert sorted(again) == list(range(4, 12))
    assert strip_wall(rows) == strip_wall(execute(sw, workers=0))
    other = load_sweep_text(TINY.read_text(encoding="utf-8").replace("seed = 7", "seed = 8"),
                            "o.toml", base_dir=TINY.parent)
    with pytest.raises(SweepRunError, match="another sweep"):
        execute(other, checkpoint=Checkpoint(ck.path, other), resume=True, workers=0)


def _worker_pids(cluster: Any) -> dict[str, int]:
    """The worker processes of a LocalCluster (each under its nanny)."""
    return {str(name): w.process.pid for name, w in cluster.workers.items()
            if w.process is not None and w.process.pid is not None}


@pytest.mark.timeout(240)
def test_dask_kill_a_worker_mid_sweep_loses_nothing(tmp_path: Path) -> None:
    """Two worker processes; one is SIGKILLed while the sweep runs.  The scheduler reruns its
    batches elsewhere and the table is complete and the same as an undisturbed serial run's
    (byte for byte without wall times)."""
    import logging

    from distributed import LocalCluster

    sw = load_sweep_text(tiny_text(duration="40ms"), "k.toml", base_dir=TINY.parent)
    serial = execute(sw, workers=0)
    assert all(r["verdict"] == "ok" for r in serial)  # real runs, not a table of errors
    t0 = time.monotonic()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.CRITICAL) as cluster:
        before = _worker_pids(cluster)
        assert len(before) == 2
        killed: list[int] = []

        def kill_one(rows: list[dict[str, Any]], done: int, total: int) -> None:
            if not killed and done >= 2:
                pid = sorted(before.values())[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        ck = Checkpoint(tmp_path / "k.parquet.ckpt.jsonl", sw)
        rows = execute(sw, checkpoint=ck, scheduler=cluster.scheduler_address, batch=1,
                       on_rows=kill_one)
        assert killed, "the sweep finished before a worker could be killed"
        with pytest.raises(ProcessLookupError):
            os.kill(killed[0], 0)
    assert len(rows) == len(sw.points)
    assert strip_wall(rows) == strip_wall(serial)
    a = write_parquet(rows, sw, tmp_path / "dask.parquet", wall_time=False)
    b = write_parquet(serial, sw, tmp_path / "serial.parquet", wall_time=False)
    assert a.read_bytes() == b.read_bytes()
    assert "wall_s" not in pq.read_schema(a).names
    assert time.monotonic() - t0 < 200


# ---------------------------------------------------------------------- command line
def test_cli_sweep_and_report(tmp_path: Path) -> None:
    out = tmp_path / "tiny.parquet"
    r = CliRunner().invoke(main, ["sweep", str(TINY), "--workers", "0", "-o", str(out), "--csv",
                                  "--no-wall-time"])
    assert r.exit_code == 0, r.output
    assert "0 of 12 runs broke an invariant" in r.stdout
    assert out.exists() and out.with_suffix(".csv").exists()
    assert not Path(str(out) + ".ckpt.jsonl").exists()
    plots = sorted(p.name for p in (tmp_path / "tiny-plots").iterdir())
    assert plots == ["broke.png", "guest_cycles.png", "guest_running.png", "host_l1d.png",
                     "share_violations.png"]
    r2 = CliRunner().invoke(main, ["sweep", "report", str(out), "--by", "reserved",
                                   "--no-plots"])
    assert r2.exit_code == 0, r2.output
    lines = r2.stdout.splitlines()
    assert lines[1].split()[:2] == ["reserved", "runs"] and len(lines) == 1 + 2 + 6 + 1
    r3 = CliRunner().invoke(main, ["sweep", "report", str(out), "--by", "reservd"])
    assert r3.exit_code == 2 and "did you mean 'reserved'" in r3.stderr


def test_cli_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[sweep]\nname = "b"\nsed = 1\n', encoding="utf-8")
    r = CliRunner().invoke(main, ["sweep", str(bad), "--workers", "0"])
    assert r.exit_code == 2 and f"{bad}:3: sweep.sed: unknown key 'sed'" in r.stderr
    errs = tmp_path / "errs.toml"
    errs.write_text(tiny_text('[[axis]]\nkey = "vm[0].nr_counters"\nvalues = [20]\n'),
                    encoding="utf-8")
    r = CliRunner().invoke(main, ["sweep", str(errs), "--workers", "0", "--no-plots",
                                  "-o", str(tmp_path / "e.parquet")])
    assert r.exit_code == 1 and "12 raised" in r.stdout, r.output

    import pmupart.sweep.executor as ex

    def interrupted(*a: Any, **k: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(ex, "execute", interrupted)
    r = CliRunner().invoke(main, ["sweep", str(TINY), "--workers", "0",
                                  "-o", str(tmp_path / "i.parquet")])
    assert r.exit_code == 130 and "--resume" in r.stderr
    r = CliRunner().invoke(main, ["sweep", "report", str(bad)])
    assert r.exit_code == 2 and "not a Parquet results file" in r.stderr


def test_results_metadata_is_json(tmp_path: Path) -> None:
    sw = _only(load_sweep(TINY), 2)
    p = write_parquet(execute(sw, workers=0), sw, tmp_path / "m.parquet")
    meta = json.loads(pq.read_schema(p).metadata[b"pmupart.sweep"])
    assert meta["report"]["x"] == "reserved" and meta["fingerprint"] == sw.fingerprint()
    assert not math.isnan(meta["seed"])


@pytest.mark.timeout(120)
def test_sigint_then_resume_gives_the_undisturbed_table(tmp_path: Path) -> None:
    """pmupart sweep interrupted by SIGINT exits 130 with its rows checkpointed; --resume
    runs only the rest, and the table is the one an undisturbed run gives."""
    import subprocess
    import sys

    text = tiny_text(duration="100ms").replace("seed = 7", "seed = 7\nbatch = 1")
    sfile = tmp_path / "s.toml"
    sfile.write_text(text, encoding="utf-8")
    out = tmp_path / "s.parquet"
    ck = Path(str(out) + ".ckpt.jsonl")
    cmd = [sys.executable, "-m", "pmupart", "sweep", str(sfile), "--workers", "0", "-o",
           str(out), "--no-plots", "--no-wall-time"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=TINY.parent.parent.parent)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if ck.exists() and len(ck.read_text(encoding="utf-8").splitlines()) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err and not out.exists()
    kept = len(ck.read_text(encoding="utf-8").splitlines()) - 1
    assert 2 <= kept < 12
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=60,
                          cwd=TINY.parent.parent.parent)
    assert done.returncode == 0, done.stderr
    sw = load_sweep(sfile)
    ref = write_parquet(execute(sw, workers=0), sw, tmp_path / "ref.parquet", wall_time=False)
    assert out.read_bytes() == ref.read_bytes()
    assert not ck.exists()
