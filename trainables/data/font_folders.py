"""Read user-supplied printed-character images: an ImageFolder tree or Chars74K "EnglishFnt".

Both come out like the generator's data: 90x90 uint8, **glyph 255 on background 0**. The
polarity rule is per image: one whose outermost ring of pixels is brighter on average than
mid-grey is taken to be a dark glyph on a light page and inverted (Chars74K's Fnt images are
black on white). Non-square images are padded to a square with the background, never stretched.
"""

from __future__ import annotations

import re
import string
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from trainables.data.font_render import IMAGE_SIZE
from trainables.data.splits import SPLIT_NAMES, Split, Splits
from trainables.errors import UsageError

# Chars74K numbers its 62 samples in this order: Sample001 = '0' ... Sample062 = 'z'.
CHARS74K_ORDER = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SAMPLE_DIR = re.compile(r"Sample(\d{3})")


def to_glyph_image(image: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """Any PIL image -> uint8 [size, size], glyph bright on a dark background."""
    if "A" in image.getbands() or "transparency" in image.info:
        # A glyph on a transparent page: lay it on white, as a viewer shows it.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    gray = np.asarray(image.convert("L"))
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    if border.mean() > 127:
        gray = 255 - gray
    h, w = gray.shape
    if h != w:
        side = max(h, w)
        square = np.zeros((side, side), dtype=np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = gray
        gray = square
    # BILINEAR in Image.resize widens its kernel when shrinking, so 128 -> 90 is antialiased.
    return np.asarray(Image.fromarray(gray).resize((size, size), Image.Resampling.BILINEAR))


def _read(paths: Sequence[Path]) -> torch.Tensor:
    images = np.empty((len(paths), 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            images[i, 0] = to_glyph_image(image)
    return torch.from_numpy(images)


def _split(files: Sequence[tuple[Path, int]]) -> Split:
    files = sorted(files, key=lambda f: (f[1], str(f[0])))
    return Split(_read([p for p, _ in files]), torch.tensor([y for _, y in files], dtype=torch.int64))


def _warn_missing(classes: str, found: set[int], where: Path) -> None:
    missing = [classes[i] for i in range(len(classes)) if i not in found]
    if missing:
        warnings.warn(f"{where} has no images for classes {''.join(missing)!r}", stacklevel=3)


def load_imagefolder(root: Path, classes: str) -> Splits:
    """``root/{train,val,test}/<char>/*.png`` (torchvision's ImageFolder layout) as Splits.

    A class folder is named by its character and labelled by its index in ``classes``. Any
    image extension ImageFolder accepts is read; hidden folders and files are ignored.
    """
    root = Path(root)
    index = {c: i for i, c in enumerate(classes)}
    parts = {}
    for name in SPLIT_NAMES:
        split_dir = root / name
        if not split_dir.is_dir():
            raise UsageError(
                f"{split_dir} is missing; an image-folder font dataset needs train/, val/ and test/"
            )
        files = []
        for folder in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if folder.name not in index:
                raise UsageError(
                    f"class folder {folder} is not one of the classes {classes!r}; "
                    "remove it or add its character to classes"
                )
            files += [
                (p, index[folder.name])
                for p in sorted(folder.iterdir())
                if p.suffix.lower() in IMG_EXTENSIONS and not p.name.startswith(".")
            ]
        if not files:
            raise UsageError(f"{split_dir} holds no images; put them in {split_dir}/<class character>/")
        _warn_missing(classes, {y for _, y in files}, split_dir)
        parts[name] = _split(files)
    return Splits(**parts, classes=list(classes))


def split_counts(n: int, fractions: tuple[float, float]) -> tuple[int, int, int]:
    """(train, val, test) sizes for ``n`` images: val and test rounded from their fractions."""
    val, test = (int(n * f + 0.5) for f in fractions)
    return n - val - test, val, test


def load_chars74k(fnt_dir: Path, classes: str, *, seed: int, fractions: tuple[float, float]) -> Splits:
    """Chars74K "EnglishFnt" (``English/Fnt/SampleNNN/*.png``): the classes it has, split per class.

    Each class's files are shuffled by a generator seeded with (seed, code point) and cut into
    train/val/test by ``fractions`` = (val, test) of that class's count (the seed's 716/150/150 of
    1,016 is fractions (150/1016, 150/1016)). Samples whose character is not in ``classes`` are
    skipped, so the default class list drops 'O' and the ten missing lower-case letters.
    """
    fnt_dir = Path(fnt_dir)
    index = {c: i for i, c in enumerate(classes)}
    by_class: dict[int, list[Path]] = {}
    for folder in sorted(fnt_dir.iterdir()):
        match = _SAMPLE_DIR.fullmatch(folder.name)
        if not (folder.is_dir() and match and 1 <= int(match[1]) <= len(CHARS74K_ORDER)):
            continue
        char = CHARS74K_ORDER[int(match[1]) - 1]
        if char in index:
            by_class[index[char]] = sorted(folder.glob("*.png"))
    if not any(by_class.values()):
        raise UsageError(
            f"{fnt_dir} holds no SampleNNN/*.png images of the classes {classes!r}; check the path"
        )
    _warn_missing(classes, {y for y, paths in by_class.items() if paths}, fnt_dir)
    parts: dict[str, list[tuple[Path, int]]] = {name: [] for name in SPLIT_NAMES}
    for y, paths in sorted(by_class.items()):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed % 2**64, ord(classes[y])])))
        order = [paths[i] for i in rng.permutation(len(paths))]
        n_train, n_val, _ = split_counts(len(order), fractions)
        cuts = {
            "train": order[:n_train],
            "val": order[n_train : n_train + n_val],
            "test": order[n_train + n_val :],
        }
        for name, chosen in cuts.items():
            parts[name] += [(p, y) for p in chosen]
    return Splits(**{name: _split(files) for name, files in parts.items()}, classes=list(classes))
