"""What every command-line entry point shares: user mistakes become one line and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from hpsearch.plumbing.errors import UsageError

USAGE_EXIT = 2

# The program name parsers made without a `prog` take (see prog_name); None: argparse's own default.
_PROG: contextvars.ContextVar[str | None] = contextvars.ContextVar("hpsearch_prog", default=None)


@contextlib.contextmanager
def prog_name(name: str) -> Iterator[None]:
    """Within this block, an ArgumentParser made without ``prog`` is named ``name`` in its usage
    and errors: `hpsearch run` runs search/run.py's main, whose help then says `usage: hpsearch run`.

    argparse's own default comes from sys.argv[0] (and, from Python 3.14, from ``python -m``'s
    module), which a caller should not have to rewrite."""
    token = _PROG.set(name)
    try:
        yield
    finally:
        _PROG.reset(token)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with every command's help layout, whose mistakes are one line like the others.

    argparse's own error prints the whole usage block (14 lines for search/run.py) before the
    message; here it is the message and where to look.
    """

    def __init__(self, description: str | None = None, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        if kwargs.get("prog") is None and _PROG.get() is not None:
            kwargs["prog"] = _PROG.get()
        super().__init__(description=description, **kwargs)

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(USAGE_EXIT)


def add_data_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--data-dir and --cache-dir, worded and defaulted alike in every command that loads data."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        help="where datasets are read, never written (default ./data)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="where prepared datasets and downloads are kept (default ./data/cache, whatever --data-dir)",
    )


def run_main(main: Callable[[], int | None]) -> None:
    try:
        code = main()
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(USAGE_EXIT)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
