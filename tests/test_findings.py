"""The findings on the series v8 as posted (examples/findings/, ``pmupart findings``): each
scenario makes the checker print its header's line and exit 1, and the same scenario under
the intent design runs clean (unless its header says the intent breaks too)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pmupart.check.findings import (
    DEFAULT_DIR,
    KEYS,
    FindingFormatError,
    load_findings,
    parse_header,
)
from pmupart.cli import main

FINDINGS = load_findings()
#: the findings of issue 9 (rel14's mixed-counter-width has its own test file)
MINE = {"default-pmu-other-cluster", "flip-on-read-without-load", "guest-userenr-lost-at-put",
        "host-overflow-to-running-vcpu", "host-pmcr-not-restored", "swinc-fallback-stale-state",
        "fallback-guest-pmcr-stops-host"}


def test_at_least_six_findings_each_naming_v8_and_its_patch() -> None:
    names = {f.path.stem for f in FINDINGS}
    assert names >= MINE and len(FINDINGS) >= 6
    for f in FINDINGS:
        assert f.revision == "v8", f.path
        assert 'revision = "v8"' in f.path.read_text(encoding="utf-8"), f.path
        assert f.checker.startswith("t=") and f"[{f.invariant}]" in f.checker, f.path


@pytest.mark.parametrize("f", FINDINGS, ids=lambda f: f.path.stem)
def test_finding_is_caught_and_the_intent_runs_clean(f: object) -> None:
    from pmupart.check.findings import Finding

    assert isinstance(f, Finding)
    r = CliRunner().invoke(main, ["check", str(f.path)])
    assert r.exit_code == 1, r.output
    assert f.checker in r.stdout.splitlines(), r.stdout
    assert f"{f.invariant}: " in r.stdout  # the verdict names the invariant broken
    if f.intent:
        return  # the header says the intent design breaks too
    r = CliRunner().invoke(main, ["check", str(f.path), "--set", "kvm.revision=intent"])
    assert r.exit_code == 0, r.stdout
    assert "verdict: OK" in r.stdout


def test_findings_command_text_and_markdown() -> None:
    r = CliRunner().invoke(main, ["findings"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"{len(FINDINGS)} findings\n")
    for f in FINDINGS:
        assert f.title in r.stdout
        assert f"reproduce: pmupart check examples/findings/{f.path.name}" in r.stdout
        assert f"invariant: {f.invariant}" in r.stdout
    md = CliRunner().invoke(main, ["findings", "--markdown"])
    assert md.exit_code == 0
    lines = md.stdout.splitlines()
    assert lines[:4] == ["# Findings", "", "| # | finding | patch | invariant broken | "
                         "reproduce |", "|---|---|---|---|---|"]
    rows = [ln for ln in lines if ln.startswith("| ") and ln[2].isdigit()]
    assert len(rows) == len(FINDINGS)
    assert all("`pmupart check examples/findings/" in ln for ln in rows)


def test_findings_bad_input_exits_2(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["findings", "--dir", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such directory" in r.output
    bad = tmp_path / "x.toml"
    bad.write_text("# finding: t\n# revision: v8\n# patch: p\n\n[scenario]\n")
    with pytest.raises(FindingFormatError, match=r"lacks '# invariant: \.\.\.'"):
        parse_header(bad)
    r = CliRunner().invoke(main, ["findings", "--dir", str(tmp_path)])
    assert r.exit_code == 2 and "x.toml" in r.output


def test_any_file_in_the_format_is_listed(tmp_path: Path) -> None:
    """Another helper's finding in the same format is read as ours (continuation lines
    joined, the optional intent line kept)."""
    text = "".join(f"# {k}: v-{k.replace(' ', '-')}\n" for k in KEYS)
    text = text.replace("v-fix\n", "v-fix\n#   more\n") + "# intent: breaks too\n\n[scenario]\n"
    (tmp_path / "a.toml").write_text(text)
    [f] = load_findings(tmp_path)
    assert (f.title, f.fix, f.intent) == ("v-finding", "v-fix more", "breaks too")
    assert DEFAULT_DIR.name == "findings"


def test_default_pmu_finding_init_cpu_command_shows_what_its_header_says() -> None:
    """The header's ``--set 'vm[0].init_cpu=1'``: the share violation goes, a host-counts one
    (flip-on-read-without-load, v8 15/21) stays until the flip loads the guest state."""
    path = str(DEFAULT_DIR / "default-pmu-other-cluster.toml")
    text = Path(path).read_text(encoding="utf-8")
    assert "--set 'vm[0].init_cpu=1'" in text and "flip-on-read-without-load" in text
    r = CliRunner().invoke(main, ["check", path, "--set", "vm[0].init_cpu=1"])
    assert r.exit_code == 1, r.output
    assert "[share]" not in r.stdout and "[host-counts]" in r.stdout
    assert "verdict: 1 violation of 1 invariant" in r.stdout
    r = CliRunner().invoke(main, ["check", path, "--set", "vm[0].init_cpu=1",
                                  "--set", "kvm.load_at_flip=load"])
    assert r.exit_code == 0 and "verdict: OK" in r.stdout, r.stdout
