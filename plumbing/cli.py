"""What every command-line entry point shares: user mistakes become one line and exit code 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from hpsearch.plumbing.errors import UsageError

USAGE_EXIT = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse with every command's help layout, whose mistakes are one line like the others.

    argparse's own error prints the whole usage block (14 lines for search/run.py) before the
    message; here it is the message and where to look.
    """

    def __init__(self, description: str | None = None, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(description=description, **kwargs)

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(USAGE_EXIT)


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
