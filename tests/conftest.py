"""Shared test helpers: golden files, a vCPU set up as a VMM does it, a one-VM scenario.

Regenerate every golden file with ``PMUPART_UPDATE_GOLDEN=1 python -m pytest`` (or
``python -m pytest --update-golden``) and review the diff before committing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def make_vcpu(m: Any, *, partition: bool = False, nr: int | None = None,
              pmu_type: int | None = None, filters: Sequence[Any] = (), pmu: bool = True,
              irq: int = 23) -> Any:
    """A vCPU of a new VM set up as a VMM does it, in the order KVM wants the attributes:
    KVM_ARM_VCPU_PMU_V3_SET_PMU, _FILTER (each), _ENABLE_PARTITION, _SET_NR_COUNTERS, _IRQ,
    then _INIT; ``pmu=False`` gives a vCPU without the PMU feature."""
    from pmupart.kvm import uapi

    ctrl = uapi.KVM_ARM_VCPU_PMU_V3_CTRL
    v = m.kvm.create_vm().create_vcpu(pmu=pmu)
    if not pmu:
        return v
    if pmu_type is not None:
        v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_SET_PMU, pmu_type)
    for f in filters:
        v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_FILTER, f)
    if partition:
        v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_ENABLE_PARTITION, 1)
    if nr is not None:
        v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_SET_NR_COUNTERS, nr)
    v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_IRQ, irq)
    v.set_device_attr(ctrl, uapi.KVM_ARM_VCPU_PMU_V3_INIT, None)
    return v


def one_vm_program_scenario(name: str, program: object) -> str:
    """A scenario of one Cortex-A720 CPU and one VM pinned to it that runs ``program`` (a
    file path or a ``module:callable``) for 10 ms."""
    return f'''
[scenario]
name = "{name}"
duration = "10ms"
[machine]
[[machine.cluster]]
core = "cortex-a720"
count = 1
[[vm]]
name = "vm0"
affinity = "0"
program = "{program}"
'''
