"""Fuzz the scenario loader and the ``pmupart run`` command line with Hypothesis.

    python benchmarks/fuzz_loader.py [--inputs 10000] [--seed N]

Three generators, each a share of ``--inputs``:

* ``text``: an example scenario's TOML with random edits (characters inserted, deleted or
  replaced, lines dropped or duplicated, values swapped for odd ones: nan, inf, huge
  integers, control characters, deep arrays), loaded with ``load_scenario_text``;
* ``mapping``: an example's parsed tables with random fields set to random values of any
  type (``load_scenario_mapping``);
* ``cli``: ``pmupart run`` on a small valid scenario with random options and ``--set``
  overrides (simulating at most 200 us).

The oracle: the loader returns a scenario or raises :class:`pmupart.errors.InputError`
(a clear ``file:line: field: message``), nothing else; the command line exits 0, 1 or 2
without a traceback; every input finishes within 10 s.  It prints the inputs run, the
tracebacks and the hangs, each with the input, and exits 1 if there was any.
``tests/test_fuzz_loader.py`` runs a few hundred of the same inputs in CI.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import tomllib
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))
TEXTS = [p.read_text(encoding="utf-8") for p in EXAMPLES]
LIMIT_S = 10

ODD = ["nan", "inf", "-inf", "-1", "0", "99999999999999999999", '""', '"\\u0000"',
       '"\\u001b[31m"', "[]", "{}", "[[[[[[[[1]]]]]]]]", "true", '"x" ', "1e308", "0x10",
       '"0-999"', '"-5ms"', '"1h"', '"nope"', "{ a = { b = 1 } }"]

edit = st.one_of(
    st.tuples(st.just("ins"), st.integers(0, 10**6), st.text(max_size=8)),
    st.tuples(st.just("del"), st.integers(0, 10**6), st.integers(1, 40)),
    st.tuples(st.just("line-drop"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("line-dup"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("value"), st.integers(0, 10**6), st.sampled_from(ODD)),
)


def apply_edits(text: str, edits: list[tuple[str, int, Any]]) -> str:
    for kind, pos, arg in edits:
        if kind == "ins":
            i = pos % (len(text) + 1)
            text = text[:i] + arg + text[i:]
        elif kind == "del" and text:
            i = pos % len(text)
            text = text[:i] + text[i + arg:]
        else:
            lines = text.splitlines(keepends=True)
            if not lines:
                continue
            i = pos % len(lines)
            if kind == "line-drop":
                del lines[i]
            elif kind == "line-dup":
                lines.insert(i, lines[i])
            elif " = " in lines[i]:
                key = lines[i].split(" = ", 1)[0]
                lines[i] = f"{key} = {arg}\n"
            text = "".join(lines)
    return text


scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                   st.sampled_from(["0-3", "5ms", "CPU_CYCLES", "cortex-a76", "per-cpu",
                                    "record", "system", "task:x", "vm0", "compute"]))
anyvalue = st.recursive(scalar, lambda c: st.one_of(st.lists(c, max_size=4),
                                                    st.dictionaries(st.text(max_size=8), c,
                                                                    max_size=4)),
                        max_leaves=12)


def paths(d: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(d, dict):
        for k, v in d.items():
            out += paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += paths(v, (*prefix, i))
    return out


def set_path(d: Any, path: tuple[Any, ...], value: Any) -> None:
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value


OPTIONS = st.lists(st.one_of(
    st.tuples(st.sampled_from(["--seed", "--duration", "-x", "--set", "--trace", "--plot"]),
              st.one_of(st.text(max_size=12), st.sampled_from(
                  ["-1", "0", "1", "5ms", "0s", ",", "", "vm[0].vcpus=3",
                   "scenario.seed=-1", "kvm.hpmn_source=vm-pmu", "machine.reserved_host_counters=9",
                   "vm[0].perf.events=[]", "vm[5].name=x", "/nonexistent/x", "nan"]))),
    st.tuples(st.sampled_from(["--json", "--no-fast-forward", "--progress", "--bogus"]),
              st.none())), max_size=4)


class Outcome:
    def __init__(self) -> None:
        self.runs = 0
        self.tracebacks: list[str] = []
        self.hangs: list[str] = []
        self.by_kind: dict[str, int] = {}


def _alarm(_sig: int, _frm: Any) -> None:
    raise TimeoutError


def guarded(out: Outcome, kind: str, what: Callable[[], str], fn: Callable[[], None]) -> None:
    """Run ``fn`` under the time limit; record a traceback or a hang with the input."""
    from pmupart.errors import InputError

    out.runs += 1
    out.by_kind[kind] = out.by_kind.get(kind, 0) + 1
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMIT_S)
    try:
        fn()
    except InputError:
        pass
    except TimeoutError:
        out.hangs.append(f"[{kind}] {what()[:400]!r}")
    except Exception:
        out.tracebacks.append(f"[{kind}] {what()[:400]!r}\n{traceback.format_exc()[-1500:]}")
    finally:
        signal.alarm(0)


def fuzz(n: int, out: Outcome, seed: int | None = None) -> Outcome:
    from click.testing import CliRunner

    from pmupart.cli import main
    from pmupart.scenario.loader import load_scenario_mapping, load_scenario_text

    cfg = settings(max_examples=max(1, n), deadline=None, database=None,
                   derandomize=seed is not None,
                   suppress_health_check=list(HealthCheck))
    third = max(1, n // 3)

    @settings(cfg, max_examples=third)
    @given(st.integers(0, len(TEXTS) - 1), st.lists(edit, min_size=1, max_size=6))
    def text_case(i: int, edits: list[tuple[str, int, Any]]) -> None:
        text = apply_edits(TEXTS[i], edits)
        guarded(out, "text", lambda: text,
                lambda: load_scenario_text(text, f"fuzz/{EXAMPLES[i].name}",
                                           base_dir=EXAMPLES[i].parent))

    @settings(cfg, max_examples=third)
    @given(st.integers(0, len(TEXTS) - 1), st.data())
    def mapping_case(i: int, data: st.DataObject) -> None:
        d = tomllib.loads(TEXTS[i])
        ps = paths(d)
        for _ in range(data.draw(st.integers(1, 3))):
            p = data.draw(st.sampled_from(ps))
            set_path(d, p, data.draw(anyvalue))
            ps = paths(d) or ps
        guarded(out, "mapping", lambda: repr(d),
                lambda: load_scenario_mapping(d, "fuzz-mapping", base_dir=EXAMPLES[i].parent))

    small = str(ROOT / "examples" / "subset-counters.toml")

    @settings(cfg, max_examples=max(1, n - 2 * third))
    @given(OPTIONS)
    def cli_case(opts: list[tuple[str, str | None]]) -> None:
        args = ["run", small]
        for o, v in opts:
            args += [o] if v is None else [o, v]
        args += ["--duration", "200us"]

        def go() -> None:
            r = CliRunner().invoke(main, args)
            if r.exit_code not in (0, 1, 2) or not isinstance(r.exception, (SystemExit,
                                                                           type(None))):
                raise AssertionError(f"exit {r.exit_code}: {r.exception!r}\n{r.stderr[-800:]}")
            if "Traceback" in r.stderr:
                raise AssertionError(r.stderr[-1500:])
        guarded(out, "cli", lambda: " ".join(args), go)

    import os
    import tempfile
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:  # --trace/--plot land here, if anywhere
        os.chdir(tmp)
        try:
            text_case()
            mapping_case()
            cli_case()
        finally:
            os.chdir(cwd)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=None, help="derandomize (repeatable)")
    a = ap.parse_args(argv)
    if a.inputs < 3:
        ap.error("--inputs must be at least 3")
    t0 = time.perf_counter()
    out = fuzz(a.inputs, Outcome(), a.seed)
    wall = time.perf_counter() - t0
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(out.by_kind.items()))
    print(f"fuzz: {out.runs} inputs ({kinds}) in {wall:.0f} s: {len(out.tracebacks)} "
          f"tracebacks, {len(out.hangs)} hangs (limit {LIMIT_S} s each)")
    for t in out.tracebacks[:10]:
        print("TRACEBACK " + t)
    for h in out.hangs[:10]:
        print("HANG " + h)
    return 1 if out.tracebacks or out.hangs else 0


if __name__ == "__main__":
    sys.exit(main())
