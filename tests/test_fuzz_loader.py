"""A few hundred inputs of benchmarks/fuzz_loader.py in CI: no traceback, no hang."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import fuzz_loader


def test_the_oracle_catches_a_traceback_and_accepts_an_input_error() -> None:
    from pmupart.errors import InputError

    out = fuzz_loader.Outcome()

    def boom() -> None:
        raise KeyError("x")

    def clear() -> None:
        raise InputError("f.toml", 3, "vm[0].vcpus", "expected an integer")

    fuzz_loader.guarded(out, "t", lambda: "input-1", boom)
    fuzz_loader.guarded(out, "t", lambda: "input-2", clear)
    assert out.runs == 2 and len(out.tracebacks) == 1 and "input-1" in out.tracebacks[0]


def test_fuzz_a_few_hundred_inputs() -> None:
    out = fuzz_loader.fuzz(200, fuzz_loader.Outcome(), seed=1)
    assert out.runs >= 200
    assert out.tracebacks == [] and out.hangs == [], (out.tracebacks + out.hangs)[:3]
