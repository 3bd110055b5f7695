"""``probe check``: classify every outcome of a log against the model.

For each outcome (one recorded op of the catalogue, spec sections in
:mod:`pmupart.probe.catalogue`):

* **model** — the image run under the model (runner + PE or KVM) disagrees with the model's
  direct prediction for that op.  Must be zero: it is the model contradicting itself.
* **agree** — the log gives what the model predicts.
* **cu** — the log differs from the default prediction but equals the prediction under
  another choice of a CONSTRAINED UNPREDICTABLE policy (``pmupart.arch.policy``); the
  matching policies are named.
* **implementation** — the log differs from every permitted prediction: the implementation
  deviates from the rule the probe checks (named, with its spec section).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pmupart.probe.catalogue import outcomes
from pmupart.probe.image import ProbeImage
from pmupart.probe.log import ProbeLog

CLASSES = ("agree", "implementation", "cu", "model")


@dataclass(frozen=True)
class Row:
    opid: int
    probe: str
    op: str
    observed: str
    expected: str
    cls: str
    why: str  #: the rule and section (implementation), the policies (cu), the runner's result


@dataclass
class Report:
    """The classified outcomes of one log."""

    target: str
    rows: list[Row] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, int]:
        c = Counter(r.cls for r in self.rows)
        out = {k: c.get(k, 0) for k in CLASSES}
        out["outcomes"] = len(self.rows)
        return out

    def summary_line(self) -> str:
        s = self.summary
        return (f"{s['outcomes']} outcomes: {s['agree']} agree, {s['implementation']} "
                f"implementation deviates, {s['cu']} CONSTRAINED UNPREDICTABLE, "
                f"{s['model']} model deviates")

    def deviations(self) -> list[Row]:
        return [r for r in self.rows if r.cls != "agree"]

    def render(self, show_all: bool = False) -> str:
        rows = self.rows if show_all else self.deviations()
        lines = [f"probe check: {self.target}"]
        if rows:
            hdr = ("opid", "probe", "op", "observed", "model", "class", "why")
            lines.append("  ".join(hdr))
            for r in rows:
                lines.append(f"{r.opid:#06x}  {r.probe}  {r.op}  {r.observed}  {r.expected}  "
                             f"{r.cls}  {r.why}")
        groups = self.groups()
        if groups:
            lines.append("by probe family:")
            for (cls, fam, why), n in groups.items():
                lines.append(f"  {n:5d}  {cls:14s}  {fam}" + (f"  ({why})" if why else ""))
        lines.append(self.summary_line())
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return json.dumps({"target": self.target, "summary": self.summary,
                           "outcomes": [r.__dict__ for r in self.rows]}, indent=1,
                          sort_keys=True) + "\n"

    def groups(self) -> dict[tuple[str, str, str], int]:
        """The non-agreeing outcomes counted by (class, probe family, policies for cu): the
        probe family is the probe name without its HPMN, index and EL (``swinc``,
        ``access``, ...).  Stable across runs: golden files and docs/conformance.md use it."""
        out: Counter[tuple[str, str, str]] = Counter()
        for r in self.deviations():
            words = r.probe.split()
            fam = words[1] if len(words) > 1 else words[0]
            out[(r.cls, fam, r.why if r.cls == "cu" else "")] += 1
        return dict(sorted(out.items()))


def classify(image: ProbeImage, log: ProbeLog, run: dict[int, str], pred: dict[int, str],
             alternatives: list[tuple[str, dict[int, str]]], target: str) -> Report:
    """Classify every outcome of ``log`` (see the module docstring)."""
    rep = Report(target)
    for o in outcomes(image.probes):
        obs = log.results.get(o.opid, "missing")
        exp = pred[o.opid]
        got = run.get(o.opid, "missing")
        op = o.op.text()
        if got != exp:
            rep.rows.append(Row(o.opid, o.probe.name, op, obs, exp, "model",
                                f"the model's run of the image gives {got}"))
            continue
        if obs == exp:
            rep.rows.append(Row(o.opid, o.probe.name, op, obs, exp, "agree", ""))
            continue
        alts = [name for name, res in alternatives if res.get(o.opid) == obs]
        if alts:
            rep.rows.append(Row(o.opid, o.probe.name, op, obs, exp, "cu", ", ".join(alts)))
            continue
        rep.rows.append(Row(o.opid, o.probe.name, op, obs, exp, "implementation",
                            f"{o.probe.rule} [{o.probe.section}]"))
    return rep


def check_on_pe(image: ProbeImage, log: ProbeLog,
                progress: Callable[[str], Any] | None = None) -> Report:
    """Check a log of an EL2 image (or a guest image run without EL2) against a bare PE
    configured from the log's ID preamble."""
    run, pred, alts = _model_side(image, log.ids)
    return classify(image, log, run, pred, alts, _describe(log))


_CACHE: dict[tuple[str, str], tuple[dict[int, str], dict[int, str],
                                    list[tuple[str, dict[int, str]]]]] = {}


def _model_side(image: ProbeImage, ids: dict[str, int]) -> tuple[
        dict[int, str], dict[int, str], list[tuple[str, dict[int, str]]]]:
    """The model's run, its prediction and the alternative-policy predictions for the PE
    the ID registers describe (cached per image and PE configuration: two logs from
    equivalent PEs share them)."""
    from pmupart.probe.model import (
        pe_from_ids,
        pe_kwargs,
        policy_alternatives,
        predict,
        run_image_on_pe,
    )

    key = (image.digest, repr(sorted(pe_kwargs(ids).items())))
    if key not in _CACHE:
        run = run_image_on_pe(image, pe_from_ids(ids)).results
        pred = predict(image, pe_from_ids(ids))
        alts = [(name, predict(image, pe_from_ids(ids, pol)))
                for name, pol in policy_alternatives()]
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = (run, pred, alts)
    return _CACHE[key]


def _describe(log: ProbeLog) -> str:
    from pmupart.probe.model import pe_kwargs

    kw = pe_kwargs(log.ids)
    midr = log.ids.get("MIDR_EL1", 0)
    feats = [f for f in ("fgt", "fgt2", "hpmn0", "icntr") if kw[f]]
    return (f"MIDR {midr:#x}, PMUv3 {kw['pmuver'].name}, N={kw['num_counters']}"
            + (f", {'+'.join(feats)}" if feats else "") + f"; {log.params.text()}")


def check_on_vpmu(image: ProbeImage, log: ProbeLog, core: str, vpmu: str,
                  reserved: int, revision: str | None = None) -> Report:
    """Check a guest image's log against the model's KVM: the expectation is what the
    model's vPMU (``vpmu``, on a host of ``core`` CPUs) gives the guest."""
    from pmupart.probe.model import kvm_guest_cpu_run, predict, run_image_on_cpu

    run = kvm_guest_cpu_run(core, vpmu, reserved, lambda c: run_image_on_cpu(image, c),
                            revision).results
    pred = kvm_guest_cpu_run(core, vpmu, reserved, lambda c: predict(image, c), revision)
    rev = f", revision {revision}" if revision else ""
    return classify(image, log, run, pred, [],
                    f"{vpmu} vPMU on {core}, reserved_host_counters={reserved}{rev}; "
                    f"{log.params.text()}")
