"""The `hpsearch` command: its subcommands are the tools, with their own help, errors and aliases."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from search_helpers import write_tiny_space

from hpsearch.cli import COMMANDS, entry, main
from hpsearch.plumbing.cli import ArgumentParser, prog_name, run_main
from hpsearch.search.space import builtin_spaces, load_space

REPO = Path(__file__).resolve().parents[1]
# What a tool's parser cannot go without, for tests that parse one option of it.
REQUIRED_OPTIONS = {"hpsearch.search.ensemble": ["--config", "exports/x"]}


def test_hpsearch_help_lists_every_command_in_one_line(tmp_path):
    # A subprocess through `python -m hpsearch`: __main__.py, as a user runs it, from any folder.
    proc = subprocess.run(
        [sys.executable, "-m", "hpsearch", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m hpsearch ")
    lines = [line.split(None, 1) for line in proc.stdout.splitlines() if line.startswith("    ")]
    listed = {words[0]: words[1] for words in lines if len(words) == 2 and words[0] in COMMANDS}
    assert listed == {name: line for name, (_, line) in COMMANDS.items()}


def test_console_script_runs_the_cli():
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="hpsearch")
    assert script.load() is entry  # pyproject.toml's [project.scripts], as installed
    command = Path(sys.executable).with_name("hpsearch")  # pip puts it beside the environment's python
    proc = subprocess.run([str(command), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"hpsearch {importlib.metadata.version('hpsearch')}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_subcommand_help_is_its_tools_own(name, capsys):
    argv0 = sys.argv[0]
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: hpsearch {name} ")  # the tool's parser, named as it was called
    tool = importlib.import_module(COMMANDS[name][0])
    assert tool.__doc__.splitlines()[0] in out  # ...and it is this command's tool
    assert sys.argv[0] == argv0


def test_a_tool_is_named_as_called_without_rewriting_sys_argv(monkeypatch):
    # A stand-in tool that looks, while it runs, at sys.argv[0] and at a parser it makes.
    seen = {}

    def tool_main(argv):
        seen.update(argv0=sys.argv[0], prog=ArgumentParser().prog, argv=argv)
        return 0

    monkeypatch.setitem(sys.modules, "fake_tool", types.SimpleNamespace(main=tool_main))
    monkeypatch.setitem(COMMANDS, "fake", ("fake_tool", "a tool that says its name"))
    argv0 = sys.argv[0]
    assert main(["fake", "--x"], prog="hpsearch") == 0
    assert seen == {"argv0": argv0, "prog": "hpsearch fake", "argv": ["--x"]}
    assert ArgumentParser().prog != "hpsearch fake"  # only while the tool runs


def test_prog_name_is_the_default_an_explicit_prog_overrides():
    with prog_name("hpsearch run"):
        assert ArgumentParser().prog == "hpsearch run"
        assert ArgumentParser(prog="other").prog == "other"
        with prog_name("inner"):  # nested: the innermost holds, then the outer comes back
            assert ArgumentParser().prog == "inner"
        assert ArgumentParser().prog == "hpsearch run"
    assert ArgumentParser().prog == argparse.ArgumentParser().prog  # argparse's own default again


def test_subcommand_error_names_the_subcommand(capsys):
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: main(["export", "--no-such-flag"]))
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == "error: unrecognized arguments: --no-such-flag (see hpsearch export --help)"


def test_subcommand_passes_its_arguments_to_the_tool(capsys):
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: main(["export", "--top", "0"]))
    assert stop.value.code == 2
    # export.py's own check, before it opens any tracking store.
    assert capsys.readouterr().err.splitlines() == ["error: --top must be at least 1"]


def test_unknown_subcommand_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: main(["serch", "--space", "font"]))
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: argument COMMAND: invalid choice: 'serch'") and "'run'" in line


def test_load_space_takes_a_builtin_name():
    space = load_space("mnist")
    assert space.path == REPO / "spaces" / "mnist.py" and space.task.name == "mnist"
    assert {"font", "mnist", "cifar10"} <= set(builtin_spaces()) and "__init__" not in builtin_spaces()


def test_a_file_wins_over_a_builtin_name(tmp_path, monkeypatch):
    write_tiny_space(tmp_path).rename(tmp_path / "mnist")  # a file named like the built-in space
    monkeypatch.chdir(tmp_path)
    space = load_space("mnist")
    assert space.path == Path("mnist") and space.max_epochs == 3  # the tiny space's, not spaces/mnist.py's


def test_run_resolves_a_bare_space_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: main(["run", "--space", "mnist", "--gpus", "0", "--trials", "0"]))
    assert stop.value.code == 2
    # The space loaded (its settings are checked after it), and nothing was started.
    assert capsys.readouterr().err.splitlines() == ["error: --trials must be at least 1"]
    assert not (tmp_path / "results").exists()


def test_an_unknown_space_name_lists_the_builtin_ones(capsys):
    with pytest.raises(SystemExit) as stop:
        run_main(lambda: main(["prepare", "--space", "fnt", "--offline"]))
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: no built-in space 'fnt'") and ", ".join(builtin_spaces()) in line


@pytest.mark.parametrize(
    ("module", "new", "old", "dest", "value"),
    [
        ("hpsearch.reports.leaderboard", "--name", "--search", "search", "font-1"),
        ("hpsearch.search.export", "--name", "--search", "search", "font-1"),
        ("hpsearch.reports.ui_check", "--name", "--search", "search", "font-1"),
        ("hpsearch.search.train", "--trial-budget", "--budget", "trial_budget", 5.0),
        ("hpsearch.search.ensemble", "--trial-budget", "--budget", "trial_budget", 5.0),
    ],
)
def test_old_flag_spelling_still_works_but_is_not_shown(module, new, old, dest, value, capsys):
    tool = importlib.import_module(module)
    required = REQUIRED_OPTIONS.get(module, [])
    assert getattr(tool.parse_args([*required, new, str(value)]), dest) == value
    assert getattr(tool.parse_args([*required, old, str(value)]), dest) == value
    with pytest.raises(SystemExit):
        tool.parse_args(["--help"])
    shown = capsys.readouterr().out
    assert new in shown and re.search(rf"(?<![\w-]){old}\b", shown) is None
