"""The checker's random state machine (tests/test_check_stateful.py) at scale.

Not part of the test suite (it takes minutes): run it regularly with

    python benchmarks/stateful_at_scale.py [--examples 1500] [--steps 25] [--seed N]

It drives ``CheckedMachine`` with fresh random examples (not derandomized, no example
database), ``--examples`` of them with up to ``--steps`` rules each, and prints how many
examples ran, how many met each known finding (``KNOWN_FINDINGS``: hazards of the design
with their own scenario under ``examples/findings/``) and the outcome.  Exit status 0 when
every invariant held (known findings aside), 1 with the failing case (Hypothesis's shrunk
example and the checker's report) otherwise.  ``--seed`` makes a run repeatable.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import test_check_stateful as sm


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=1500)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--seed", type=int, default=None, help="repeatable run (random.seed)")
    a = ap.parse_args(argv)
    if a.examples < 1 or a.steps < 1:
        ap.error("--examples and --steps must be at least 1")
    runs = {"examples": 0}

    class Counted(sm.CheckedMachine):
        def teardown(self) -> None:
            runs["examples"] += 1
            super().teardown()

    if a.seed is not None:
        import random
        random.seed(a.seed)
    t0 = time.perf_counter()
    failure = None
    try:
        run_state_machine_as_test(Counted, settings=settings(  # type: ignore[no-untyped-call]
            max_examples=a.examples, stateful_step_count=a.steps, deadline=None,
            derandomize=False, database=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck)))
    except BaseException as e:  # an AssertionError with the checker's report, or a group
        if isinstance(e, KeyboardInterrupt):
            raise
        failure = "".join(traceback.format_exception(e))
    wall = time.perf_counter() - t0
    print(f"state machine at scale: {a.examples} examples x up to {a.steps} steps requested, "
          f"{runs['examples']} run (shrinking included) in {wall:.0f} s")
    for slug in sm.KNOWN_FINDINGS:
        print(f"  known finding {slug}: met in {sm.FOUND[slug]} examples "
              f"(examples/findings/{slug}.toml)")
    if failure is None:
        print("result: every invariant held (known findings aside)")
        return 0
    print("result: FAILED\n" + failure[-6000:])
    return 1


if __name__ == "__main__":
    sys.exit(main())
