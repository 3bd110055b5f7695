"""Plots: PNGs of the expected size, with real content, deterministic, and clear input errors."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pmupart.report.plots import (
    CYCLE_COUNTER,
    CountSeries,
    OwnershipSpan,
    counter_label,
    owner_colours,
    plot_counted_vs_true,
    plot_ownership,
    plot_run,
)

pytest.importorskip("matplotlib")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def colours_in(path: Path) -> set[tuple[int, ...]]:
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
        return {c for _, c in (rgb.getcolors(maxcolors=1 << 20) or [])}


def spans() -> list[OwnershipSpan]:
    out = []
    for cpu in (0, 4):
        for c in (0, 1, 2, 3, CYCLE_COUNTER):
            owners = ["host", "host"] if c < 2 else ["free", "vm0", "vm1"]
            t = 0
            for k, o in enumerate(owners * 2):
                out.append(OwnershipSpan(cpu, c, t, t + 1_000_000 * (k + 1), o))
                t += 1_000_000 * (k + 1)
    return out


def series() -> list[CountSeries]:
    ts = [i * 500_000 for i in range(20)]
    return [
        CountSeries("vm0 cycles", ts, [t * 1.5 if t < 4_000_000 else t * 1.2 for t in ts],
                    [t * 1.5 for t in ts]),
        CountSeries("vm0 inst_retired", ts, [t * 0.9 for t in ts], [t * 0.9 for t in ts]),
    ]


def test_ownership_png(tmp_path: Path) -> None:
    p = plot_ownership(spans(), tmp_path / "own.png")
    w, h = png_size(p)
    # 12 in at 100 dpi; height: 1.2 in + per CPU (0.25 in per counter + 0.35 in)
    assert (w, h) == (1200, round(100 * (1.2 + 2 * (0.25 * 5 + 0.35))))
    assert p.stat().st_size > 10_000
    cols = colours_in(p)
    assert (0x1F, 0x77, 0xB4) in cols            # host
    assert (0xFF, 0x7F, 0x0E) in cols            # vm0
    assert (0xE8, 0xE8, 0xE8) in cols            # free


def test_counted_vs_true_png(tmp_path: Path) -> None:
    p = plot_counted_vs_true(series(), tmp_path / "cvt.png")
    assert png_size(p) == (1200, 700)
    assert p.stat().st_size > 10_000
    assert len(colours_in(p)) > 50


def test_run_png_and_determinism(tmp_path: Path) -> None:
    a = plot_run(spans(), series(), tmp_path / "a.png", title="migration")
    b = plot_run(spans(), series(), tmp_path / "b.png", title="migration")
    w, h = png_size(a)
    assert w == 1200 and h > 700
    assert a.read_bytes() == b.read_bytes()


def test_labels_and_colours() -> None:
    assert counter_label(CYCLE_COUNTER) == "PMCCNTR"
    assert counter_label(3) == "cnt3"
    assert counter_label("ICNTR") == "ICNTR"
    c = owner_colours(["vm1", "host", "vm0", "free"])
    assert c["host"] == "#1f77b4" and c["free"] == "#e8e8e8"
    assert c["vm0"] == owner_colours(["vm0"])["vm0"]      # stable by name order


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: OwnershipSpan(-1, 0, 0, 1, "host"), "cpu must be an int >= 0"),
        (lambda: OwnershipSpan(0, "", 0, 1, "host"), "counter must be an int >= 0 or a non-emp"),
        (lambda: OwnershipSpan(0, 0, 5, 1, "host"), "must end at or after its start"),
        (lambda: OwnershipSpan(0, 0, 0, 1, ""), "owner must be a non-empty string"),
        (lambda: CountSeries("x", [0, 1], [1], [1, 2]), "must have the same length"),
        (lambda: CountSeries("x", [1, 0], [1, 1], [1, 1]), "times_ns must be non-decreasing"),
        (lambda: CountSeries("x", [0], [float("inf")], [1]), "counted must be finite numbers"),
        (lambda: CountSeries("", [], [], []), "name must be a non-empty string"),
    ],
)
def test_bad_values(make: object, match: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match=match):
        make()


def test_empty_inputs_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs at least one OwnershipSpan"):
        plot_ownership([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="needs at least one CountSeries"):
        plot_counted_vs_true([], tmp_path / "x.png")
