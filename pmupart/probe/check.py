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
        lines.append(self.summary_line())
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return json.dumps({"target": self.target, "summary": self.summary,
                           "outcomes": [r.__dict__ for r in self.rows]}, indent=1,
                          sort_keys=True) + "\n"

    def signatures(self) -> list[str]:
        """Stable one-line descriptions of the non-agreeing outcomes (for golden files)."""
        return [f"{r.cls}: {r.probe} | {r.op} | observed {r.observed} | model {r.expected}"
                + (f" | {r.why}" if r.cls == "cu" else "") for r in self.deviations()]


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
    from pmupart.probe.model import pe_from_ids, policy_alternatives, predict, run_image_on_pe

    run = run_image_on_pe(image, pe_from_ids(log.ids)).results
    pred = predict(image, pe_from_ids(log.ids))
    alts = [(name, predict(image, pe_from_ids(log.ids, pol)))
            for name, pol in policy_alternatives()]
    return classify(image, log, run, pred, alts, _describe(log))


def _describe(log: ProbeLog) -> str:
    from pmupart.probe.model import pe_kwargs

    kw = pe_kwargs(log.ids)
    midr = log.ids.get("MIDR_EL1", 0)
    feats = [f for f in ("fgt", "fgt2", "hpmn0", "icntr") if kw[f]]
    return (f"MIDR {midr:#x}, PMUv3 {kw['pmuver'].name}, N={kw['num_counters']}"
            + (f", {'+'.join(feats)}" if feats else "") + f"; {log.params.text()}")


def check_on_vpmu(image: ProbeImage, log: ProbeLog, core: str, vpmu: str,
                  reserved: int) -> Report:
    """Check a guest image's log against the model's KVM: the expectation is what the
    model's vPMU (``vpmu``, on a host of ``core`` CPUs) gives the guest."""
    from pmupart.probe.model import kvm_guest_cpu_run, predict, run_image_on_cpu

    run = kvm_guest_cpu_run(core, vpmu, reserved, lambda c: run_image_on_cpu(image, c)).results
    pred = kvm_guest_cpu_run(core, vpmu, reserved, lambda c: predict(image, c))
    return classify(image, log, run, pred, [],
                    f"{vpmu} vPMU on {core}, reserved_host_counters={reserved}; "
                    f"{log.params.text()}")
