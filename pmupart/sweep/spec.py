"""Load a sweep TOML file into a :class:`Sweep`: the base scenario, the axes, the points.

Two passes, as the scenario loader: pydantic checks the shape (:mod:`pmupart.sweep.schema`),
then this module checks the meaning and enumerates the points.  Every axis value is applied
to the base scenario with the ``--set`` machinery (:func:`pmupart.scenario.loader.
load_scenario_mapping` with overrides) and checked by the scenario loader, so a value the
scenario does not take is reported at the sweep file's line for that value.  Every error is
a :class:`SweepError` (``path:line: field: msg``).  The format is documented in
``docs/sweep.md``.

A point's seed derives from the sweep's seed and the point's axis values (never from its
position or the order runs finish in), so the same sweep gives the same table whatever
executes it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pmupart.errors import InputError, suggest
from pmupart.scenario.loader import (
    ScenarioError,
    first_validation_error,
    load_scenario_mapping,
    parse_override_path,
    parse_toml,
    read_input,
)
from pmupart.sweep import expr
from pmupart.sweep import schema as S
from pmupart.tomlpos import Path as Loc
from pmupart.tomlpos import field_path, line_of, locate

__all__ = ["Axis", "Metric", "Point", "Sweep", "SweepError", "load_sweep", "load_sweep_text",
           "toml_literal"]

#: Columns every results table has besides the axes and the metrics.
FIXED_COLUMNS = ("point", "seed", "verdict", "violations", "error", "wall_s")
#: ``key = "seed"`` is short for the scenario's seed.
_ALIASES = {"seed": "scenario.seed"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Values checked against the base scenario per axis (all of them up to this many).
_CHECK_VALUES = 1000


class SweepError(InputError):
    """A sweep file is malformed or inconsistent (``path:line: field: msg``)."""


@dataclass(frozen=True)
class Axis:
    """One axis: a scenario key (a ``--set`` path) and the values it takes."""

    name: str
    key: str
    values: tuple[Any, ...]
    zip: str | None = None

    def override(self, value: Any) -> str:
        """The ``--set`` string that gives the key ``value``."""
        return f"{self.key}={toml_literal(value)}"


@dataclass(frozen=True)
class Metric:
    """A number taken from each run's report (see :mod:`pmupart.sweep.runner`)."""

    name: str
    path: str
    relative_to: str | None = None
    reduce: str = "sum"
    default: float | None = None


@dataclass(frozen=True)
class Point:
    """One run: its index in the sweep, a value per axis, its seed."""

    index: int
    values: tuple[Any, ...]
    seed: int


@dataclass(frozen=True)
class Sweep:
    name: str
    description: str
    source: str
    seed: int
    base: Mapping[str, Any]
    base_source: str
    base_dir: str
    axes: tuple[Axis, ...]
    metrics: tuple[Metric, ...]
    constraints: tuple[str, ...]
    batch: int
    report: Mapping[str, Any]
    points: tuple[Point, ...] = field(repr=False)

    def overrides(self, point: Point) -> list[str]:
        """The ``--set`` strings of ``point`` (the seed included)."""
        out = [a.override(v) for a, v in zip(self.axes, point.values, strict=True)]
        out.append(f"scenario.seed={point.seed}")
        return out

    @property
    def columns(self) -> list[str]:
        return ["point", *[a.name for a in self.axes], "seed", *[m.name for m in self.metrics],
                "verdict", "violations", "error", "wall_s"]

    def fingerprint(self) -> str:
        """A hash of everything that decides the results (base, axes, points, metrics):
        a checkpoint from another sweep is refused on ``--resume``."""
        doc = {"base": self.base, "axes": [[a.name, a.key, list(a.values)] for a in self.axes],
               "points": [[p.index, list(p.values), p.seed] for p in self.points],
               "metrics": [[m.name, m.path, m.relative_to, m.reduce, m.default]
                           for m in self.metrics]}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()
                              ).hexdigest()[:16]

    def meta(self) -> dict[str, Any]:
        """What the results file keeps of the sweep (for ``pmupart sweep report``)."""
        return {"name": self.name, "description": self.description, "source": self.source,
                "seed": self.seed, "fingerprint": self.fingerprint(),
                "axes": [{"name": a.name, "key": a.key} for a in self.axes],
                "metrics": [{"name": m.name, "path": m.path, "relative_to": m.relative_to,
                             "reduce": m.reduce} for m in self.metrics],
                "report": dict(self.report), "points": len(self.points)}


def toml_literal(v: Any) -> str:
    """``v`` as a TOML value (what ``--set key=...`` takes)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_literal(x)}"
                               for k, x in v.items()) + "}"
    raise TypeError(f"no TOML spelling for {v!r}")


def point_seed(sweep_seed: int, names: Sequence[str], values: Sequence[Any]) -> int:
    """The seed of the run at a point: a hash of the sweep seed and the point's axis values
    (by name), so it does not depend on the point's position or who runs it."""
    doc = json.dumps([sweep_seed, sorted(zip(names, values, strict=True))], default=str,
                     sort_keys=True)
    return int.from_bytes(hashlib.sha256(doc.encode()).digest()[:4], "big")


# ---------------------------------------------------------------------- public API
def load_sweep(path: str | Path) -> Sweep:
    """Load and check the sweep file ``path``.  Raises :class:`SweepError`."""
    p = Path(path)
    return load_sweep_text(read_input(p, SweepError, "the sweep file"), source=str(p),
                           base_dir=p.parent)


def load_sweep_text(text: str, source: str = "<text>", *,
                    base_dir: str | Path | None = None) -> Sweep:
    """Load and check sweep TOML ``text``; ``base_dir`` resolves a relative ``sweep.base``."""
    data = parse_toml(text, source, SweepError)
    return _Builder(data, text, source, Path(base_dir) if base_dir else Path(".")).build()


# ---------------------------------------------------------------------- meaning
class _Builder:
    def __init__(self, data: dict[str, Any], text: str, source: str, base_dir: Path) -> None:
        self.data = data
        self.text = text
        self.source = source
        self.base_dir = base_dir
        self.index = locate(text)

    def fail(self, loc: Loc, msg: str) -> SweepError:
        return SweepError(self.source, line_of(self.text, loc, self.index), field_path(loc), msg)

    # ------------------------------------------------------------- base scenario
    def base(self, f: S.SweepFile) -> tuple[dict[str, Any], str, Path]:
        if (f.sweep.base is None) == (f.base is None):
            raise self.fail(("sweep", "base"), "expected exactly one base scenario: 'base' in "
                            "[sweep] (a scenario file) or a [base] table (the scenario inline), "
                            "found " + ("both" if f.base is not None else "neither"))
        if f.base is not None:
            data = dict(f.base)
            try:
                load_scenario_mapping(data, self.source, base_dir=self.base_dir)
            except ScenarioError as e:
                loc: Loc = ("base", *parse_override_path(e.field)) if e.field else ("base",)
                raise self.fail(loc, e.msg) from None
            return data, f"{self.source} [base]", self.base_dir
        assert f.sweep.base is not None
        p = Path(f.sweep.base)
        if not p.is_absolute():
            p = self.base_dir / p
        try:
            btext = p.read_text(encoding="utf-8")
        except OSError as e:
            raise self.fail(("sweep", "base"), f"cannot read the base scenario {str(p)!r}: "
                            f"{e.strerror or e}") from None
        try:
            data = tomllib.loads(btext)
        except tomllib.TOMLDecodeError as e:
            raise self.fail(("sweep", "base"), f"the base scenario {str(p)!r} is not valid "
                            f"TOML: {e}") from None
        from pmupart.scenario.loader import load_scenario_text

        load_scenario_text(btext, str(p), base_dir=p.parent)  # its own file:line errors
        return data, str(p), p.parent

    # ------------------------------------------------------------- axes
    def axis_values(self, i: int, a: S.AxisTable, seed: int) -> tuple[list[Any], str]:
        loc: Loc = ("axis", i)
        given = [k for k in ("values", "range", "sample") if getattr(a, k) is not None]
        if len(given) != 1:
            raise self.fail(loc, "expected exactly one of 'values' (a list), 'range' "
                            "({ first, last, step }) or 'sample' ({ count, seed, low/high or "
                            f"choices }}), found {' and '.join(given) or 'none'}")
        kind = given[0]
        if a.values is not None:
            if not a.values:
                raise self.fail((*loc, "values"), "expected at least one value, found []")
            return list(a.values), kind
        if a.range is not None:
            r = a.range
            if r.step == 0 or (r.last - r.first) * r.step < 0:
                raise self.fail((*loc, "range", "step"), f"step {r.step} never goes from "
                                f"{r.first} to {r.last}")
            stop = r.last + (1 if r.step > 0 else -1)
            return list(range(r.first, stop, r.step)), kind
        s = a.sample
        assert s is not None
        rng = random.Random(s.seed if s.seed is not None else seed * 1_000_003 + i)
        if s.choices is not None:
            if s.low is not None or s.high is not None:
                raise self.fail((*loc, "sample"), "expected either 'choices' or 'low' and "
                                "'high', found both")
            if not s.choices:
                raise self.fail((*loc, "sample", "choices"), "expected at least one choice, "
                                "found []")
            return [rng.choice(s.choices) for _ in range(s.count)], kind
        if s.low is None or s.high is None:
            raise self.fail((*loc, "sample"), "expected 'low' and 'high' (numbers) or "
                            "'choices' (a list)")
        if s.high < s.low:
            raise self.fail((*loc, "sample", "high"), f"expected high >= low ({s.low}), "
                            f"found {s.high}")
        if isinstance(s.low, int) and isinstance(s.high, int):
            return [rng.randint(s.low, s.high) for _ in range(s.count)], kind
        return [rng.uniform(float(s.low), float(s.high)) for _ in range(s.count)], kind

    def axes(self, f: S.SweepFile, base: dict[str, Any], base_source: str,
             base_dir: Path) -> tuple[Axis, ...]:
        out: list[Axis] = []
        names: dict[str, int] = {}
        for i, a in enumerate(f.axis):
            loc: Loc = ("axis", i)
            key = _ALIASES.get(a.key.strip(), a.key.strip())
            path = parse_override_path(key)
            if not path or not isinstance(path[0], str) or \
                    re.fullmatch(r"[A-Za-z0-9_.\-\[\]\"]+", key) is None:
                raise self.fail((*loc, "key"), f"expected a scenario key as --set takes it "
                                f"(machine.preset, vm[0].partition), found {a.key!r}")
            name = a.name if a.name is not None else str(next(
                p for p in reversed(path) if isinstance(p, str)))
            if a.name is None and key == "scenario.seed":
                name = "replica"  # the run seed mixes it in: it numbers replicas
            name = name.replace("-", "_")
            if not _IDENT.match(name):
                raise self.fail((*loc, "name" if a.name else "key"), f"the axis name {name!r} "
                                "is not an identifier (letters, digits, _): set 'name'")
            if name in names:
                raise self.fail((*loc, "name" if a.name else "key"), f"duplicate axis name "
                                f"{name!r} (axis[{names[name]}] has it already): set 'name'")
            if name in FIXED_COLUMNS:
                raise self.fail((*loc, "name" if a.name else "key"), f"the axis name {name!r} "
                                f"is a column of every results table ({', '.join(FIXED_COLUMNS)})"
                                ": set 'name'")
            names[name] = i
            values, kind = self.axis_values(i, a, f.sweep.seed)
            kinds = {_kind(v) for v in values}
            if len(kinds) > 1:
                raise self.fail((*loc, kind), f"expected values of one type, found "
                                f"{', '.join(sorted(kinds))}")
            axis = Axis(name, key, tuple(values), a.zip)
            self.check_values(axis, i, kind, base, base_source, base_dir)
            out.append(axis)
        return tuple(out)

    def check_values(self, axis: Axis, i: int, kind: str, base: dict[str, Any],
                     base_source: str, base_dir: Path) -> None:
        """Each distinct value (up to ``_CHECK_VALUES``) through the scenario loader."""
        seen: set[str] = set()
        for j, v in enumerate(axis.values):
            lit = toml_literal(v)
            if lit in seen:
                continue
            seen.add(lit)
            if len(seen) > _CHECK_VALUES:
                break
            try:
                load_scenario_mapping(base, base_source, overrides=[axis.override(v)],
                                      base_dir=base_dir)
            except ScenarioError as e:
                loc: Loc = ("axis", i, "values", j) if kind == "values" else ("axis", i, kind)
                what = f"{e.field}: {e.msg}" if e.field else e.msg
                raise self.fail(loc, f"{axis.key} = {lit}: {what}") from None

    # ------------------------------------------------------------- points
    def points(self, f: S.SweepFile, axes: tuple[Axis, ...]) -> tuple[Point, ...]:
        groups: dict[str, list[int]] = {}
        for i, a in enumerate(axes):
            label = "*" if f.sweep.combine == "zip" else (f"zip:{a.zip}" if a.zip else f"#{i}")
            groups.setdefault(label, []).append(i)
        columns: list[list[tuple[int, ...]]] = []
        for members in groups.values():
            n = len(axes[members[0]].values)
            for k in members[1:]:
                if len(axes[k].values) != n:
                    a0, ak = axes[members[0]], axes[k]
                    raise self.fail(("axis", k), f"zipped axes must have as many values: "
                                    f"{ak.name!r} has {len(ak.values)}, {a0.name!r} has {n}")
            columns.append([(j,) for j in range(n)])
        names = [a.name for a in axes]
        checks = [(k, c, expr.compile_constraint(c, names)) for k, c in
                  enumerate(f.sweep.constraints)]
        for k, c, err in checks:
            if isinstance(err, str):
                raise self.fail(("sweep", "constraints", k), f"{c!r}: {err}")
        out: list[Point] = []
        order = list(groups.values())
        for combo in itertools.product(*columns):
            values: list[Any] = [None] * len(axes)
            for members, (j,) in zip(order, combo, strict=True):
                for m in members:
                    values[m] = axes[m].values[j]
            env = dict(zip(names, values, strict=True))
            keep = True
            for k, c, code in checks:
                assert not isinstance(code, str)
                try:
                    ok = expr.evaluate(code, env)
                except expr.ExprError as e:
                    raise self.fail(("sweep", "constraints", k), f"{c!r} at {env}: {e}"
                                    ) from None
                if not ok:
                    keep = False
                    break
            if keep:
                out.append(Point(len(out), tuple(values),
                                 point_seed(f.sweep.seed, names, values)))
        if not out:
            raise self.fail(("sweep", "constraints"), "the constraints leave no point to run")
        return tuple(out)

    # ------------------------------------------------------------- metrics, report
    def metrics(self, f: S.SweepFile, axes: tuple[Axis, ...]) -> tuple[Metric, ...]:
        from pmupart.sweep.runner import parse_metric_path

        out: list[Metric] = []
        taken = {a.name: f"axis {a.name!r}" for a in axes}
        taken.update({c: "a column of every results table" for c in FIXED_COLUMNS})
        for i, m in enumerate(f.metric):
            loc: Loc = ("metric", i)
            if not _IDENT.match(m.name):
                raise self.fail((*loc, "name"), f"expected an identifier (letters, digits, _), "
                                f"found {m.name!r}")
            if m.name in taken:
                raise self.fail((*loc, "name"), f"the metric name {m.name!r} is taken "
                                f"({taken[m.name]})")
            taken[m.name] = f"metric[{i}]"
            for k in ("path", "relative_to"):
                p = getattr(m, k)
                if p is None:
                    continue
                try:
                    parse_metric_path(p)
                except ValueError as e:
                    raise self.fail((*loc, k), str(e)) from None
            out.append(Metric(m.name, m.path, m.relative_to, m.reduce,
                              None if m.default is None else float(m.default)))
        return tuple(out)

    def report(self, f: S.SweepFile, axes: tuple[Axis, ...],
               metrics: tuple[Metric, ...]) -> dict[str, Any]:
        r = f.report
        anames = [a.name for a in axes]
        mnames = [m.name for m in metrics]
        for k in ("x", "y", "facet"):
            v = getattr(r, k)
            if v is not None and v not in anames:
                raise self.fail(("report", k), f"expected an axis name, found {v!r}"
                                f"{suggest(v, anames)}; axes: {', '.join(anames)}")
        for j, v in enumerate(r.group_by or []):
            if v not in anames:
                raise self.fail(("report", "group_by", j), f"expected an axis name, found "
                                f"{v!r}{suggest(v, anames)}; axes: {', '.join(anames)}")
        for j, v in enumerate(r.metrics or []):
            if v not in mnames:
                raise self.fail(("report", "metrics", j), f"expected a metric name, found "
                                f"{v!r}{suggest(v, mnames)}; metrics: "
                                f"{', '.join(mnames) or 'none'}")
        return r.model_dump()

    # ------------------------------------------------------------- whole
    def build(self) -> Sweep:
        try:
            f = S.SweepFile.model_validate(self.data)
        except ValidationError as e:
            loc, msg = first_validation_error(e, self.text, self.index, S.SweepFile)
            raise self.fail(loc, msg) from None
        base, base_source, base_dir = self.base(f)
        axes = self.axes(f, base, base_source, base_dir)
        points = self.points(f, axes)
        if points:
            try:
                load_scenario_mapping(base, base_source, base_dir=base_dir,
                                      overrides=[a.override(v) for a, v in
                                                 zip(axes, points[0].values, strict=True)])
            except ScenarioError as e:
                raise self.fail(("axis",), f"the first point does not load: {e}") from None
        metrics = self.metrics(f, axes)
        report = self.report(f, axes, metrics)
        return Sweep(name=f.sweep.name, description=f.sweep.description, source=self.source,
                     seed=f.sweep.seed, base=base, base_source=base_source,
                     base_dir=str(base_dir), axes=axes, metrics=metrics,
                     constraints=tuple(f.sweep.constraints), batch=f.sweep.batch,
                     report=report, points=points)


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "booleans"
    if isinstance(v, int | float):
        return "numbers"
    if isinstance(v, str):
        return "strings"
    if isinstance(v, list):
        return "arrays"
    return "tables"
