"""The results table: one row per run, written as Parquet (pyarrow) and, on request, CSV.

Columns, in order: ``point``, one per axis (named by the axis), ``seed``, one per metric,
``verdict`` (``ok`` / ``violations`` / ``error``), ``violations`` (the checker's count),
``error`` (the exception of a run that raised), ``wall_s`` (seconds the run took).  Rows are
sorted by point.  Everything but ``wall_s`` is a function of the sweep file, so with
``wall_time=False`` (``--no-wall-time``) the file is the same byte for byte whatever ran
it.  The sweep's description (axes, metrics, the ``[report]`` table) is kept in the
Parquet schema's metadata under ``pmupart.sweep`` for ``pmupart sweep report``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pmupart.sweep.spec import Sweep

__all__ = ["META_KEY", "read_results", "write_csv", "write_parquet"]

META_KEY = b"pmupart.sweep"
Row = dict[str, Any]


def _axis_type(values: Sequence[Any]) -> Any:
    import pyarrow as pa

    if all(isinstance(v, bool) for v in values):
        return pa.bool_()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pa.int64()
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return pa.float64()
    return pa.string()


def _schema(sweep: Sweep, wall_time: bool) -> Any:
    import pyarrow as pa

    fields = [pa.field("point", pa.int64(), nullable=False)]
    fields += [pa.field(a.name, _axis_type(a.values)) for a in sweep.axes]
    fields.append(pa.field("seed", pa.int64(), nullable=False))
    fields += [pa.field(m.name, pa.float64()) for m in sweep.metrics]
    fields += [pa.field("verdict", pa.string(), nullable=False),
               pa.field("violations", pa.int64(), nullable=False),
               pa.field("error", pa.string())]
    if wall_time:
        fields.append(pa.field("wall_s", pa.float64()))
    meta = json.dumps(sweep.meta(), sort_keys=True).encode()
    return pa.schema(fields, metadata={META_KEY: meta})


def _column(rows: Sequence[Row], name: str, typ: Any) -> list[Any]:
    import pyarrow as pa

    out = []
    for r in rows:
        v = r.get(name)
        if v is not None and typ == pa.float64():
            v = float(v)
        elif v is not None and typ == pa.string() and not isinstance(v, str):
            from pmupart.sweep.spec import toml_literal
            v = toml_literal(v)
        out.append(v)
    return out


def to_table(rows: Sequence[Row], sweep: Sweep, *, wall_time: bool = True) -> Any:
    """The rows as a ``pyarrow.Table`` with the sweep's schema."""
    import pyarrow as pa

    schema = _schema(sweep, wall_time)
    arrays = [pa.array(_column(rows, f.name, f.type), type=f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_parquet(rows: Sequence[Row], sweep: Sweep, path: str | Path, *,
                  wall_time: bool = True) -> Path:
    """Write the results file (atomically: a crash leaves the old file or the new one)."""
    import pyarrow.parquet as pq

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    pq.write_table(to_table(rows, sweep, wall_time=wall_time), tmp, compression="zstd",
                   write_statistics=False)
    os.replace(tmp, p)
    return p


def write_csv(rows: Sequence[Row], sweep: Sweep, path: str | Path, *,
              wall_time: bool = True) -> Path:
    """The same rows as CSV (a header line, then one line per run; empty = no value)."""
    cols = [c for c in sweep.columns if wall_time or c != "wall_s"]
    p = Path(path)
    with p.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            line = []
            for c in cols:
                v = r.get(c)
                if v is None:
                    line.append("")
                elif isinstance(v, bool):
                    line.append("true" if v else "false")
                elif isinstance(v, float):
                    line.append(repr(v))
                elif isinstance(v, str | int):
                    line.append(str(v))
                else:
                    from pmupart.sweep.spec import toml_literal
                    line.append(toml_literal(v))
            w.writerow(line)
    return p


def read_results(path: str | Path) -> tuple[list[Row], dict[str, Any]]:
    """The rows of a results file and the sweep description kept in it."""
    import pyarrow.parquet as pq

    from pmupart.sweep.spec import SweepError

    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise SweepError(str(path), 0, "", "no such results file") from None
    except Exception as e:  # pyarrow's ArrowInvalid and friends: not a Parquet file
        raise SweepError(str(path), 0, "", f"not a Parquet results file: {e}") from None
    meta_raw = (table.schema.metadata or {}).get(META_KEY)
    if meta_raw is None:
        raise SweepError(str(path), 0, "", "not a pmupart sweep results file (no "
                         "'pmupart.sweep' metadata)")
    meta = json.loads(meta_raw)
    return table.to_pylist(), meta
