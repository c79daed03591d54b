"""`python -m hpsearch COMMAND ...`: the `hpsearch` command without its console script."""

from hpsearch.cli import main
from hpsearch.plumbing.cli import run_main

if __name__ == "__main__":
    run_main(lambda: main(prog="python -m hpsearch"))
