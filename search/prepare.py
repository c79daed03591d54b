"""Prepare a space's dataset once into the uint8 tensor cache (e.g. on a cluster's shared disk).

python search/prepare.py --space spaces/font.py --data-dir /shared/data
"""

from __future__ import annotations

import sys
import time

from hpsearch.plumbing.cli import ArgumentParser, add_data_arguments, run_main
from hpsearch.search.data import load_space_data
from hpsearch.search.space import load_space


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(__doc__)
    p.add_argument(
        "--space", required=True, help="a space file, or a built-in space's name (e.g. font, mnist)"
    )
    add_data_arguments(p)
    p.add_argument("--quick", action="store_true", help="also prepare the space's --quick data")
    p.add_argument("--offline", action="store_true", help="never try to download a missing dataset")
    p.add_argument(
        "--allow-small-split",
        action="store_true",
        help="font data: accept a val or test split of fewer than 5 font families (refused by default)",
    )
    args = p.parse_args(argv)
    space = load_space(args.space)
    start = time.perf_counter()
    data = load_space_data(
        space,
        args.data_dir,
        cache_dir=args.cache_dir,
        quick=args.quick,
        download=not args.offline,
        allow_small_split=args.allow_small_split,
    )
    print(
        f"{space.task.name}: {len(data.train):,} train / {len(data.val):,} val / {len(data.test):,} test "
        f"images cached under {args.cache_dir or 'data/cache'} ({time.perf_counter() - start:.1f} s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    run_main(main)
