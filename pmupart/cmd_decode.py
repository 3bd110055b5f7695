"""Text for ``pmupart decode`` and ``pmupart cores`` (plain text: stable for golden tests)."""

from __future__ import annotations

import json
import warnings

from pmupart.arch.cores import CORES, EVENTS_NOTE, get_core
from pmupart.arch.pe import PE
from pmupart.arch.sysreg import RegDef, decode


def render_decode(reg: RegDef, value: int, *, el: int | None = None,
                  num_counters: int | None = None, core: str | None = None) -> str:
    """``REG = 0x... : FIELDS`` then one line per non-reserved field, then views that depend
    on the EL or the PE."""
    lines = [f"{reg.name} ({reg.s_name}) = {value:#x}: {decode(reg, value)}"]
    w = max((len(f.name) for f in reg.named_fields()), default=4)
    for f in reg.fields:
        v = f.get(value)
        bits = f"{f.msb}" if f.msb == f.lsb else f"{f.msb}:{f.lsb}"
        if f.kind != "field":
            if v:
                kind = f.kind.upper()
                lines.append(f"  [{bits:>5}] {kind:<{w}} = {v:#x}  (not modelled/reserved)")
            continue
        en = f.enum_name(v)
        extra = f" ({en})" if en else ""
        feat = f"  [{f.feature}]" if f.feature else ""
        lines.append(f"  [{bits:>5}] {f.name:<{w}} = {v:#x}{extra}{feat}")
    if el is not None:
        if reg.name in ("PMCCFILTR_EL0", "PMICFILTR_EL0") or (reg.family or "").startswith(
                "PMEVTYPER"):
            pe = PE(1)
            counted = not pe._filtered(value, el)
            lines.append(f"at EL{el} (Non-secure, no EL3): "
                         f"{'counted' if counted else 'filtered out'} (spec §5.6)")
        else:
            lines.append(f"(--el has no effect on how {reg.name} decodes)")
    if reg.name == "MDCR_EL2" and (num_counters is not None or core is not None):
        # A PE no shipped core matches is a what-if (DESIGN.md): say so in the output rather
        # than as a Python warning on stderr.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pe = PE.from_core(core) if core else PE(num_counters or 0, hpmn0=True, fgt=True)
            if num_counters is not None and core is not None:
                pe = PE(num_counters, pe.pmuver, fgt=pe.fgt, hpmn0=pe.hpmn0)
        lines.extend(f"note: {w.message}" for w in caught)
        with pe.at_el(2):
            pe.write("MDCR_EL2", value)
        n, h = pe.num_counters, pe.hpmn
        note = " (CONSTRAINED UNPREDICTABLE: policy " \
            f"{pe.policies.reserved_hpmn.value})" if pe.hpmn_constrained_unpredictable else ""
        r1 = f"0-{h - 1}" if h else "none"
        r2 = f"{h}-{n - 1}" if h < n else "none"
        lines.append(f"N={n}: effective HPMN={h}{note}; first range (guest, PMCR_EL0.E) "
                     f"counters {r1} + cycle; second range (EL2, MDCR_EL2.HPME) counters {r2}")
    return "\n".join(lines)


def render_cores(as_json: bool = False) -> str:
    rows = []
    for c in CORES.values():
        rows.append({
            "core": c.name, "perf_pmu": c.perf_name, "midr": f"{c.midr:#010x}",
            "counters": c.num_counters, "pmuver": c.pmuver.name, "fgt": c.fgt,
            "hpmn0": c.hpmn0, "icntr": c.icntr, "cpi": c.cpi, "mhz": c.freq_mhz,
            "confirmed": c.confirmed, "assumptions": list(c.assumptions)})
    if as_json:
        return json.dumps(rows, indent=2) + "\n"
    hdr = f"{'core':<13} {'perf PMU':<20} {'MIDR':<10} {'N':>2} {'PMUVer':<6} " \
          f"{'FGT':<3} {'HPMN0':<5} {'ICNTR':<5} confirmed"
    out = [hdr, "-" * len(hdr)]
    for r in rows:
        out.append(f"{r['core']:<13} {r['perf_pmu']:<20} {r['midr']:<10} {r['counters']:>2} "
                   f"{r['pmuver']:<6} {'yes' if r['fgt'] else 'no':<3} "
                   f"{'yes' if r['hpmn0'] else 'no':<5} {'yes' if r['icntr'] else 'no':<5} "
                   f"{'yes' if r['confirmed'] else 'NO'}")
    out.append("")
    out.append("Assumptions (values the cores' TRMs and the kernel's PMU drivers do not confirm):")
    for c in CORES.values():
        for a in c.assumptions:
            out.append(f"  {c.name}: {a}")
    out.append(f"  all cores: {EVENTS_NOTE}")
    return "\n".join(out) + "\n"


def _get(name: str) -> object:  # pragma: no cover - convenience for the REPL
    return get_core(name)
