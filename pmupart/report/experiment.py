"""The cover-letter comparison table: the model's emulated-vs-partitioned figures next to the
ones the partitioning series published (v1 cover letter, spec kvm-partitioning §3).

Plain data in, text out; the runs themselves are :mod:`pmupart.check.cover_letter`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["PUBLISHED", "ComparisonRow", "Published", "format_comparison", "percent_change"]

#: lore:20250602192702.2125115-1-coltonlewis@google.com (v1 cover letter), spec kvm-partitioning §3.
SOURCE = "lore:20250602192702.2125115-1-coltonlewis@google.com"


@dataclass(frozen=True, slots=True)
class Published:
    """One published measurement: the emulated and the partitioned value."""

    experiment: str
    metric: str
    unit: str  #: "s" or "%"
    emulated: float
    partitioned: float
    kind: Literal["change", "share"] = "change"  #: how to compare: relative change, or levels


#: The series' numbers (identical 10-counter machines, same guest image under QEMU).
PUBLISHED: tuple[Published, ...] = (
    Published("1 perf record -F 1000, 15 ev, gzip", "real time", "s", 4.143, 3.139),
    Published("1 perf record -F 1000, 15 ev, gzip", "sys time", "s", 0.159, 0.110),
    Published("2 perf stat -dd, SPECint", "real time", "s", 3789.16, 3525.67),
    Published("2 perf stat -dd, SPECint", "sys time", "s", 224.45, 15.98),
    Published("3 perf record -F 4000, 15 ev, stress-ng", "host kernel share", "%", 34.96, 0.97,
              "share"),
    Published("3 perf record -F 4000, 15 ev, stress-ng", "guest share", "%", 55.85, 91.06,
              "share"),
)


def percent_change(emulated: float, partitioned: float) -> float:
    """(partitioned - emulated) / emulated, in percent (NaN when emulated is 0)."""
    if emulated == 0:
        return math.nan
    return 100.0 * (partitioned - emulated) / emulated


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """The model's emulated and partitioned values for a published metric (same unit;
    the model's times are simulated and scaled, so only their ratio is compared)."""

    published: Published
    emulated: float
    partitioned: float
    model_unit: str = ""  #: e.g. "ms" for scaled times; default: the published unit
    label: str = ""  #: the model's metric when it is a variant of the published one

    def published_effect(self) -> str:
        return _effect(self.published.kind, self.published.emulated, self.published.partitioned)

    def model_effect(self) -> str:
        return _effect(self.published.kind, self.emulated, self.partitioned)

    def ratios(self) -> tuple[float, ...]:
        """Model over published: of the relative change for a "change" row; of the emulated
        and of the partitioned level for a "share" row (NaN where undefined)."""
        p = self.published
        if p.kind == "share":
            return (_div(self.emulated, p.emulated), _div(self.partitioned, p.partitioned))
        return (_div(percent_change(self.emulated, self.partitioned),
                     percent_change(p.emulated, p.partitioned)),)

    def ratio_text(self) -> str:
        return " / ".join("n/a" if math.isnan(r) else f"{r:.2f}" for r in self.ratios())

    def within(self, tolerance: float = 0.25) -> bool:
        """Every ratio within 1 +- ``tolerance``."""
        return all(not math.isnan(r) and abs(r - 1.0) <= tolerance for r in self.ratios())


def _div(a: float, b: float) -> float:
    if b == 0 or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def _effect(kind: str, e: float, p: float) -> str:
    if kind == "share":
        return f"{e:.2f}% -> {p:.2f}%"
    c = percent_change(e, p)
    return "n/a" if math.isnan(c) else f"{c:+.2f}%"


def _val(v: float, unit: str) -> str:
    if unit == "%":
        return f"{v:.2f}%"
    if unit == "ms":
        return f"{v:.3f} ms"
    return f"{v:.3f} {unit}".rstrip()


def format_comparison(rows: Sequence[ComparisonRow], markdown: bool = False) -> str:
    """The table: experiment, metric, published emulated/partitioned/effect, model
    emulated/partitioned/effect, and the ratio model/published (of the changes; of the
    emulated / partitioned levels for shares).  Plain aligned text, or a Markdown table."""
    head = ("experiment", "metric", "published emul", "published part", "published effect",
            "model emul", "model part", "model effect", "ratio")
    body: list[tuple[str, ...]] = []
    for r in rows:
        p = r.published
        mu = r.model_unit or p.unit
        body.append((p.experiment, r.label or p.metric, _val(p.emulated, p.unit),
                     _val(p.partitioned, p.unit), r.published_effect(), _val(r.emulated, mu),
                     _val(r.partitioned, mu), r.model_effect(), r.ratio_text()))
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    right = {2, 3, 4, 5, 6, 7, 8}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths)]
    out += [line(b) for b in body]
    return "\n".join(out) + "\n"
