"""Render printed characters from real font files: the `font` task's own data.

The seed's data (very likely Chars74K "EnglishFnt") cannot be downloaded here, so we draw it
from the font files we are given (by default the pinned bundle of ``font_bundle``, the same on
every machine): each family in normal / bold / italic / bold-italic (a variable font at weights
400 and 700), each glyph centred on its ink and jittered (scale, shift, rotation) in one affine
transform. Images are 90x90 uint8, **glyph 255 on background 0** (the readers in
``font_folders`` turn other sources to match).

Splits are by font family, so validation and test measure unseen designs, not the training
faces shifted a few pixels: families are first merged into design groups (one family's width
and weight cuts, Computer Modern's per-style TeX names, and clones such as Arimo = Liberation
Sans, measured by glyph shape), then each group goes whole to one split (``assign_splits``).

Deterministic: the same seed and the same font files give byte-identical tensors (with the same
Pillow, whose wheel brings its own FreeType), whatever the directory listing order or the number
of worker processes. Each class draws its jitter and its place in the cycle of faces from
generators seeded by (seed, code point), so a class renders the same in any class list.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import string
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from fontTools import agl
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.data.splits import SPLIT_NAMES, Split, Splits

IMAGE_SIZE = 90
STYLES = ("normal", "bold", "italic", "bold-italic")
FONT_SUFFIXES = (".ttf", ".otf")

# A face is sized so its tallest ascender-to-deepest-descender span is this many pixels: letters
# keep their natural relative sizes ('o' smaller than 'O' and '0') and line up across faces.
_EXTENT_PX = 72
# ... unless its widest glyph (slant included) would then be wider than this: with the jitter
# below, a glyph must still fit in the 90 px frame.
_WIDTH_PX = 76
# Sizing looks at all ASCII letters and digits, not the task's classes, so a character renders
# the same whatever the class list.
_SIZING_CHARS = string.digits + string.ascii_letters
_ITALIC_SHEAR = math.tan(math.radians(12))  # a typical oblique angle (DejaVu's is 11 degrees)
_BOLD_STROKE = 0.025  # extra stroke on each side, per px of font size: regular -> bold stem width
_SCALE_JITTER = 0.10  # +-10% size
_SHIFT_JITTER = 3.0  # +-3 px each axis
_ROTATE_JITTER = 8.0  # +-8 degrees


@dataclass(frozen=True)
class FontFile:
    """One usable font file, with the family and style its own tables declare."""

    path: str
    family: str
    bold: bool
    italic: bool
    sha256: str
    revision: float
    sizing_chars: str  # the ASCII letters and digits it draws, for sizing its faces
    typographic: str = ""  # the typographic family (name ID 16) where the font declares one
    weight: int = 400  # OS/2 weight class; for a variable font, the weight it is drawn at
    width: int = 5  # OS/2 width class: 5 is normal, 4 semi-condensed, ...
    variation: tuple[float, ...] | None = None  # a variable font's axis values (fvar order), else None

    @property
    def style(self) -> str:
        return STYLES[2 * self.italic + self.bold]


@dataclass(frozen=True)
class Face:
    """A font file drawn in one style: real where the family has that file, else synthesised."""

    font: FontFile
    style: str
    synth_bold: bool  # thickened with a stroke in the glyph colour
    synth_italic: bool  # slanted with a shear
    size: int  # font size in px
    stroke: float  # stroke width in px (0 unless synth_bold)

    def manifest(self) -> dict:
        return {
            "path": self.font.path,
            "family": self.font.family,
            "style": self.style,
            "synth_bold": self.synth_bold,
            "synth_italic": self.synth_italic,
            "sha256": self.font.sha256,
            "weight": self.font.weight,
            "variation": self.font.variation,
            "size_px": self.size,
        }


def default_font_dirs() -> list[Path]:
    """matplotlib's bundled fonts, then the machine's: what ``system_fonts`` adds to the bundle.

    Not part of the default data: what these hold differs from machine to machine."""
    import matplotlib

    return [
        Path(matplotlib.get_data_path()) / "fonts" / "ttf",
        Path("/usr/share/fonts"),
        Path("/usr/local/share/fonts"),
        Path.home() / ".fonts",
    ]


def discover_fonts(classes: str, dirs: Iterable[Path]) -> list[FontFile]:
    """Every distinct .ttf/.otf in ``dirs`` (folders, searched recursively, or font files) that
    truly draws every character of ``classes``; a variable font once per weight it is drawn at.

    Sorted by (family, style, weight, sha256), so the order never depends on the directory listing.
    """
    candidates = [
        p for d in map(Path, dirs) for p in ([d] if d.is_file() else d.rglob("*") if d.is_dir() else ())
    ]
    paths = sorted({p.resolve() for p in candidates if p.suffix.lower() in FONT_SUFFIXES and p.is_file()})
    seen: dict[str, list[FontFile]] = {}
    # fontTools logs a warning for every odd timestamp in old fonts; none of it matters here.
    log = logging.getLogger("fontTools")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        for path in paths:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest not in seen:  # identical bytes under another name or in another dir
                seen[digest] = _read_font(path, digest, classes)
    finally:
        log.setLevel(level)
    fonts = [font for instances in seen.values() for font in instances]
    return sorted(fonts, key=lambda f: (f.family, STYLES.index(f.style), f.weight, f.sha256))


# A variable font is drawn at these weights (clamped to its range): its regular and its bold.
# Its default instance is often its lightest (Nunito's ExtraLight) or another cut (Archivo's SemiBold).
VARIABLE_WEIGHTS = (400, 700)


def _read_font(path: Path, digest: str, classes: str) -> list[FontFile]:
    try:
        tt = TTFont(path, lazy=True)
        cmap = tt.getBestCmap() or {}
        glyphs = [cmap.get(ord(c)) for c in classes]
        if None in glyphs or len(set(glyphs)) < len(classes):
            return []  # a missing character, or several characters drawn by one glyph (LastResort)
        # Some TeX fonts (cmsy10, cmex10, cmmi10) put symbols at ASCII code points; their glyph
        # names give them away: 'A' -> 'parenrightbt'. Names that mean nothing ('glyph36') pass.
        if any(agl.toUnicode(g.split(".")[0]) not in ("", c) for c, g in zip(classes, glyphs, strict=True)):
            return []
        # Zapf Dingbats clones (URW's D050000L) name their ornaments a1, a10, ...: no letters there.
        if any(re.fullmatch(r"a\d+", g) for g in glyphs):
            return []
        names = tt["name"]
        # The typographic family (ID 16) where there is one: "Lato Light" is Lato at weight 300,
        # and a variable font's ID 1 names its default instance ("Nunito ExtraLight").
        typographic = names.getDebugName(16) or ""
        family = typographic or names.getDebugName(1) or path.stem
        os2 = tt["OS/2"] if "OS/2" in tt else None
        mac = tt["head"].macStyle
        weight = os2.usWeightClass if os2 else 400
        bold = bool(mac & 1) or bool(os2 and (os2.fsSelection & 0x20 or weight >= 600))
        italic = bool(mac & 2) or bool(os2 and os2.fsSelection & 1) or tt["post"].italicAngle != 0
        width = os2.usWidthClass if os2 else 5
        revision = float(tt["head"].fontRevision)
        sizing = "".join(c for c in _SIZING_CHARS if ord(c) in cmap)
        # The last word goes to the renderer: every class character must leave some ink.
        pil = ImageFont.truetype(str(path), 32, layout_engine=ImageFont.Layout.BASIC)
        if any(pil.getmask(c).getbbox() is None for c in classes):
            return []
        axes = tt["fvar"].axes if "fvar" in tt else []
    except Exception:  # a broken or unsupported file is skipped, as a font menu would
        return []
    font = FontFile(str(path), family, bold, italic, digest, revision, sizing, typographic, weight, width)
    wght = next((a for a in axes if a.axisTag == "wght"), None)
    if wght is None:
        return [font]  # static, or variable in other axes only: drawn as it comes
    defaults = [a.defaultValue for a in axes]
    instances = []
    for w in sorted({min(max(w, wght.minValue), wght.maxValue) for w in VARIABLE_WEIGHTS}):
        values = tuple(w if a is wght else d for a, d in zip(axes, defaults, strict=True))
        bold = w >= 600
        instances.append(replace(font, bold=bold, weight=round(w), width=5, variation=values))
    return instances


def build_faces(fonts: Sequence[FontFile]) -> list[Face]:
    """Four styles per family: the family's own file for a style, else one synthesised from it.

    Where several files claim the same family and style, the one nearest weight 400 (700 for
    bold) and normal width is kept (Lato's Regular, not its Light; DejaVu Sans, not its
    Condensed), then the newer revision (two versions of DejaVu Sans), so a second copy of a font
    does not count twice. A style is synthesised from the closest file that lacks only what can
    be added (bold by a stroke, italic by a shear); a family with no such file (only an italic)
    skips that style.
    """

    def rank(font: FontFile) -> tuple:
        target = 700 if font.bold else 400
        return (abs(font.weight - target), abs(font.width - 5), -font.revision, font.sha256)

    families: dict[str, dict[tuple[bool, bool], FontFile]] = {}
    for font in fonts:
        slots = families.setdefault(font.family, {})
        old = slots.get((font.bold, font.italic))
        if old is None or rank(font) < rank(old):
            slots[(font.bold, font.italic)] = font
    faces = []
    for family in sorted(families):
        slots = families[family]
        for style in STYLES:
            bold, italic = "bold" in style, "italic" in style
            bases = [k for k in slots if (k[0] <= bold and k[1] <= italic)]
            if not bases:
                continue
            base = slots[max(bases, key=lambda k: k[0] + k[1])]
            faces.append(_sized(base, style, bold and not base.bold, italic and not base.italic))
    return faces


def _sized(font: FontFile, style: str, synth_bold: bool, synth_italic: bool) -> Face:
    ref = 100
    pil = _truetype(font.path, ref, font.variation)
    stroke = _BOLD_STROKE * ref if synth_bold else 0
    boxes = np.array([pil.getbbox(c, stroke_width=stroke) for c in font.sizing_chars])
    heights = boxes[:, 3] - boxes[:, 1]
    widths = boxes[:, 2] - boxes[:, 0] + (_ITALIC_SHEAR * heights if synth_italic else 0)
    span = boxes[:, 3].max() - boxes[:, 1].min()
    size = max(8, round(ref * min(_EXTENT_PX / span, _WIDTH_PX / widths.max())))
    return Face(
        font, style, synth_bold, synth_italic, size, round(_BOLD_STROKE * size, 1) if synth_bold else 0.0
    )


@lru_cache(maxsize=256)
def _truetype(path: str, size: int, variation: tuple[float, ...] | None = None) -> ImageFont.FreeTypeFont:
    # Basic layout, not Raqm: Raqm is there on some machines and not others, and one glyph needs
    # no shaping.
    font = ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)
    if variation is not None:
        font.set_variation_by_axes(list(variation))
    return font


def _glyph(face: Face, char: str) -> tuple[Image.Image, float, float]:
    """The glyph drawn upright at its face's size on a padded canvas, with the centre of its ink."""
    font = _truetype(face.font.path, face.size, face.font.variation)
    x0, y0, x1, y1 = font.getbbox(char, stroke_width=face.stroke)
    pad = 4 + math.ceil(face.stroke)
    canvas = Image.new("L", (math.ceil(x1 - x0) + 2 * pad, math.ceil(y1 - y0) + 2 * pad), 0)
    draw = ImageDraw.Draw(canvas)
    draw.text((pad - x0, pad - y0), char, font=font, fill=255, stroke_width=face.stroke, stroke_fill=255)
    # Centre on the ink itself: getbbox's box includes bearings that differ from font to font.
    left, top, right, bottom = canvas.getbbox() or (0, 0, canvas.width, canvas.height)
    return canvas, (left + right) / 2, (top + bottom) / 2


def _place(glyph: Image.Image, cx: float, cy: float, jitter: np.ndarray, shear: float) -> np.ndarray:
    """One affine transform: shear (synthetic italic), scale, rotate, centre plus shift."""
    u_scale, u_dx, u_dy, u_rot = jitter
    scale = 1.0 + _SCALE_JITTER * u_scale
    theta = math.radians(_ROTATE_JITTER * u_rot)
    cos, sin = math.cos(theta), math.sin(theta)
    # Image y points down: a negative x-shear per unit y leans the top of the glyph right.
    forward = scale * np.array([[cos, sin], [-sin, cos]]) @ np.array([[1.0, -shear], [0.0, 1.0]])
    inverse = np.linalg.inv(forward)  # PIL maps each output pixel back to the source
    centre = np.array([IMAGE_SIZE / 2 + _SHIFT_JITTER * u_dx, IMAGE_SIZE / 2 + _SHIFT_JITTER * u_dy])
    offset = np.array([cx, cy]) - inverse @ centre
    data = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    out = glyph.transform(
        (IMAGE_SIZE, IMAGE_SIZE),
        Image.Transform.AFFINE,
        data,
        resample=Image.Resampling.BILINEAR,
        fillcolor=0,
    )
    return np.asarray(out)


def render_class(char: str, faces: Sequence[Face], seed: int, count: int, stream: int = 0) -> np.ndarray:
    """``count`` images of ``char``, uint8 [count, 90, 90]; sample i uses face i % len(faces).

    The jitter comes from a generator of its own, seeded by (seed, code point, stream): the result
    does not depend on the other classes or on which process renders it. Each split renders with
    its own ``stream``, so two splits never share a jitter sequence.
    """
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed % 2**64, ord(char), stream])))
    jitter = rng.uniform(-1.0, 1.0, size=(count, 4))
    glyphs = {face: _glyph(face, char) for face in faces[:count]}  # only the faces drawn
    out = np.empty((count, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i in range(count):
        face = faces[i % len(faces)]
        image, cx, cy = glyphs[face]
        out[i] = _place(image, cx, cy, jitter[i], _ITALIC_SHEAR if face.synth_italic else 0.0)
    return out


# Two families whose upright glyphs correlate this well are one design under two names. Measured on
# 66 families (matplotlib's, Debian's fonts-dejavu/liberation/freefont/urw-base35/croscore/noto-core/
# texgyre/lato/open-sans/roboto...): clones and derivatives score 0.955-0.997 (Arimo = Liberation
# Sans 0.996, FreeSans ~ Nimbus Sans 0.989, Nimbus Roman ~ STIXGeneral 0.974, Noto Sans ~ Open Sans
# 0.955), distinct designs at most 0.931 (Linux Libertine Mono ~ Linux Libertine); docs/font-data.md.
SAME_DESIGN = 0.94
# Width, weight and optical-size words: "DejaVu Sans Condensed" and "Roboto Light" are cuts of
# "DejaVu Sans" and "Roboto", which fonts without a typographic family name (ID 16) only say this way.
_CUT_WORDS = re.compile(
    r"\b(?:(?:semi|extra|ultra)?(?:condensed|expanded)|narrow|compressed|wide|hairline|thin|"
    r"(?:extra|ultra)?light|book|regular|medium|(?:semi|demi|extra|ultra)?bold|demi|black|heavy|"
    r"display|italic|oblique)\b",
    re.IGNORECASE,
)
# Computer Modern names each style as a font of its own: cmb10 is cmr10's bold, cmti10 its italic.
_TEX_CM = re.compile(r"cm(r|b|bx|ti|sl|bxsl|bxti|u|ss|ssbx|ssi|tt|itt|sltt)\d+")
_CM_FAMILY = {"ss": "cmss", "ssbx": "cmss", "ssi": "cmss", "tt": "cmtt", "itt": "cmtt", "sltt": "cmtt"}


def design_name(font: FontFile) -> str:
    """The family a font's names say it belongs to, without width/weight/optical-size words."""
    tex = _TEX_CM.fullmatch(font.family)
    if tex:
        return _CM_FAMILY.get(tex[1], "cmr")
    name = _CUT_WORDS.sub(" ", font.typographic or font.family)
    return " ".join(name.split()) or font.family


def _signature(face: Face, chars: str) -> np.ndarray:
    """Each glyph cropped to its ink, squashed to 24x24 (so width cuts compare equal), unit norm."""
    rows = []
    for char in chars:
        image, _, _ = _glyph(face, char)
        crop = image.crop(image.getbbox() or (0, 0, image.width, image.height))
        g = np.asarray(crop.resize((24, 24), Image.Resampling.BILINEAR), np.float32).ravel()
        g = g - g.mean()
        rows.append(g / (np.linalg.norm(g) + 1e-6))
    return np.stack(rows)


def design_groups(faces: Sequence[Face]) -> dict[str, str]:
    """Family -> its design group: families merged by ``design_name`` and by glyph likeness.

    Likeness is the mean correlation of the upright faces' glyphs of the ASCII letters and digits
    they all draw (not the task's classes: the grouping must not change with the class list);
    pairs at or above ``SAME_DESIGN`` merge (transitively). A group is named by its alphabetically
    first family.
    """
    upright: dict[str, Face] = {}
    for face in faces:  # the family's normal face; a family without one compares its first face
        if face.style == "normal" or face.font.family not in upright:
            upright[face.font.family] = face
    families = sorted(upright)
    parent = {f: f for f in families}

    def root(f: str) -> str:
        while parent[f] != f:
            f = parent[f]
        return f

    def join(a: str, b: str) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_name: dict[str, str] = {}
    for family in families:
        join(family, by_name.setdefault(design_name(upright[family].font), family))
    chars = "".join(c for c in _SIZING_CHARS if all(c in upright[f].font.sizing_chars for f in families))
    sigs = np.stack([_signature(upright[f], chars) for f in families])  # [F, chars, 576]
    likeness = np.einsum("acp,bcp->ab", sigs, sigs) / len(chars)
    for i, j in zip(*np.nonzero(np.triu(likeness >= SAME_DESIGN, k=1)), strict=True):
        join(families[i], families[j])
    return {f: root(f) for f in families}


# The seed's split, 716/150/150 images per class: the shares of design groups each split gets.
SEED_SPLIT = {"train": 716, "val": 150, "test": 150}


def split_sizes(n: int, shares: dict[str, int] = SEED_SPLIT) -> dict[str, int]:
    """How many of ``n`` groups each split gets: largest remainder on ``shares``, at least one each."""
    if n < len(shares):
        raise UsageError(
            f"{n} font group(s) cannot give train, val and test one each; add fonts (fonts_dir=DIR, "
            "or system_fonts=True)"
        )
    total = sum(shares.values())
    exact = {k: n * v / total for k, v in shares.items()}
    sizes = {k: max(1, math.floor(x)) for k, x in exact.items()}
    while sum(sizes.values()) > n:  # the minimum of one pushed us over: take from the largest
        sizes[max(sizes, key=lambda k: (sizes[k], k))] -= 1
    for k in sorted(exact, key=lambda k: (-(exact[k] - math.floor(exact[k])), list(shares).index(k))):
        if sum(sizes.values()) == n:
            break
        sizes[k] += 1
    return sizes


def group_rank(seed: int, group: str) -> str:
    """A group's place in the seeded order: a hash, so it ignores listing order and other groups."""
    return hashlib.sha256(f"{seed}\0{group}".encode()).hexdigest()


def assign_splits(groups: Iterable[str], seed: int) -> dict[str, list[str]]:
    """Split name -> the groups it gets (in seeded order), every group in exactly one split."""
    ranked = sorted(set(groups), key=lambda g: (group_rank(seed, g), g))
    sizes, out, start = split_sizes(len(ranked)), {}, 0
    for name, size in sizes.items():
        out[name] = ranked[start : start + size]
        start += size
    return out


def face_schedule(
    faces: Sequence[Face],
    char: str,
    seed: int,
    count: int,
    stream: int = 0,
    group_of: dict[str, str] | None = None,
) -> list[Face]:
    """The face that draws each of ``count`` images of ``char``, taking the faces' design groups
    (``group_of``, else their families) in turn, and within a group its families and styles in turn.

    So a few images per class already show as many designs, and a design with many families (Noto
    Sans and its script variants) is drawn no more often than one with a single family. Each class
    starts at a place of its own, seeded by (seed, code point, stream): together the classes show
    every group even when ``count`` is smaller than the number of groups.
    """
    if count == 0:
        return []
    members: dict[str, list[Face]] = {}
    for face in sorted(faces, key=lambda f: (f.font.family, STYLES.index(f.style))):
        key = group_of.get(face.font.family, face.font.family) if group_of else face.font.family
        members.setdefault(key, []).append(face)
    groups = sorted(members)
    n = len(groups)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed % 2**64, ord(char), stream, 1])))
    start = int(rng.integers(n * len(STYLES)))
    out = []
    for j in range(start, start + count):
        group = members[groups[j % n]]
        out.append(group[(j // n + j % n) % len(group)])  # each round, the next style of every group
    return out


def render_splits(
    classes: str,
    faces: dict[str, Sequence[Face]],
    *,
    seed: int,
    counts: dict[str, int],
    workers: int = 1,
    group_of: dict[str, str] | None = None,
) -> Splits:
    """``counts[split]`` images per class in each split, drawn by that split's own faces in the
    order ``face_schedule`` gives; ``families`` of the result counts the design groups (``group_of``,
    else the families) whose faces each split's images show.

    ``workers`` > 1 renders (class, split) pairs in parallel processes; the bytes are the same
    either way.
    """
    for name in SPLIT_NAMES:
        if counts[name] and not faces.get(name):
            raise UsageError(
                f"no font faces for the {name} split; pass fonts_dir=DIR with more .ttf/.otf fonts"
            )
    jobs = [(c, name) for name in SPLIT_NAMES for c in classes]
    schedules = [
        tuple(face_schedule(faces.get(name, ()), c, seed, counts[name], SPLIT_NAMES.index(name), group_of))
        for c, name in jobs
    ]
    shape = (1, IMAGE_SIZE, IMAGE_SIZE)
    xs = {name: np.empty((len(classes) * counts[name], *shape), np.uint8) for name in SPLIT_NAMES}
    columns = (
        [c for c, _ in jobs],
        schedules,
        [seed] * len(jobs),
        [counts[name] for _, name in jobs],
        [SPLIT_NAMES.index(name) for _, name in jobs],
    )
    parallel = workers > 1 and len(jobs) > 1
    # Filled as results arrive, so peak memory is the dataset plus a few classes.
    with ProcessPoolExecutor(max_workers=workers) if parallel else nullcontext() as pool:
        results = pool.map(render_class, *columns) if pool else map(render_class, *columns)
        for (char, name), images in zip(jobs, results, strict=True):  # map keeps the job order
            k, n = classes.index(char), counts[name]
            xs[name][k * n : (k + 1) * n, 0] = images
    parts = {}
    group = (lambda family: group_of.get(family, family)) if group_of else (lambda family: family)
    shown: dict[str, set[str]] = {name: set() for name in SPLIT_NAMES}
    for (_, name), schedule in zip(jobs, schedules, strict=True):
        shown[name].update(group(face.font.family) for face in schedule)
    for name in SPLIT_NAMES:
        y = torch.arange(len(classes), dtype=torch.int64).repeat_interleave(counts[name])
        parts[name] = Split(torch.from_numpy(xs[name]), y)
    return Splits(**parts, classes=list(classes), families={name: len(shown[name]) for name in SPLIT_NAMES})


@dataclass(frozen=True)
class FontSplit:
    """Which faces each split draws: every face, its family's design group, each split's groups."""

    faces: list[Face]
    group_of: dict[str, str]  # family -> design group
    groups: dict[str, list[str]]  # split -> its design groups, sorted
    split_faces: dict[str, list[Face]]  # split -> its faces

    def families(self, split: str) -> list[str]:
        return sorted({f.font.family for f in self.split_faces[split]})


def split_fonts(classes: str, *, seed: int, sources: Iterable[Path]) -> FontSplit:
    """Discover the fonts in ``sources`` (folders or files), build their faces and split them by
    design group: the same fonts and seed give the same split on any machine, in any order."""
    fonts = discover_fonts(classes, sources)
    if not fonts:
        raise UsageError(
            f"no font draws every one of the classes {classes!r}; pass fonts_dir=DIR with fonts that do"
        )
    faces = build_faces(fonts)
    group_of = design_groups(faces)
    split_groups = assign_splits(group_of.values(), seed)
    split_of = {g: name for name, gs in split_groups.items() for g in gs}
    split_faces = {
        name: [f for f in faces if split_of[group_of[f.font.family]] == name] for name in SPLIT_NAMES
    }
    groups = {name: sorted(split_groups[name]) for name in SPLIT_NAMES}
    return FontSplit(faces, group_of, groups, split_faces)


def generate(
    classes: str,
    *,
    seed: int,
    counts: dict[str, int],
    sources: Iterable[Path],
    workers: int | None = None,
) -> tuple[Splits, dict]:
    """Split the fonts in ``sources`` by design group (``split_fonts``) and render ``counts`` per
    class. Returns the splits and a manifest: the faces, and each split's groups and families.
    ``workers`` defaults to the CPU count (capped at 8).
    """
    plan = split_fonts(classes, seed=seed, sources=sources)
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    splits = render_splits(
        classes, plan.split_faces, seed=seed, counts=counts, workers=workers, group_of=plan.group_of
    )
    manifest = {
        "faces": [face.manifest() | {"group": plan.group_of[face.font.family]} for face in plan.faces],
        "splits": {
            name: {
                "groups": plan.groups[name],
                "families": plan.families(name),
                "faces": len(plan.split_faces[name]),
                "groups_shown": splits.families[name],
                "images": len(getattr(splits, name)),
            }
            for name in SPLIT_NAMES
        },
    }
    return splits, manifest
