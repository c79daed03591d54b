"""Write a Chars74K EnglishFnt-layout tree of the real size, drawn from this machine's fonts.

The real archive cannot be downloaded here; this stands in for it where size is what matters:
how long a `--quick` font search takes on a user's full Chars74K tree (reading, measuring the
style layout, splitting). Same layout as the archive: `English/Fnt/SampleNNN/imgNNN-KKKKK.png`,
62 classes ('0'-'9', 'A'-'Z', 'a'-'z'), 1,016 images each = 254 fonts x 4 styles in consecutive
indices (4f+1 .. 4f+4 = normal, bold, italic, bold-italic), 128x128 grayscale, black on white.

This machine has fewer than 254 font families, so font f draws with family f mod N (each round
with its own jitter): accuracy on this tree says nothing about reading unseen designs, since a
validation font may be a training font's family. Use it for time and behaviour, not for accuracy.

    python benchmarks/chars74k_tree.py --out /tmp/chars74k    # ~63,000 PNGs, a few minutes
    python search/run.py --space spaces/font.py --quick --gpus 0 --data-dir /tmp/chars74k --offline
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image
from rich.progress import track

from hpsearch.plumbing.cli import ArgumentParser
from hpsearch.trainables.data.font_folders import CHARS74K_ORDER, STYLES_PER_FONT
from hpsearch.trainables.data.font_render import (
    STYLES,
    Face,
    build_faces,
    default_font_dirs,
    discover_fonts,
    render_class,
)

FONTS = 254  # EnglishFnt's fonts
SIZE = 128  # EnglishFnt's image side


def families_with_every_style() -> list[list[Face]]:
    """The faces of every family that draws all 62 characters, in STYLES order, four per family."""
    faces = build_faces(discover_fonts(CHARS74K_ORDER, default_font_dirs()))
    by_family: dict[str, dict[str, Face]] = {}
    for face in faces:
        by_family.setdefault(face.font.family, {})[face.style] = face
    complete = [styles for _, styles in sorted(by_family.items()) if len(styles) == len(STYLES)]
    return [[styles[s] for s in STYLES] for styles in complete]


def write_sample(args: tuple[Path, int, list[list[Face]]]) -> int:
    """Every image of one class: 254 fonts x 4 styles."""
    root, sample, families = args
    char = CHARS74K_ORDER[sample - 1]
    folder = root / "English" / "Fnt" / f"Sample{sample:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    for font in range(FONTS):
        faces = families[font % len(families)]
        # One image per face, jittered by (font, character): a family's later rounds differ a little.
        images = render_class(char, faces, seed=font, count=STYLES_PER_FONT)
        for style, glyph in enumerate(images):
            index = STYLES_PER_FONT * font + style + 1
            page = Image.fromarray(255 - glyph).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
            page.save(folder / f"img{sample:03d}-{index:05d}.png", optimize=False)
    return sample


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(__doc__)
    parser.add_argument("--out", type=Path, required=True, help="the data dir to write English/Fnt under")
    parser.add_argument("--workers", type=int, default=2, help="processes drawing classes in parallel")
    args = parser.parse_args(argv)
    if (args.out / "English" / "Fnt").exists():
        print(f"error: {args.out / 'English' / 'Fnt'} exists; give an empty --out", file=sys.stderr)
        return 2
    families = families_with_every_style()
    if not families:
        print("error: no font on this machine draws all 62 characters", file=sys.stderr)
        return 2
    print(f"{len(families)} families with all four styles; {FONTS} fonts cycle over them")
    jobs = [(args.out, sample, families) for sample in range(1, len(CHARS74K_ORDER) + 1)]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for _ in track(pool.map(write_sample, jobs), total=len(jobs), description="classes"):
            pass
    n = sum(1 for _ in (args.out / "English" / "Fnt").rglob("*.png"))
    print(f"wrote {n} images ({len(jobs) * FONTS * STYLES_PER_FONT} expected) under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
