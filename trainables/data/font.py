"""The `font` dataset: printed characters, 52 classes by default, 90x90 grayscale (glyph 255 on 0).

Three sources, one shape of result. ``source="auto"`` takes the first that exists:
  1. ``<root>/font/{train,val,test}/<char>/*.png``: the user's own images (ImageFolder layout);
  2. ``<root>/English/Fnt/SampleNNN/*.png``: Chars74K "EnglishFnt", very likely the seed's data;
  3. otherwise images rendered from the fonts on this machine (``font_render``), with a manifest
     of the fonts used written to ``<work_dir>/font-generated/manifest-<seed>.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from trainables.data.font_folders import load_chars74k, load_imagefolder
from trainables.data.font_render import generate
from trainables.data.registry import register_dataset
from trainables.data.splits import Splits
from trainables.errors import UsageError

# The seed's label table (its code, not its prose): digits, upper case without 'O' (too like
# '0'), then 17 lower-case letters. The label of a character is its index here.
FONT_CLASSES = "0123456789ABCDEFGHIJKLMNPQRSTUVWXYZabdefghijmnoqrtuy"
SOURCES = ("auto", "generate", "imagefolder", "chars74k")


def validate_classes(classes: str) -> str:
    """The class list as given, or a UsageError saying what is wrong with it."""
    if not isinstance(classes, str) or not classes:
        raise UsageError(f"classes must be a non-empty string of characters, got {classes!r}")
    if any(c.isspace() for c in classes):
        raise UsageError(f"classes must not contain whitespace, got {classes!r}")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise UsageError(f"classes must be unique characters; {''.join(repeated)!r} appear more than once")
    return classes


def resolve_source(root: Path, source: str) -> str:
    """The concrete source ``source`` means under ``root`` ("auto" looks at what is on disk)."""
    if source not in SOURCES:
        raise UsageError(f"unknown font source {source!r}; choose one of {', '.join(SOURCES)}")
    if source != "auto":
        return source
    if (root / "font" / "train").is_dir():
        return "imagefolder"
    if (root / "English" / "Fnt").is_dir():
        return "chars74k"
    return "generate"


@register_dataset("font")
def load_font(
    root: Path,
    *,
    work_dir: Path,
    download: bool,
    seed: int,
    classes: str = FONT_CLASSES,
    source: str = "auto",
    fonts_dir: str | None = None,
    train: int = 716,
    val: int = 150,
    test: int = 150,
) -> Splits:
    """Printed characters as Splits of uint8 [N, 1, 90, 90], labels = indices into ``classes``.

    ``train``/``val``/``test`` are images per class when generating, and the split proportions
    for Chars74K; an ImageFolder tree brings its own split. ``download`` is accepted for the
    loader interface and unused: there is nothing to download.
    """
    del download
    root = Path(root)
    validate_classes(classes)
    for name, count in (("train", train), ("val", val), ("test", test)):
        if not isinstance(count, int) or count < 0 or (name == "train" and count == 0):
            raise UsageError(
                f"font {name} must be a whole number of images per class (train > 0), got {count!r}"
            )
    chosen = resolve_source(root, source)
    if chosen == "imagefolder":
        return load_imagefolder(root / "font", classes)
    total = train + val + test
    if chosen == "chars74k":
        return load_chars74k(
            root / "English" / "Fnt", classes, seed=seed, fractions=(val / total, test / total)
        )
    return _generate(Path(work_dir), seed, classes, fonts_dir, train, val, test)


def _generate(
    work_dir: Path, seed: int, classes: str, fonts_dir: str | None, train: int, val: int, test: int
) -> Splits:
    start = time.perf_counter()
    splits, faces = generate(
        classes, seed=seed, train=train, val=val, test=test, fonts_dir=Path(fonts_dir) if fonts_dir else None
    )
    files = {face["sha256"] for face in faces}
    synthesised = sum(face["synth_bold"] or face["synth_italic"] for face in faces)
    manifest = {
        "options": {
            "seed": seed,
            "classes": classes,
            "fonts_dir": fonts_dir,
            "train": train,
            "val": val,
            "test": test,
        },
        "digest": splits.digest(),
        "faces": faces,
    }
    path = work_dir / "font-generated" / f"manifest-{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    n = sum(len(getattr(splits, name)) for name in ("train", "val", "test"))
    print(
        f"font: rendered {n:,} images from {len(files)} font files, {len(faces)} faces "
        f"({synthesised} synthesised) in {time.perf_counter() - start:.1f}s; manifest {path}"
    )
    return splits
