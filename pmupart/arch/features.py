"""PMU architecture versions and feature names (spec §4 ID registers, §11;
arch/arm64/tools/sysreg ID_AA64DFR0_EL1).

Features are strings named as in the Arm ARM (``FEAT_HPMN0``); the PMU version is an
``IntEnum`` whose values are the ID_AA64DFR0_EL1.PMUVer encodings.
"""

from __future__ import annotations

from enum import IntEnum

from pmupart.errors import suggest


class PMUVer(IntEnum):
    """ID_AA64DFR0_EL1.PMUVer encodings (spec §4; ARM §D24.2 ID_AA64DFR0_EL1)."""

    V3 = 0b0001
    V3P1 = 0b0100
    V3P4 = 0b0101
    V3P5 = 0b0110
    V3P7 = 0b0111
    V3P8 = 0b1000
    V3P9 = 0b1001

    @classmethod
    def parse(cls, v: PMUVer | str | int) -> PMUVer:
        if isinstance(v, PMUVer):
            return v
        if isinstance(v, int) and not isinstance(v, bool):
            try:
                return cls(v)
            except ValueError:
                allowed = [int(x) for x in cls]
                raise ValueError(f"PMUVer must be one of {allowed}, not {v}") from None
        if isinstance(v, str):
            key = v.strip().upper().replace("PMUV", "V").replace("FEAT_", "")
            if key in ("V3", "V3P0", "IMP"):
                return cls.V3
            if key in cls.__members__:
                return cls[key]
            raise ValueError(f"PMU version must be one of {', '.join(cls.__members__)}, "
                             f"not {v!r}{suggest(key, cls.__members__)}")
        raise TypeError(f"PMU version must be a PMUVer, str or int, not {type(v).__name__}")

    @property
    def features(self) -> frozenset[str]:
        """The FEAT_PMUv3pX names this version implies (each later one includes the earlier)."""
        out = {"FEAT_PMUv3"}
        for ver, feat in ((PMUVer.V3P1, "FEAT_PMUv3p1"), (PMUVer.V3P4, "FEAT_PMUv3p4"),
                          (PMUVer.V3P5, "FEAT_PMUv3p5"), (PMUVer.V3P7, "FEAT_PMUv3p7"),
                          (PMUVer.V3P8, "FEAT_PMUv3p8"), (PMUVer.V3P9, "FEAT_PMUv3p9")):
            if self >= ver:
                out.add(feat)
        return frozenset(out)
