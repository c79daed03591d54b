"""What every command-line entry point shares: user mistakes become one line and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

from trainables.errors import UsageError

USAGE_EXIT = 2


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
