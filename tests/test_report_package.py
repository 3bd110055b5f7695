"""pmupart.report stays a leaf: no simulation layers, no matplotlib/rich at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pmupart.report

REPORT = Path(pmupart.report.__file__).parent
FORBIDDEN = ("pmupart.host", "pmupart.kvm", "pmupart.sim", "pmupart.check", "pmupart.scenario",
             "pmupart.cli")


def test_no_imports_from_simulation_layers() -> None:
    for path in sorted(REPORT.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert not n.startswith(FORBIDDEN), f"{path.name} imports {n}"


def test_import_is_light() -> None:
    # Whatever the top-level package imports, pmupart.report itself adds no simulation
    # layer and no matplotlib/rich.
    code = (
        "import sys, pmupart; before = set(sys.modules); import pmupart.report; "
        "new = set(sys.modules) - before; "
        "bad = sorted(m for m in new if m.split('.')[0] in ('matplotlib', 'rich') "
        "or m.startswith(('pmupart.host', 'pmupart.kvm', 'pmupart.sim'))); "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_public_names_exported() -> None:
    for name in pmupart.report.__all__:
        assert hasattr(pmupart.report, name), name
    assert pmupart.report.__all__ == sorted(pmupart.report.__all__)
