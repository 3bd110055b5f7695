"""Every research-note cite in the repository resolves in docs/sources.md (issue 14).

The package cites the project's notes by section (``spec §6``, ``spec kvm-partitioning §2.5``,
``kernel-code-deltas §3.7``); the notes are not in the repository, so docs/sources.md gives
each cited section its title and the primary sources (Arm ARM sections, kernel files and
functions, lore Message-IDs) a reader can follow.  A new cite without a row fails here, and
so does a row that names no primary source.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "sources.md"
PACKAGE = ROOT / "pmupart"

#: A cite of a note section, as the package writes them (the regular expression of issue 14).
CITE = re.compile(
    r"(spec|pmuv3|kvm-partitioning|kernel-code-deltas)( [a-z0-9-]+)? ?§[0-9]+(\.[0-9]+)*")
#: Two further spellings the package uses.
CITE_EXTRA = re.compile(r"(?<![\w-])(pmuv3-semantics|deltas) §[0-9]+(\.[0-9]+)*")
#: Sections listed right after a cite belong to the same note: ``spec §8.1-§8.2``,
#: ``spec kvm-partitioning §2.6, §4.4``.
CHAINED = re.compile(r"\A(?:\s*(?:,|-|/|and)\s*§([0-9]+(?:\.[0-9]+)*))")

NOTE_OF = {
    "": "pmuv3-semantics",  # bare "spec §N"
    "pmuv3": "pmuv3-semantics",
    "pmuv3-semantics": "pmuv3-semantics",
    "kvm": "kvm-partitioning",
    "kvm-partitioning": "kvm-partitioning",
    "kernel-code-deltas": "kernel-code-deltas",
    "deltas": "kernel-code-deltas",
    "style": "style-and-ecosystem",
    "style-and-ecosystem": "style-and-ecosystem",
}

#: What counts as a primary source in a row: an Arm ARM section, a kernel path, a lore
#: Message-ID, a public URL, or an explicit UNCONFIRMED.
PRIMARY = re.compile(
    r"ARM §[A-K][0-9]|DDI 0487"
    r"|\b(?:arch|drivers|include|kernel|Documentation|tools)/[\w.-]+(?:/[\w.-]+)*"
    r"|lore:\S+@\S+|https?://\S+|UNCONFIRMED")


def note_key(text: str) -> tuple[str, str]:
    """``(note, section)`` of one cite as written, e.g. ``spec kvm §6`` ->
    ``("kvm-partitioning", "6")``; a cite naming no known note raises ValueError."""
    head, _, section = text.partition("§")
    words = head.split()
    if words and words[0] == "spec":
        words = words[1:]
    if len(words) > 1 or (words[0] if words else "") not in NOTE_OF:
        raise ValueError(f"{text!r} names no research note (known: {sorted(NOTE_OF)})")
    return NOTE_OF[words[0] if words else ""], section.strip()


#: Where else the repository cites the notes: their sections must resolve too.
ELSEWHERE = ("tests", "examples", "benchmarks", "docs", "README.md")


def _files(roots: tuple[Path, ...]) -> list[Path]:
    out = []
    for root in roots:
        paths = [root] if root.is_file() else sorted(root.rglob("*"))
        out += [p for p in paths if p.is_file() and p != DOC
                and p.suffix in (".py", ".txt", ".toml", ".md")]
    return out


def package_cites(chained: bool = True, roots: tuple[Path, ...] = (PACKAGE,)
                  ) -> dict[str, list[str]]:
    """Every cite under ``roots`` (pmupart/ by default) -> the places (``path:line``) it
    occurs.  With ``chained``, sections listed right after a cite are cites of the same note
    (``§3.9, §5.7``)."""
    out: dict[str, list[str]] = {}
    for path in _files(roots):
        text = path.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            for m in [*CITE.finditer(line), *CITE_EXTRA.finditer(line)]:
                where = f"{path.relative_to(ROOT)}:{n}"
                out.setdefault(m.group(0), []).append(where)
                prefix = m.group(0).partition("§")[0]
                rest = line[m.end():]
                while chained and (c := CHAINED.match(rest)) is not None:
                    out.setdefault(f"{prefix}§{c.group(1)}", []).append(where)
                    rest = rest[c.end():]
    return out


def doc_rows() -> list[tuple[list[str], str]]:
    """The table rows of docs/sources.md whose first cell holds cites: (cites, sources)."""
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        cites = re.findall(r"`([^`]+)`", cells[0])
        if cites and all(re.search(r"§[0-9]", c) for c in cites):
            rows.append((cites, cells[-1]))
    return rows


def test_the_regular_expression_finds_the_cites() -> None:
    cites = package_cites()
    # The package cites its notes in well over a hundred places; finding none would mean
    # the expression or the walk is broken, not that the package is clean.
    assert sum(len(v) for v in cites.values()) > 150
    assert "spec §6" in cites and "spec kvm-partitioning §2.5" in cites
    # chained sections count too: "spec kernel-code-deltas §3.9, §5.7" cites §5.7
    assert "spec kernel-code-deltas §5.7" in cites


def test_every_cite_names_a_known_note() -> None:
    bad = {}
    for cite, where in package_cites().items():
        try:
            note_key(cite)
        except ValueError as e:
            bad[cite] = (str(e), where[:3])
    assert bad == {}


def _known(cite: str) -> bool:
    """Whether ``cite`` names a known note (the test above reports the others)."""
    try:
        note_key(cite)
    except ValueError:
        return False
    return True


def test_every_cite_has_a_row() -> None:
    rows = doc_rows()
    keys = {note_key(c) for cites, _ in rows for c in cites}
    missing = {cite: where[:3] for cite, where in package_cites().items()
               if _known(cite) and note_key(cite) not in keys}
    assert missing == {}, f"docs/sources.md has no row for {missing}"
    # Each spelling a comment uses appears, as written, in some row, so a reader who
    # searches the page for the text of the comment finds it.
    written = {c for cites, _ in rows for c in cites}
    unlisted = {cite: where[:3] for cite, where in package_cites(chained=False).items()
                if cite not in written}
    assert unlisted == {}, f"spellings missing from docs/sources.md: {unlisted}"


def test_cites_outside_the_package_resolve_too() -> None:
    """README, docs, examples, tests and benchmarks cite the same notes: each section they
    cite has a row (the spelling may differ from the rows')."""
    keys = {note_key(c) for cites, _ in doc_rows() for c in cites}
    cites = package_cites(roots=tuple(ROOT / r for r in ELSEWHERE))
    assert len(cites) > 20
    missing = {}
    for cite, where in cites.items():
        try:
            if note_key(cite) not in keys:
                missing[cite] = where[:3]
        except ValueError as e:
            missing[cite] = [str(e), *where[:3]]
    assert missing == {}, f"docs/sources.md has no row for {missing}"


def test_rows_are_unique_and_name_primary_sources() -> None:
    rows = doc_rows()
    assert len(rows) > 40
    seen: dict[tuple[str, str], str] = {}
    for cites, sources in rows:
        for c in cites:
            key = note_key(c)
            assert key not in seen or seen[key] == cites[0], f"{c} has two rows"
            seen[key] = cites[0]
        assert PRIMARY.search(sources), f"row {cites} names no primary source: {sources!r}"


def test_readme_links_the_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/sources.md)" in readme
