"""The `hpsearch` command: the project's tools (search/*.py, reports/*.py) as subcommands.

Each subcommand hands the rest of the command line to its tool's ``main(argv)``, so its options,
help and errors are the tool's own, and ``python search/run.py ...`` stays the same command.
"""

from __future__ import annotations

import importlib
import sys

from hpsearch import __version__
from hpsearch.plumbing.cli import ArgumentParser, prog_name, run_main

DESCRIPTION = """Hyperparameter search for small image classifiers: Ray Tune + Optuna + MLflow.

    hpsearch run --space font --gpus 0 --quick   # search the built-in font space on a CPU
    hpsearch report                              # the latest search's leaderboard, from MLflow
    hpsearch export --top 3                      # its 3 best configs and weights, to exports/
    hpsearch COMMAND --help                      # a command's own options

`hpsearch run ...` is `python search/run.py ...`; so for every command (report: reports/leaderboard.py).
"""

# name -> (module whose main(argv) runs it, the one line `hpsearch --help` shows). Modules are
# imported only when their command runs: `hpsearch --help` need not load torch, Ray and MLflow.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("hpsearch.search.run", "search a space's hyperparameters (Ray Tune, Optuna TPE, ASHA)"),
    "report": ("hpsearch.reports.leaderboard", "(re)write a search's leaderboard from MLflow"),
    "export": ("hpsearch.search.export", "write a search's best configs and kept weights to exports/"),
    "train": ("hpsearch.search.train", "train a space's baseline, or retrain an export, and test it"),
    "predict": ("hpsearch.search.predict", "classify images with an export or an MLflow model"),
    "ensemble": ("hpsearch.search.ensemble", "retrain exported configs, average their softmax on test"),
    "prepare": ("hpsearch.search.prepare", "prepare a space's dataset cache once (a cluster's shared disk)"),
    "ui-check": ("hpsearch.reports.ui_check", "check that MLflow's UI shows a search's runs"),
}


def parser(prog: str = "hpsearch") -> ArgumentParser:
    p = ArgumentParser(DESCRIPTION, prog=prog)
    p.add_argument("--version", action="version", version=f"hpsearch {__version__}")
    commands = p.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True)
    for name, (_, line) in COMMANDS.items():
        # add_help=False: `hpsearch run --help` is run's own help, not an empty subparser's.
        commands.add_parser(name, help=line, add_help=False)
    return p


def main(argv: list[str] | None = None, prog: str = "hpsearch") -> int | None:
    """Run ``hpsearch COMMAND ARGS...``: COMMAND's tool gets ARGS as its own command line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # Only the first word is ours (or an option before it: --help, --version); the rest is the tool's.
    head = argv if argv and argv[0].startswith("-") else argv[:1]
    name = parser(prog).parse_args(head).command
    tool = importlib.import_module(COMMANDS[name][0])
    # The tool's parser is named as it was called: its usage lines and errors say `hpsearch run`.
    with prog_name(f"{prog} {name}"):
        return tool.main(argv[1:])


def entry() -> None:
    """The console script `hpsearch` ([project.scripts])."""
    run_main(main)
