"""docs/tracking-schema.md names exactly the MLflow tags the code has (hpsearch.plumbing.tags).

A tag added to the code without a line in the doc, or a doc line about a tag the code no longer
sets, fails here, so the page a user queries MLflow by stays true.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

from hpsearch.plumbing import tags

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs/tracking-schema.md"
# Every folder whose code is installed as part of the hpsearch package (pyproject.toml).
SOURCES = ("hpsearch", "search", "trainables", "spaces", "reports", "plumbing", "benchmarks")
# A tag's name: hpsearch.<word> not followed by a further .<word> (hpsearch.plumbing.tags is a module).
TAG = re.compile(r"hpsearch\.[a-z_]+(?!\.?\w)")


def tag_constants() -> dict[str, str]:
    """NAME -> "hpsearch.<tag>" for every tag constant of hpsearch.plumbing.tags."""
    return {
        name: value
        for name, value in vars(tags).items()
        if name.isupper() and isinstance(value, str) and value.startswith("hpsearch.")
    }


def tags_named_in(text: str) -> set[str]:
    return set(TAG.findall(text))


def tag_literals(folders: tuple[str, ...] = SOURCES, repo: Path = REPO) -> dict[str, list[str]]:
    """Each "hpsearch.<name>" string literal in the package's source -> where it is (file:line).

    Names of the package's own modules (importlib.resources.files("hpsearch.spaces"), say) are not
    tags, unless a constant says so: hpsearch.search is both the search package and a tag.
    """
    found: dict[str, list[str]] = {}
    constants = set(tag_constants().values())
    for folder in folders:
        for path in sorted((repo / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                    continue
                if not TAG.fullmatch(node.value):
                    continue
                if node.value not in constants and importlib.util.find_spec(node.value) is not None:
                    continue  # a module's name
                found.setdefault(node.value, []).append(f"{path.relative_to(repo)}:{node.lineno}")
    return found


def test_tags_module_has_tags():
    assert len(tag_constants()) >= 30  # the schema names over 30 tags; an empty module would pass the rest


def test_tag_constants_are_unique():
    values = list(tag_constants().values())
    assert len(values) == len(set(values)), sorted(v for v in values if values.count(v) > 1)


def test_every_tag_constant_is_in_the_tracking_schema():
    documented = tags_named_in(DOC.read_text())
    missing = {name: value for name, value in tag_constants().items() if value not in documented}
    assert not missing, f"docs/tracking-schema.md does not say what these tags hold: {missing}"


def test_every_tag_the_tracking_schema_names_is_a_constant():
    constants = set(tag_constants().values())
    unknown = sorted(tags_named_in(DOC.read_text()) - constants)
    assert not unknown, f"docs/tracking-schema.md names tags that hpsearch.plumbing.tags lacks: {unknown}"


def test_every_tag_literal_in_the_source_is_a_constant():
    # A tag written out as a string instead of through the constant would escape the two tests above.
    constants = set(tag_constants().values())
    stray = {value: where for value, where in tag_literals().items() if value not in constants}
    assert not stray, f"hpsearch.* tags in the source with no constant in plumbing/tags.py: {stray}"


def test_tag_pattern_skips_module_paths_and_keeps_sentence_ends():
    text = "tagged `hpsearch.role=final`; see hpsearch.plumbing.tags; its fate is hpsearch.fate."
    assert tags_named_in(text) == {"hpsearch.role", "hpsearch.fate"}


def test_tag_literals_finds_tags_and_skips_module_names(tmp_path: Path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/a.py").write_text(
        "import importlib.resources\n"
        'TAGS = {"hpsearch.made_up_tag": "x", "hpsearch.role": "trial"}\n'
        'HERE = importlib.resources.files("hpsearch.spaces")\n'
        'NOT_A_TAG = "hpsearch.search.run"\n'
    )
    found = tag_literals(("pkg",), tmp_path)
    assert found == {"hpsearch.made_up_tag": ["pkg/a.py:2"], "hpsearch.role": ["pkg/a.py:2"]}
