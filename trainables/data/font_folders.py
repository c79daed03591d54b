"""Read user-supplied printed-character images: an ImageFolder tree or Chars74K "EnglishFnt".

Both come out like the generator's data: 90x90 uint8, **glyph 255 on background 0**. The
polarity rule is per image: one whose outermost ring of pixels is brighter on average than
mid-grey is taken to be a dark glyph on a light page and inverted (Chars74K's Fnt images are
black on white). Non-square images are padded to a square with the background, never stretched.

Chars74K is split by font: image index KKKKK (``imgNNN-KKKKK.png``) is one font in one style in
every Sample folder, and the four styles of a font are grouped by the layout the images
themselves show (``style_layout``); each font goes whole to one split.
"""

from __future__ import annotations

import json
import re
import string
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.data.font_render import IMAGE_SIZE, assign_splits
from hpsearch.trainables.data.splits import SPLIT_NAMES, Split, Splits

# Chars74K numbers its 62 samples in this order: Sample001 = '0' ... Sample062 = 'z'.
CHARS74K_ORDER = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SAMPLE_DIR = re.compile(r"Sample(\d{3})")
_IMAGE = re.compile(r"img\d{3}-(\d{5})\.png")
STYLES_PER_FONT = 4  # normal, bold, italic, bold-italic
# Style layout evidence is measured on this many classes' images: enough for stable means, a
# fraction of the reading time of all 52.
_MEASURE_CLASSES = 6
# A layout is taken when the style position explains at least this share of the within-font
# spread of ink weight and slant (a wrong grouping mixes styles and scores near 0).
_LAYOUT_EVIDENCE = 0.5


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


def _read_one(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return to_glyph_image(image)


def _read(paths: Sequence[Path], known: dict[Path, np.ndarray] | None = None) -> torch.Tensor:
    images = np.empty((len(paths), 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, path in enumerate(paths):
        images[i, 0] = known[path] if known and path in known else _read_one(path)
    return torch.from_numpy(images)


def _split(files: Sequence[tuple[Path, int]], known: dict[Path, np.ndarray] | None = None) -> Split:
    files = sorted(files, key=lambda f: (f[1], str(f[0])))
    return Split(_read([p for p, _ in files], known), torch.tensor([y for _, y in files], dtype=torch.int64))


def _subset(
    files: list[tuple[Path, int]], count: int | None, seed: int, stream: int
) -> list[tuple[Path, int]]:
    """At most ``count`` files per class, a seeded choice (all of them when ``count`` is None)."""
    if count is None:
        return files
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed % 2**64, stream])))
    order = rng.permutation(len(files))
    taken: dict[int, int] = {}
    kept = []
    for i in order:
        path, y = files[i]
        if taken.get(y, 0) < count:
            taken[y] = taken.get(y, 0) + 1
            kept.append((path, y))
    return kept


def _warn_missing(classes: str, found: set[int], where: Path) -> None:
    missing = [classes[i] for i in range(len(classes)) if i not in found]
    if missing:
        warnings.warn(f"{where} has no images for classes {''.join(missing)!r}", stacklevel=3)


def load_imagefolder(
    root: Path, classes: str, *, counts: dict[str, int | None] | None = None, seed: int = 0
) -> Splits:
    """``root/{train,val,test}/<char>/*.png`` (torchvision's ImageFolder layout) as Splits.

    A class folder is named by its character and labelled by its index in ``classes``. Any
    image extension ImageFolder accepts is read; hidden folders and files are ignored. The
    user's split is kept; ``counts`` (split -> images per class) keeps a seeded subset of each.
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
        count = (counts or {}).get(name)
        parts[name] = _split(_subset(files, count, seed, SPLIT_NAMES.index(name)))
    return Splits(**parts, classes=list(classes))


def style_layout(features: np.ndarray) -> tuple[str, dict[str, float]]:
    """Which indices are one font's styles: "consecutive" (K-1)//4, or "strided" (K-1) % (n/4).

    ``features`` is [n, 2]: each image index's ink weight and slant (averaged over classes). Under
    the right grouping the style position explains most of the spread within a font (bold is
    always the heavy one, italic the slanted one); under a wrong one positions mix styles. Returns
    the layout and each candidate's score (share of within-font variance explained, 0..1).
    """
    n = len(features)
    candidates = {"consecutive": np.arange(n) // STYLES_PER_FONT}
    if n % STYLES_PER_FONT == 0:
        candidates["strided"] = np.arange(n) % (n // STYLES_PER_FONT)
    scores = {}
    for name, group in candidates.items():
        position = (
            np.arange(n) % STYLES_PER_FONT
            if name == "consecutive"
            else np.arange(n) // (n // STYLES_PER_FONT)
        )
        shares = []
        for f in features.T:
            resid = f - (np.bincount(group, f) / np.bincount(group))[group]
            by_position = (np.bincount(position, resid) / np.bincount(position))[position]
            shares.append(float(by_position.var() / max(resid.var(), 1e-12)))
        scores[name] = round(float(np.mean(shares)), 3)
    best = max(scores, key=lambda k: (scores[k], k == "consecutive"))
    if scores[best] < _LAYOUT_EVIDENCE:
        warnings.warn(
            f"Chars74K style layout unclear (scores {scores}); grouping consecutive indices by "
            f"{STYLES_PER_FONT}, which may put one font's styles in two splits",
            stacklevel=2,
        )
        best = "consecutive"
    return best, scores


def _style_features(image: np.ndarray) -> tuple[float, float]:
    """Ink weight (mean brightness) and slant (how far the ink leans right per pixel of height)."""
    w = image.astype(np.float64)
    total = w.sum()
    if total == 0:
        return 0.0, 0.0
    ys, xs = np.indices(w.shape)
    my, mx = (w * ys).sum() / total, (w * xs).sum() / total
    cov = (w * (xs - mx) * (ys - my)).sum() / total
    var_y = (w * (ys - my) ** 2).sum() / total
    return float(total / w.size), float(-cov / max(var_y, 1e-12))  # y grows down: a lean right is cov < 0


def _index_files(fnt_dir: Path, classes: str) -> dict[int, dict[int, Path]]:
    """Label -> {image index -> file} for the Sample folders of ``classes``."""
    index = {c: i for i, c in enumerate(classes)}
    by_class: dict[int, dict[int, Path]] = {}
    for folder in sorted(fnt_dir.iterdir()):
        match = _SAMPLE_DIR.fullmatch(folder.name)
        if not (folder.is_dir() and match and 1 <= int(match[1]) <= len(CHARS74K_ORDER)):
            continue
        char = CHARS74K_ORDER[int(match[1]) - 1]
        if char in index:
            files = {int(m[1]): p for p in sorted(folder.glob("*.png")) if (m := _IMAGE.fullmatch(p.name))}
            by_class[index[char]] = files
    return by_class


def load_chars74k(
    fnt_dir: Path,
    classes: str,
    *,
    seed: int,
    counts: dict[str, int | None],
    work_dir: Path | None = None,
) -> tuple[Splits, dict[str, int]]:
    """Chars74K "EnglishFnt" (``English/Fnt/SampleNNN/imgNNN-KKKKK.png``), split by font.

    Index K is one font in one style in every Sample folder; ``style_layout`` groups the four
    styles of a font, measured on the images. Fonts go whole to train/val/test in the seed's
    716:150:150 proportions (hash-ranked by seed); ``counts`` (split -> images per class, None =
    all) takes whole fonts in that seeded order, the last one cut short if need be. Samples whose
    character is not in ``classes`` are skipped. Returns the splits and how many fonts each split's
    images come from; with a ``work_dir``, writes ``font-chars74k/manifest-<seed>.json`` listing
    each split's fonts and those its images come from.
    """
    fnt_dir = Path(fnt_dir)
    by_class = _index_files(fnt_dir, classes)
    if not any(by_class.values()):
        raise UsageError(
            f"{fnt_dir} holds no SampleNNN/imgNNN-KKKKK.png images of the classes {classes!r}; check the path"
        )
    _warn_missing(classes, {y for y, files in by_class.items() if files}, fnt_dir)
    indices = sorted({k for files in by_class.values() for k in files})
    position = {k: i for i, k in enumerate(indices)}
    # Measure the style layout on a few classes' images, kept for the final read.
    known: dict[Path, np.ndarray] = {}
    sums, seen = np.zeros((len(indices), 2)), np.zeros(len(indices))
    for y in sorted(by_class)[:_MEASURE_CLASSES]:
        feats = {}
        for k, path in by_class[y].items():
            known[path] = _read_one(path)
            feats[k] = _style_features(known[path])
        values = np.array(list(feats.values()))
        z = (values - values.mean(0)) / (values.std(0) + 1e-12)  # classes differ in ink: compare within
        for k, row in zip(feats, z, strict=True):
            sums[position[k]] += row
            seen[position[k]] += 1
    layout, scores = style_layout(sums / np.maximum(seen, 1)[:, None])
    n_fonts = -(-len(indices) // STYLES_PER_FONT)
    font_of = {
        k: (i // STYLES_PER_FONT if layout == "consecutive" else i % n_fonts) for k, i in position.items()
    }
    names = {f: f"font{f + 1:03d}" for f in set(font_of.values())}
    split_fonts = assign_splits(names.values(), seed)
    parts: dict[str, list[tuple[Path, int]]] = {name: [] for name in SPLIT_NAMES}
    used: dict[str, set[str]] = {name: set() for name in SPLIT_NAMES}  # fonts with an image taken
    for name, fonts in split_fonts.items():
        members = [k for font in fonts for k in indices if names[font_of[k]] == font]  # seeded font order
        for y, files in sorted(by_class.items()):
            chosen = [k for k in members if k in files][: counts.get(name)]
            parts[name] += [(files[k], y) for k in chosen]
            used[name].update(names[font_of[k]] for k in chosen)
    splits = Splits(**{name: _split(files, known) for name, files in parts.items()}, classes=list(classes))
    if work_dir is not None:
        manifest = {
            "source": str(fnt_dir),
            "seed": seed,
            "layout": layout,
            "layout_scores": scores,
            "splits": {
                name: {
                    "fonts": sorted(fonts),
                    "fonts_used": sorted(used[name]),
                    "images": len(getattr(splits, name)),
                }
                for name, fonts in split_fonts.items()
            },
            "fonts": {
                names[f]: [k for k in indices if font_of[k] == f] for f in sorted(set(font_of.values()))
            },
            "digest": splits.digest(),
        }
        path = Path(work_dir) / "font-chars74k" / f"manifest-{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"font: Chars74K styles grouped {layout} by {STYLES_PER_FONT} (layout scores {scores})")
    return splits, {name: len(used[name]) for name in split_fonts}
