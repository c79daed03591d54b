"""Committed benchmark reports name the code that made them, and go stale loudly.

Each report's first line carries the command, the product's commit and a digest of the script
(with the benchmarks/ modules it imports). A report whose digest is no longer its script's was
written by other code than the committed script, and must be regenerated with its command.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.machine import HEADER, REPO, script_digest, script_of, write_markdown

REPORTS = sorted((REPO / "reports/benchmarks").glob("*.md"))


def test_there_are_reports_to_check():
    assert len(REPORTS) >= 7, REPORTS


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.name)
def test_committed_report_is_its_scripts_current_output(report: Path):
    first = report.read_text().splitlines()[0]
    header = HEADER.fullmatch(first)
    assert header, f"{report.name}: no code stamp in its first line: {first}"
    script = script_of(header["command"])
    assert script.is_file(), f"{report.name}: its command runs {script}, which does not exist"
    assert header["digest"] == script_digest(script), (
        f"{report.name} is stale: {script.relative_to(REPO)} changed since it was written; "
        f"regenerate it with `{header['command']}`"
    )
    # Made from committed code, so the commit it names is the code that made it.
    assert not header["commit"].endswith("+changes"), f"{report.name} was made from uncommitted code"
    assert header["commit"] != "unknown", f"{report.name} names no commit"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.name)
def test_report_commit_is_in_history(report: Path):
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    commit = HEADER.fullmatch(report.read_text().splitlines()[0])["commit"]
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=REPO, capture_output=True)
    assert known.returncode == 0, f"{report.name} names commit {commit}, which this repository lacks"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_digest_follows_the_script_and_the_benchmark_modules_it_imports(tmp_path: Path):
    script = tmp_path / "benchmarks/bench.py"
    _write(script, "from benchmarks.helper import f\nimport benchmarks.deep\nimport json\n")
    _write(tmp_path / "benchmarks/helper.py", "from benchmarks.leaf import g\ndef f(): return 1\n")
    _write(tmp_path / "benchmarks/leaf.py", "def g(): return 1\n")
    _write(tmp_path / "benchmarks/deep.py", "X = 1\n")
    _write(tmp_path / "benchmarks/unrelated.py", "Y = 1\n")
    _write(tmp_path / "search/product.py", "Z = 1\n")
    before = script_digest(script, tmp_path)
    assert len(before) == 12 and int(before, 16) >= 0

    _write(tmp_path / "benchmarks/unrelated.py", "Y = 2\n")
    _write(tmp_path / "search/product.py", "Z = 2\n")
    assert script_digest(script, tmp_path) == before  # not imported, or the product's (the commit's)

    for changed in ("benchmarks/leaf.py", "benchmarks/deep.py", "benchmarks/bench.py"):
        _write(tmp_path / changed, (tmp_path / changed).read_text() + "# changed\n")
        after = script_digest(script, tmp_path)
        assert after != before, f"a change to {changed} left the digest as it was"
        before = after


def test_script_of_finds_the_script_in_a_command():
    assert script_of("python benchmarks/load.py --trials 3") == REPO / "benchmarks/load.py"
    assert script_of("python benchmarks/x.py", Path("/r")) == Path("/r/benchmarks/x.py")


def test_write_markdown_stamps_the_scripts_digest(tmp_path: Path):
    out = write_markdown(tmp_path / "r.md", "A title", "python benchmarks/load.py --smoke", ["body"])
    lines = out.read_text().splitlines()
    header = HEADER.fullmatch(lines[0])
    assert header and header["command"] == "python benchmarks/load.py --smoke"
    assert header["digest"] == script_digest(REPO / "benchmarks/load.py")
    assert lines[1] == "# A title" and lines[-1] == "body"
    assert f"script digest {header['digest']}" in "\n".join(lines[2:])
