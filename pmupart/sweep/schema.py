"""The sweep TOML schema as pydantic models (the shape of the file, nothing more).

Each model mirrors one TOML table, so a pydantic error location is the TOML path
(``axis[1].range.step``) and errors read like the scenario loader's (``file:line: path:
msg``).  Meaning (axis keys against the base scenario, each axis value, constraint
expressions, metric paths) is checked by :mod:`pmupart.sweep.spec`.  Every key is documented
in ``docs/sweep.md`` (``tests/test_sweep_docs.py`` checks that).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: An axis value: anything a scenario key takes (a TOML scalar, array or inline table).
AxisValue = bool | int | float | str | list[Any] | dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SweepTable(_Strict):
    name: str
    description: str = ""
    base: str | None = None
    seed: int = Field(default=0, ge=0)
    combine: Literal["grid", "zip"] = "grid"
    constraints: list[str] = Field(default_factory=list)
    batch: int = Field(default=0, ge=0)


class RangeTable(_Strict):
    first: int
    last: int
    step: int = 1


class SampleTable(_Strict):
    count: int = Field(ge=1, le=1_000_000)
    seed: int | None = Field(default=None, ge=0)
    low: int | float | None = None
    high: int | float | None = None
    choices: list[AxisValue] | None = None


class AxisTable(_Strict):
    key: str
    name: str | None = None
    values: list[AxisValue] | None = None
    range: RangeTable | None = None
    sample: SampleTable | None = None
    zip: str | None = None


class MetricTable(_Strict):
    name: str
    path: str
    relative_to: str | None = None
    reduce: Literal["sum", "mean", "min", "max", "count"] = "sum"
    default: float | int | None = None


class ReportTable(_Strict):
    x: str | None = None
    y: str | None = None
    facet: str | None = None
    group_by: list[str] | None = None
    metrics: list[str] | None = None


class SweepFile(_Strict):
    sweep: SweepTable
    base: dict[str, Any] | None = None
    axis: list[AxisTable] = Field(min_length=1)
    metric: list[MetricTable] = Field(default_factory=list)
    report: ReportTable = Field(default_factory=ReportTable)
