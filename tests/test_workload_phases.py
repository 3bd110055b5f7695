"""``Workload.changes`` and ``Workload.steady_until``: where a workload's behaviour really
changes (the engine's fast-forward skips up to there, pmupart/sim/fastforward.py), checked
against a walk over ``Context.phase_at``, the engine's own reading of the phases."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from pmupart.sim.engine import Context
from pmupart.sim.spec import Phase, Workload

KINDS = (Phase(kernel_fraction=0.1), Phase(kernel_fraction=0.3))


def _behaviour(w: Workload, t: int) -> Phase:
    p, _ = Context.phase_at(SimpleNamespace(workload=w), t)  # type: ignore[arg-type]
    return Phase(rates=p.rates, cpi=p.cpi, kernel_fraction=p.kernel_fraction,
                 core_rates=p.core_rates)


def _walk(w: Workload, t: int, laps: int = 3) -> int | None:
    """The first boundary after ``t`` where the behaviour differs from ``t``'s, by walking
    phase by phase (None: not within ``laps`` laps of the phases)."""
    now = _behaviour(w, t)
    x = t
    for _ in range(laps * len(w.phases) + 1):
        _, left = Context.phase_at(SimpleNamespace(workload=w), x)  # type: ignore[arg-type]
        if left >= 1 << 62:
            return None
        x += left
        if _behaviour(w, x) != now:
            return x
    return None


@st.composite
def workloads(draw: st.DrawFn) -> Workload:
    n = draw(st.integers(1, 4))
    phases = []
    for i in range(n):
        kind = KINDS[draw(st.integers(0, 1))]
        last_open = i == n - 1 and draw(st.booleans())
        dur = None if last_open else draw(st.integers(1, 50)) * 10
        phases.append(Phase(dur, kind.rates, kind.cpi, kind.kernel_fraction))
    return Workload("w", tuple(phases))


@settings(max_examples=300, deadline=None)
@given(workloads(), st.integers(0, 1000))
def test_steady_until_is_the_next_change_of_behaviour(w: Workload, t: int) -> None:
    assert w.steady_until(t) == _walk(w, t)


def test_examples() -> None:
    a, b = Phase(100, kernel_fraction=0.1), Phase(50, kernel_fraction=0.3)
    assert Workload("w", (a,)).steady_until(5) is None  # one phase, looped: never changes
    assert Workload("w", (a, a)).changes() == []
    assert Workload("w", (a, b)).changes() == [0, 1]  # b -> a at each new lap too
    assert Workload("w", (a, b)).steady_until(120) == 150
    assert Workload("w", (a, a, b, a)).steady_until(260) == 550  # 250..550 is all a
    open_b = Phase(None, kernel_fraction=0.3)
    assert Workload("w", (a, open_b)).steady_until(50) == 100
    assert Workload("w", (a, open_b)).steady_until(150) is None
