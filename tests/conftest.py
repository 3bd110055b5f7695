"""Shared test helpers: golden files.

Regenerate every golden file with ``PMUPART_UPDATE_GOLDEN=1 python -m pytest`` (or
``python -m pytest --update-golden``) and review the diff before committing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

GOLDEN_ROOT = Path(__file__).parent / "golden"
_UPDATE = {"on": False}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the golden files from the current output")


def pytest_configure(config: pytest.Config) -> None:
    _UPDATE["on"] = bool(config.getoption("--update-golden"))


def updating_golden() -> bool:
    return _UPDATE["on"] or os.environ.get("PMUPART_UPDATE_GOLDEN") == "1"


def check_golden(rel: str, text: str) -> None:
    """Compare ``text`` with ``tests/golden/<rel>`` (or rewrite it when updating)."""
    path = GOLDEN_ROOT / rel
    if updating_golden():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
    assert path.exists(), f"{path} missing: run with PMUPART_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), \
        f"{path} differs; PMUPART_UPDATE_GOLDEN=1 to regenerate"
