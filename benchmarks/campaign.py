"""Random-scenario campaign: random valid scenarios under the invariant checker.

    python benchmarks/campaign.py [--runs 10000] [--seed 14] [--variants]

Each run draws a scenario (``scenario(rng)``): a host of one or two clusters of real cores
(counter counts, FGT, HPMN0 and PMU versions that differ), a reservation
(``reserved_host_counters``, static or dynamic), one or two VMs of one or two vCPUs on the
partitioned or the emulated vPMU (VMM attributes: ``nr_counters``, an event filter), guest
``perf stat``/``perf record`` sessions, a guest program, host ``perf stat -a`` sessions and
host tasks, migrations (periodic or random) and a short duration; it is loaded through the
scenario loader (so it is valid by construction or the draw is counted as refused) and run
under the checker.

It prints the runs, the violations on the default design (expected: 0; each with the seed
of its run, so ``scenario(random.Random(seed))`` rebuilds it), the known findings met
(``examples/findings/``), and with ``--variants`` the share of runs on which the checker
catches each known-wrong design variant (the same scenarios with one ``[kvm]`` choice
changed).  Exit 1 if the default design had a violation.  ``tests/test_campaign.py`` runs a
small version in CI.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: Known-wrong variants (DESIGN.md decision 7): the [kvm] choice each changes.
VARIANTS: dict[str, dict[str, Any]] = {
    "v1 HPMN from the VM's PMU": {"hpmn_source": "vm-pmu"},
    "HPMD left clear": {"set_hpmd": False},
    "PMOVS not cleared on load or put": {"clear_pmovs_on_load": False,
                                         "clear_pmovs_on_put": False},
    "event filter not applied at load": {"filter_at_load": False},
}
#: cores by PMU version: KVM gives no guest PMU on a host whose CPUs differ in PMUVer
#: (mainline's FTR_EXACT sanitising), so a host mostly pairs cores of one version
SAME_PMUVER = [["cortex-a720", "cortex-a520", "cortex-x4"], ["cortex-a76"], ["cortex-a710"],
               ["c1-pro"]]
CORES = [c for g in SAME_PMUVER for c in g]
EVENTS = ["CPU_CYCLES", "INST_RETIRED", "L1D_CACHE", "BR_RETIRED", "L1D_CACHE_REFILL",
          "BR_MIS_PRED", "L2D_CACHE", "MEM_ACCESS"]
PROGRAMS = ["pmupart.guest.programs:counting_loop", "pmupart.guest.programs:probe"]


def scenario(rng: random.Random) -> dict[str, Any]:
    """One random scenario as the TOML tables (a mapping for ``load_scenario_mapping``)."""
    clusters = []
    mixed = rng.random() < 0.15  # the what-if: a guest PMU on CPUs of mixed PMUVer
    pool = CORES if mixed else rng.choice(SAME_PMUVER)
    for i, core in enumerate(rng.sample(pool, min(len(pool), rng.choice([1, 2])))):
        c: dict[str, Any] = {"name": f"c{i}", "core": core, "count": rng.choice([1, 2])}
        if core == "cortex-a720" and rng.random() < 0.5:
            c["num_counters"] = rng.choice([6, 8, 10])
        clusters.append(c)
    ncpus = sum(c["count"] for c in clusters)
    machine: dict[str, Any] = {"name": "rand", "cluster": clusters,
                               "reserved_host_counters": rng.choice([-1, 0, 1, 2, 2, 3]),
                               "reservation": rng.choice(["static", "dynamic"])}
    vms = []
    for v in range(rng.choice([1, 1, 2])):
        vm: dict[str, Any] = {"name": f"vm{v}", "vcpus": rng.choice([1, 2]),
                              "partition": rng.random() < 0.7 and
                              machine["reserved_host_counters"] >= 0, "workload": "compute",
                              "affinity": f"0-{ncpus - 1}"}
        if rng.random() < 0.8:
            evs = rng.sample(EVENTS, rng.randint(1, 6))
            perf: dict[str, Any] = {"events": evs}
            if rng.random() < 0.25:
                perf |= {"mode": "record", "freq": rng.choice([100, 500, 1000])}
            vm["perf"] = perf
        if rng.random() < 0.3:
            vm["nr_counters"] = rng.randint(0, 3)
        if rng.random() < 0.2:
            vm["filter"] = [{"action": "deny", "events": rng.sample(EVENTS[1:], 1)}]
        if rng.random() < 0.2:
            vm["program"] = rng.choice(PROGRAMS)
        vms.append(vm)
    host: dict[str, Any] = {}
    if rng.random() < 0.6:
        host["perf"] = [{"events": rng.sample(EVENTS, rng.randint(1, 5)),
                         "exclude_guest": rng.random() < 0.5}]
    if rng.random() < 0.3:
        host["task"] = [{"name": "busy", "count": rng.choice([1, 2]), "workload": "compute"}]
    mig = rng.choice(["none", "periodic", "periodic", "random"])
    return {
        "scenario": {"name": "campaign", "duration": f"{rng.choice([4, 8, 12])}ms",
                     "seed": rng.randrange(1 << 30)},
        "machine": machine,
        "kvm": {"mixed_pmuver": "vm-pmu"} if mixed else {},
        "workload": {"compute": {"kernel_fraction": round(rng.uniform(0, 0.3), 3),
                                 "rates": {"L1D_CACHE": 0.4, "BR_RETIRED": 0.15,
                                           "L1D_CACHE_REFILL": 0.01}}},
        "vm": vms,
        "host": host,
        "migration": {"policy": mig, "interval": f"{rng.choice([1, 2, 3])}ms"},
    }


def run_one(data: dict[str, Any], kvm: dict[str, Any] | None = None) -> tuple[str, list[Any]]:
    """Load and run one scenario under the checker: ("refused", []) when the loader or KVM
    refuses the draw, else ("ran", violations)."""
    from pmupart.check import Checker
    from pmupart.errors import PmupartError
    from pmupart.kvm import KvmError
    from pmupart.scenario.loader import load_scenario_mapping
    from pmupart.sim.session import run_scenario

    d = dict(data)
    d["kvm"] = {**data.get("kvm", {}), **(kvm or {})}
    try:
        spec = load_scenario_mapping(d, "campaign")
    except PmupartError:
        return "refused", []
    ck = Checker()
    try:
        result = run_scenario(spec, listeners=[ck.listener])
    except (KvmError, PmupartError):
        return "refused", []
    ck.finish(result)
    return "ran", list(ck.violations) if not ck.ok else []


#: wall seconds one run may take (runs of at most 12 ms simulated take well under a second)
LIMIT_S = 30


class _Hang(Exception):
    pass


def _alarm(_sig: int, _frm: Any) -> None:
    raise _Hang


def run_limited(data: dict[str, Any], kvm: dict[str, Any]) -> tuple[str, list[Any]]:
    """:func:`run_one` under the time limit: ("hang", []) past :data:`LIMIT_S`."""
    import signal

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMIT_S)
    try:
        return run_one(data, kvm)
    except _Hang:
        return "hang", []
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def campaign(runs: int, seed: int, variants: bool, out: Any = sys.stdout,
             revision: str = "intent") -> dict[str, Any]:
    """Run the campaign on ``revision`` (the design: ``intent``, the series' design as its
    cover letter describes it; ``v8`` as posted has known bugs, each a finding); returns
    the figures (and prints them to ``out``)."""
    from pmupart.check.findings import KNOWN_FINDINGS  # hazards with a finding scenario

    t0 = time.perf_counter()
    figures: dict[str, Any] = {"runs": 0, "refused": 0, "violations": [], "hangs": [],
                               "findings": {},
                               "caught": dict.fromkeys(VARIANTS, 0), "variant_runs": 0}
    for k in range(runs):
        rs = seed * 1_000_003 + k
        data = scenario(random.Random(rs))
        status, viol = run_limited(data, {"revision": revision})
        if status == "refused":
            figures["refused"] += 1
            continue
        if status == "hang":
            figures["hangs"].append(rs)
            print(f"  seed {rs}: still running after {LIMIT_S} s (a hang)", file=out,
                  flush=True)
            continue
        figures["runs"] += 1
        if k % 500 == 499:
            print(f"  ... {k + 1} draws, {time.perf_counter() - t0:.0f} s", file=out, flush=True)
        known = [v for v in viol if any(p(v) for p in KNOWN_FINDINGS.values())]
        for slug, p in KNOWN_FINDINGS.items():
            if any(p(v) for v in viol):
                figures["findings"][slug] = figures["findings"].get(slug, 0) + 1
        if viol and not known:
            figures["violations"].append((rs, viol[0].details()))
        if variants:
            figures["variant_runs"] += 1
            for name, choice in VARIANTS.items():
                st, vv = run_limited(data, {"revision": revision, **choice})
                if st == "ran" and vv:
                    figures["caught"][name] += 1
    figures["wall_s"] = time.perf_counter() - t0
    n = figures["runs"]
    print(f"campaign: {runs} draws, {n} ran, {figures['refused']} refused by the loader or "
          f"KVM, in {figures['wall_s']:.0f} s", file=out)
    print(f"design (revision {revision}): {len(figures['violations'])} runs with a violation, "
          f"{len(figures['hangs'])} hangs (runs past {LIMIT_S} s)", file=out)
    by_rule: dict[str, int] = {}
    for _rs, first in figures["violations"]:
        rule = first.split("[", 1)[1].split("]", 1)[0]
        by_rule[rule] = by_rule.get(rule, 0) + 1
    if by_rule:
        print("  first violation by rule: " + ", ".join(f"{k} {v}" for k, v in
                                                         sorted(by_rule.items())), file=out)
    for rs, first in figures["violations"][:10]:
        print(f"  seed {rs}: {first}", file=out)
    for slug, c in figures["findings"].items():
        print(f"known finding {slug}: met on {c} runs", file=out)
    if variants and figures["variant_runs"]:
        vr = figures["variant_runs"]
        for name, c in figures["caught"].items():
            print(f"variant {name!r}: caught on {c} of {vr} runs ({100 * c / vr:.1f}%)",
                  file=out)
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--revision", default="intent", choices=["intent", "v8", "upstream"],
                    help="the design to check (default: intent)")
    ap.add_argument("--variants", action="store_true",
                    help="also run each known-wrong variant on every scenario")
    a = ap.parse_args(argv)
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    figures = campaign(a.runs, a.seed, a.variants, revision=a.revision)
    return 1 if figures["violations"] or figures["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
