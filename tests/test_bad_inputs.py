"""The bad-input corpus (tests/bad_inputs/, issue 14): for every case, a clear error that
names the file:line: field or the option, the exit code of the table (2 for bad input), no
traceback, done within 10 s, and no output file left behind."""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pmupart.cli import main

HERE = Path(__file__).resolve().parent / "bad_inputs"
ROWS = [ln.split("\t") for ln in
        (HERE / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]]


def test_the_corpus_is_large_enough() -> None:
    assert len(ROWS) >= 150
    assert len({r[0] for r in ROWS}) == len(ROWS)
    assert {p.name for p in (HERE / "cases").iterdir()} == {r[0] for r in ROWS}


@pytest.mark.parametrize(("name", "args", "code", "expect"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(name: str, args: str, code: str, expect: str, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # outputs would land here: nothing may be left
    f = str(HERE / "cases" / name)
    extra = shlex.split(args)
    outs = [] if any(a in ("--trace", "--plot") for a in extra) else \
        ["--trace", "t.json", "--plot", "p.png"]
    t0 = time.perf_counter()
    r = CliRunner().invoke(main, ["run", f, *extra, *outs])
    took = time.perf_counter() - t0
    err = r.stderr
    assert r.exit_code == int(code), (r.exit_code, err[-2000:], r.exception)
    assert isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in err and "Traceback" not in r.stdout
    assert err.startswith(("pmupart: error: ", "Usage: ")), err[:500]
    rx = re.escape(expect).replace(re.escape("{f}"), re.escape(f)).replace("@", r"\d+")
    assert re.search(rx, err), err[:1000]
    assert len(err) < 4000  # one clear message, not a dump
    assert took < 10, f"{name} took {took:.1f} s"
    assert list(tmp_path.iterdir()) == []
