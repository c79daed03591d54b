"""The `font` dataset: printed characters, 52 classes by default, 90x90 grayscale (glyph 255 on 0).

Three sources, one shape of result. ``source="auto"`` takes the first that exists:
  1. ``<root>/font/{train,val,test}/<char>/*.png``: the user's own images (ImageFolder layout);
  2. ``<root>/English/Fnt/SampleNNN/*.png``: Chars74K "EnglishFnt", very likely the seed's data
     (``source="chars74k"`` with no tree under root downloads it into ``work_dir``);
  3. otherwise images rendered (``font_render``) from the pinned font bundle (``font_bundle``:
     200 Google Fonts families, the same on every machine), plus the machine's own fonts with
     ``system_fonts=True`` and any folder of fonts given as ``fonts_dir``; a manifest of the fonts
     used is written to ``<work_dir>/font-generated/manifest-<seed>.json``.

Generated and Chars74K data are split by font: no font family (with its styles) is in two
splits. ``train``/``val``/``test`` are images per class in every source (``--quick`` shrinks the
data this way); left out, each source gives its full size. docs/font-data.md has the rules.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.data.chars74k import find_or_fetch
from hpsearch.trainables.data.font_bundle import bundle_families
from hpsearch.trainables.data.font_folders import load_chars74k, load_imagefolder
from hpsearch.trainables.data.font_render import SEED_SPLIT, default_font_dirs, generate
from hpsearch.trainables.data.registry import register_dataset
from hpsearch.trainables.data.splits import SPLIT_NAMES, Splits

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
    system_fonts: bool = False,
    train: int | None = None,
    val: int | None = None,
    test: int | None = None,
) -> Splits:
    """Printed characters as Splits of uint8 [N, 1, 90, 90], labels = indices into ``classes``.

    ``train``/``val``/``test`` are images per class. Generated data renders exactly that many
    (default the seed's 716/150/150); Chars74K and an image folder keep at most that many of what
    they have (default all), whole fonts first, so a smaller count never grows the data.
    ``download`` lets the Chars74K source fetch EnglishFnt.tgz when no tree is on disk. Generated
    data draws the font bundle, plus ``fonts_dir`` (a folder of .ttf/.otf) and, with
    ``system_fonts``, matplotlib's and the machine's fonts: both make the data differ from other
    machines'. ``families`` of the result: font families per split (none for an image folder).
    """
    root = Path(root)
    validate_classes(classes)
    if not isinstance(system_fonts, bool):
        raise UsageError(f"font system_fonts must be True or False, got {system_fonts!r}")
    counts = {"train": train, "val": val, "test": test}
    for name, count in counts.items():
        if count is not None and (
            not isinstance(count, int) or count < 0 or (name == "train" and count == 0)
        ):
            raise UsageError(
                f"font {name} must be a whole number of images per class (train > 0), got {count!r}"
            )
    chosen = resolve_source(root, source)
    if chosen == "imagefolder":
        splits = load_imagefolder(root / "font", classes, counts=counts, seed=seed)
        splits.source = f"font image folder {root / 'font'}"
        _report(f"image folder {root / 'font'}", splits, None)
        return splits
    if chosen == "chars74k":
        fnt_dir = find_or_fetch(root, Path(work_dir), download)
        splits, fonts = load_chars74k(fnt_dir, classes, seed=seed, counts=counts, work_dir=Path(work_dir))
        splits.source = f"Chars74K EnglishFnt {fnt_dir} ({sum(fonts.values())} fonts)"
        splits.families = dict(fonts)
        _report(f"Chars74K {fnt_dir}", splits, {name: f"{n} fonts" for name, n in fonts.items()})
        return splits
    full = {name: SEED_SPLIT[name] if counts[name] is None else counts[name] for name in SPLIT_NAMES}
    return _generate(Path(work_dir), seed, classes, fonts_dir, system_fonts, full)


def _report(what: str, splits: Splits, units: dict[str, str] | None) -> None:
    parts = []
    for name in SPLIT_NAMES:
        unit = f" ({units[name]})" if units else ""
        parts.append(f"{name} {len(getattr(splits, name)):,}{unit}")
    print(f"font: {what}: {' / '.join(parts)} images")


def _generate(
    work_dir: Path,
    seed: int,
    classes: str,
    fonts_dir: str | None,
    system_fonts: bool,
    counts: dict[str, int],
) -> Splits:
    start = time.perf_counter()
    families, dropped = bundle_families()
    sources = [path for family in families for path in family.files]
    if system_fonts:
        sources += default_font_dirs()
    if fonts_dir is not None:
        if not Path(fonts_dir).is_dir():
            raise UsageError(f"fonts_dir {fonts_dir} is not a directory; pass a directory of .ttf/.otf fonts")
        sources.append(Path(fonts_dir))
    splits, manifest = generate(classes, seed=seed, counts=counts, sources=sources)
    faces = manifest["faces"]
    files = {face["sha256"] for face in faces}
    synthesised = sum(face["synth_bold"] or face["synth_italic"] for face in faces)
    bundle = {f.package: {"version": f.version, "license": f.license} for f in families}
    manifest = {
        "options": {
            "seed": seed,
            "classes": classes,
            "fonts_dir": fonts_dir,
            "system_fonts": system_fonts,
            **counts,
        },
        "digest": splits.digest(),
        "bundle": bundle,
        "bundle_dropped": dropped,
        **manifest,
    }
    path = work_dir / "font-generated" / f"manifest-{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    if dropped:
        print(f"font: left out of the bundle: {', '.join(f'{k} ({v})' for k, v in dropped.items())}")
    print(
        f"font: rendered from {len(files)} font files, {len(faces)} faces ({synthesised} synthesised) "
        f"in {time.perf_counter() - start:.1f}s; manifest {path}"
    )
    units = {
        name: f"{len(s['groups'])} families = design groups, of {len(s['families'])} family names"
        for name, s in manifest["splits"].items()
    }
    extra = (" + system fonts" if system_fonts else "") + (f" + {fonts_dir}" if fonts_dir else "")
    groups = sum(len(s["groups"]) for s in manifest["splits"].values())
    splits.source = (
        f"font generated from {groups} font families (design groups) of the font bundle "
        f"({len(bundle)} pinned fontpkg packages){extra}, {len(files)} files (manifest {path})"
    )
    _report("generated, split by font family", splits, units)
    return splits
