"""How many font families font data's splits hold: said on every load, and too few refused.

Val and test of font data are fonts the model never trained on (docs/font-data.md), so their
scores are averages over those fonts. With one or two families there (what a machine with few
fonts gave), val_acc measures how well a model reads one typeface, and the search would tune
for it. Imports nothing heavy: every load goes through it, cache hits included.
"""

from __future__ import annotations

import sys

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.data.splits import Splits

# Fewest font families val and test may each hold before a score is refused as one of a few fonts.
MIN_EVAL_FAMILIES = 5


def check_families(data: Splits, *, allow_small_split: bool) -> None:
    """Print how many font families each split holds (one line on stderr), or refuse with a
    UsageError a val or test split of fewer than ``MIN_EVAL_FAMILIES`` unless ``allow_small_split``.
    Data not split by font family (``data.families`` empty) passes unsaid."""
    if not data.families:
        return
    counts = data.families
    said = f"{sum(counts.values())} families -> " + ", ".join(f"{name} {n}" for name, n in counts.items())
    small = [name for name in ("val", "test") if counts.get(name, 0) < MIN_EVAL_FAMILIES]
    if small and not allow_small_split:
        raise UsageError(
            f"font data: {said}; {' and '.join(small)} need at least {MIN_EVAL_FAMILIES} families, or a "
            "score measures a handful of fonts: add fonts (docs/font-data.md) or pass --allow-small-split "
            "to use it anyway"
        )
    print(f"font data: {said}", file=sys.stderr)
