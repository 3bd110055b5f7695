"""Sweep files: axes, how they combine, seeds, and the file:line errors (pmupart.sweep.spec)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmupart.sweep import expr
from pmupart.sweep.spec import SweepError, load_sweep, load_sweep_text, point_seed, toml_literal

TINY = Path(__file__).parent / "sweeps" / "tiny.toml"

BASE = """\
[base.scenario]
name = "b"
duration = "5ms"

[base.machine]
preset = "rk3399"

[[base.vm]]
name = "vm0"
partition = true
"""


def sweep_text(axes: str, head: str = "", tail: str = "") -> str:
    return f'[sweep]\nname = "t"\n{head}\n{BASE}\n{axes}\n{tail}'


def error_of(text: str) -> SweepError:
    with pytest.raises(SweepError) as ei:
        load_sweep_text(text, "s.toml")
    return ei.value


def test_tiny_grid_with_constraint() -> None:
    sw = load_sweep(TINY)
    # 1 preset x reserved 0..6 (the constraint drops 6: rk3399 CPUs have 6 counters) x 2
    assert len(sw.points) == 1 * 6 * 2
    assert [a.name for a in sw.axes] == ["preset", "reserved", "partition"]
    assert sw.points[0].values == ("rk3399", 0, True)
    assert sw.points[-1].values == ("rk3399", 5, False)
    assert [p.index for p in sw.points] == list(range(12))
    assert sw.overrides(sw.points[3])[:3] == ['machine.preset="rk3399"',
                                             "machine.reserved_host_counters=1",
                                             "vm[0].partition=false"]
    assert sw.columns[:4] == ["point", "preset", "reserved", "partition"]


def test_seed_depends_on_values_not_position() -> None:
    a = load_sweep_text(sweep_text('[[axis]]\nkey = "machine.reserved_host_counters"\n'
                                   'values = [0, 1, 2]', head="seed = 3"), "a.toml")
    b = load_sweep_text(sweep_text('[[axis]]\nkey = "machine.reserved_host_counters"\n'
                                   'values = [2, 1]', head="seed = 3"), "b.toml")
    seeds_a = {p.values: p.seed for p in a.points}
    seeds_b = {p.values: p.seed for p in b.points}
    assert seeds_a[(2,)] == seeds_b[(2,)] and seeds_a[(1,)] == seeds_b[(1,)]
    assert len(set(seeds_a.values())) == 3
    c = load_sweep_text(sweep_text('[[axis]]\nkey = "machine.reserved_host_counters"\n'
                                   'values = [0, 1, 2]', head="seed = 4"), "c.toml")
    assert {p.values: p.seed for p in c.points}[(2,)] != seeds_a[(2,)]
    assert point_seed(3, ["x"], [2]) == point_seed(3, ["x"], [2])


def test_zip_and_grid_and_range_and_sample() -> None:
    axes = """\
[[axis]]
key = "machine.reserved_host_counters"
name = "reserved"
range = { first = 0, last = 4, step = 2 }
zip = "z"

[[axis]]
key = "vm[0].nr_counters"
values = [1, 2, 3]
zip = "z"

[[axis]]
key = "seed"
name = "replica"
sample = { count = 4, seed = 11, low = 0, high = 1000 }
"""
    sw = load_sweep_text(sweep_text(axes), "z.toml")
    assert len(sw.points) == 3 * 4
    pairs = {(p.values[0], p.values[1]) for p in sw.points}
    assert pairs == {(0, 1), (2, 2), (4, 3)}
    again = load_sweep_text(sweep_text(axes), "z.toml")
    assert sw.axes[2].values == again.axes[2].values  # the sample's seed fixes it
    assert all(0 <= v <= 1000 for v in sw.axes[2].values)
    assert sw.axes[2].key == "scenario.seed"
    whole = load_sweep_text(sweep_text(axes.replace('zip = "z"\n', ''), head='combine = "zip"'
                                       ).replace("count = 4", "count = 3"), "w.toml")
    assert len(whole.points) == 3


def test_inline_tables_and_arrays_as_values() -> None:
    sw = load_sweep_text(sweep_text('[[axis]]\nkey = "vm[0].affinity"\nvalues = [[0, 1], [2]]'),
                         "a.toml")
    assert sw.overrides(sw.points[0])[0] == "vm[0].affinity=[0, 1]"
    assert toml_literal({"a b": 1.5, "c": "x"}) == '{"a b" = 1.5, "c" = "x"}'


@pytest.mark.parametrize(("text", "line", "field", "words"), [
    (sweep_text('[[axis]]\nkey = "machine.reserved_host_counters"\nvalues = [0, "two"]'),
     17, "axis[0].values", "one type"),
    (sweep_text('[[axis]]\nkey = "machine.preset"\nvalues = ["grace",\n "gravitn3"]'),
     18, "axis[0].values[1]", "graviton3"),
    (sweep_text('[[axis]]\nkey = "vm[0].partiton"\nvalues = [true]'),
     17, "axis[0].values[0]", "did you mean 'partition'"),
    (sweep_text('[[axis]]\nkey = "vm[3].partition"\nvalues = [true]'),
     17, "axis[0].values[0]", "no such array element"),
    (sweep_text('[[axis]]\nkey = "machine.preset"\nvaleus = ["grace"]'),
     17, "axis[0].valeus", "did you mean 'values'"),
    (sweep_text('[[axis]]\nkey = "machine.preset"\nvalues = ["grace"]\nrange = {first=0,last=1}'),
     15, "axis[0]", "exactly one of"),
    (sweep_text('[[axis]]\nkey = "machine.reserved_host_counters"\nvalues = [1]',
                head='constraints = ["reserved < counters(preset)"]'),
     3, "sweep.constraints[0]", "unknown name 'reserved'"),
    (sweep_text('[[axis]]\nkey = "machine.reserved_host_counters"\nvalues = [1]',
                head='constraints = ["__import__(\'os\')"]'),
     3, "sweep.constraints[0]", "only these functions"),
    (sweep_text('[[axis]]\nkey = "machine.reserved_host_counters"\nvalues = [1]',
                head='constraints = ["reserved_host_counters > 5"]'),
     3, "sweep.constraints", "no point"),
    (sweep_text('[[axis]]\nkey = "machine.preset"\nvalues = ["grace"]',
                tail='[[metric]]\nname = "preset"\npath = "x"'),
     19, "metric[0].name", "taken"),
    (sweep_text('[[axis]]\nkey = "machine.preset"\nvalues = ["grace"]',
                tail='[[metric]]\nname = "m"\npath = "vms[vm0"'),
     20, "metric[0].path", "expected a path"),
    (sweep_text('[[axis]]\nkey = "machine.preset"\nvalues = ["grace"]',
                tail='[report]\nx = "presett"'),
     19, "report.x", "did you mean 'preset'"),
    (sweep_text('[[axis]]\nkey = "machine.preset"\nvalues = ["grace"]', head='base = "x.toml"'),
     3, "sweep.base", "found both"),
    (sweep_text('[[axis]]\nkey = "machine.preset"\nvalues = ["grace"]').replace(
        'duration = "5ms"', 'duration = 5'), 6, "base.scenario.duration", "duration"),
    ('[sweep]\nname = "t"\nbase = "x.toml"\n', 0, "axis", "required"),
])
def test_errors_name_file_line_and_path(text: str, line: int, field: str, words: str) -> None:
    e = error_of(text)
    assert (e.path, e.line, e.field) == ("s.toml", line, field), str(e)
    assert words in e.msg, str(e)
    where = f"s.toml:{line}" if line else "s.toml"
    assert str(e).startswith(f"{where}: {field}: ")


def test_zipped_axes_of_different_lengths() -> None:
    e = error_of(sweep_text('[[axis]]\nkey = "machine.preset"\nvalues = ["grace", "ampere-altra"]'
                            '\nzip = "a"\n\n[[axis]]\nkey = "vm[0].partition"\nvalues = [true]'
                            '\nzip = "a"'))
    assert e.field == "axis[1]" and "as many values" in e.msg


def test_base_file_relative_to_the_sweep_file(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text(BASE.replace("base.", ""), encoding="utf-8")
    (tmp_path / "s.toml").write_text('[sweep]\nname = "t"\nbase = "base.toml"\n\n[[axis]]\n'
                                     'key = "seed"\nvalues = [1, 2]\n', encoding="utf-8")
    sw = load_sweep(tmp_path / "s.toml")
    assert sw.base["machine"] == {"preset": "rk3399"} and len(sw.points) == 2
    (tmp_path / "s.toml").write_text('[sweep]\nname = "t"\nbase = "nope.toml"\n\n[[axis]]\n'
                                     'key = "seed"\nvalues = [1]\n', encoding="utf-8")
    with pytest.raises(SweepError, match=r"s.toml:3: sweep.base: cannot read"):
        load_sweep(tmp_path / "s.toml")


def test_constraint_expressions() -> None:
    tree = expr.compile_constraint("r < counters(p) and not (q in ('a', 'b'))", ["r", "p", "q"])
    assert not isinstance(tree, str)
    assert expr.evaluate(tree, {"r": 5, "p": "grace", "q": "c"}) is True
    assert expr.evaluate(tree, {"r": 6, "p": "grace", "q": "c"}) is False
    assert "not allowed" in str(expr.compile_constraint("r.__class__", ["r"]))
    with pytest.raises(expr.ExprError, match="tensor-g9"):
        expr.evaluate(tree, {"r": 1, "p": "tensor-g9", "q": "c"})


def test_fleet_example_loads_and_its_metrics_find_values() -> None:
    from pmupart.sweep.runner import Job, run_point

    path = Path(__file__).resolve().parent.parent / "examples" / "sweeps" / \
        "fleet-reservation.toml"
    text = path.read_text(encoding="utf-8")
    assert "THE ANSWER" in text and "Reserve 4 counters" in text
    sw = load_sweep(path)
    assert [a.name for a in sw.axes] == ["host", "reserved", "revision", "replica"]
    assert {p.values[0] for p in sw.points} == {"graviton3", "ampere-altra", "grace"}
    assert len(sw.points) == 3 * 7 * 2 * 2
    point = next(p for p in sw.points if p.values[:3] == ("grace", 4, "intent"))
    row = run_point(Job.of(sw), point)
    assert row["verdict"] == "ok" and row["_unmatched"] == [], row
    assert row["host_l1d"] == pytest.approx(1.0, abs=0.01)  # the header's answer at 4
    assert row["web_running"] == 100.0 and row["db_running"] < 50


def test_kvm_revision_is_an_axis() -> None:
    from pmupart.kvm.revision import REVISIONS

    names = list(REVISIONS)
    sw = load_sweep_text(sweep_text('[[axis]]\nkey = "kvm.revision"\nvalues = ['
                                    + ", ".join(f'"{n}"' for n in names) + "]"), "r.toml")
    assert [p.values[0] for p in sw.points] == names
    e = error_of(sweep_text('[[axis]]\nkey = "kvm.revision"\nvalues = ["v8", "v7"]'))
    assert (e.line, e.field) == (17, "axis[0].values[1]") and "kvm.revision" in e.msg
