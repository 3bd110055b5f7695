"""docs/sweep.md documents every key of the sweep schema, in the section of its table, and
documents no key the schema does not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from pmupart.sweep import schema as S

DOC = Path(__file__).resolve().parent.parent / "docs" / "sweep.md"

#: (heading text that opens the table's section, the model)
TABLES: list[tuple[str, type[BaseModel]]] = [
    ("`[sweep]`", S.SweepTable),
    ("`[[axis]]`", S.AxisTable),
    ("`axis.range`", S.RangeTable),
    ("`axis.sample`", S.SampleTable),
    ("`[[metric]]`", S.MetricTable),
    ("`[report]`", S.ReportTable),
]


def sections() -> dict[str, str]:
    out: dict[str, str] = {}
    head = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            head = line.lstrip("#").strip()
            out[head] = ""
        else:
            out[head] = out.get(head, "") + line + "\n"
    return out


def documented_keys(text: str) -> list[str]:
    """The first-column keys of the section's key table (``| `key` | type | ...``)."""
    return re.findall(r"^\| `([a-z_]+)` \|", text, re.M)


@pytest.mark.parametrize(("heading", "model"), TABLES, ids=[h for h, _ in TABLES])
def test_every_key_is_documented_in_its_section(heading: str, model: type[BaseModel]) -> None:
    secs = {h: t for h, t in sections().items() if h.startswith(heading)}
    assert len(secs) == 1, f"docs/sweep.md needs one section headed {heading}"
    keys = documented_keys(next(iter(secs.values())))
    assert keys, f"no key table under {heading}"
    assert sorted(keys) == sorted(model.model_fields), \
        f"{heading}: documented {sorted(keys)}, schema has {sorted(model.model_fields)}"


def test_every_top_level_table_has_a_section() -> None:
    heads = " ".join(sections())
    for key in S.SweepFile.model_fields:
        assert f"[{key}]" in heads or f"[[{key}]]" in heads, f"no section for [{key}]"


def test_every_reduce_and_combine_choice_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for choice in ("sum", "mean", "min", "max", "count", "grid", "zip"):
        assert f'`"{choice}"`' in text
