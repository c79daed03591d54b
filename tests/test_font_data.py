"""The `font` dataset: rendered from real fonts, or read from an ImageFolder or Chars74K tree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw

from trainables.data.font import FONT_CLASSES, load_font, resolve_source, validate_classes
from trainables.data.font_folders import load_chars74k, load_imagefolder, split_counts
from trainables.data.font_render import (
    STYLES,
    FontFile,
    build_faces,
    default_font_dirs,
    discover_fonts,
    render_class,
    render_splits,
)
from trainables.data.registry import DATASETS
from trainables.errors import UsageError

MPL_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
SMALL = "0Aa"  # a digit, an upper- and a lower-case letter: labels 0, 1, 2


@pytest.fixture(scope="module")
def faces():
    return build_faces(discover_fonts(FONT_CLASSES, default_font_dirs()))


def _renamed_font(directory: Path, family: str) -> Path:
    """A copy of DejaVu Sans under a new family name: new bytes, so not deduplicated away."""
    font = TTFont(MPL_FONTS / "DejaVuSans.ttf")
    for record in font["name"].names:
        if record.nameID in (1, 16):
            record.string = family
    directory.mkdir(parents=True, exist_ok=True)
    font.save(directory / "MyRenamedFont.ttf")
    return directory / "MyRenamedFont.ttf"


def _covers(path: str, classes: str) -> bool:
    cmap = TTFont(path, lazy=True).getBestCmap()
    return all(ord(c) in cmap for c in classes)


def test_font_is_registered_with_the_seed_label_table():
    assert DATASETS["font"] is load_font
    assert len(FONT_CLASSES) == 52 == len(set(FONT_CLASSES))
    # The seed's table: no upper-case 'O'; 'A' is 10, 'a' is 35.
    assert "O" not in FONT_CLASSES and FONT_CLASSES.index("A") == 10 and FONT_CLASSES.index("a") == 35


def test_render_splits_is_balanced_with_right_shapes_and_labels(faces):
    splits = render_splits(SMALL, faces, seed=0, train=4, val=2, test=3)
    assert splits.classes == list(SMALL)
    for name, per_class in (("train", 4), ("val", 2), ("test", 3)):
        split = getattr(splits, name)
        assert split.x.dtype == torch.uint8 and split.x.shape == (3 * per_class, 1, 90, 90)
        assert split.y.tolist() == [0] * per_class + [1] * per_class + [2] * per_class
    # Glyph 255 on background 0: the corners are dark, and every image has ink.
    assert splits.train.x[:, 0, 0, 0].max() == 0
    assert (splits.train.x.flatten(1).max(dim=1).values > 200).all()


def test_render_splits_is_deterministic_per_seed_and_worker_count(faces):
    a = render_splits(SMALL, faces, seed=3, train=3, val=1, test=1)
    b = render_splits(SMALL, faces, seed=3, train=3, val=1, test=1, workers=2)
    c = render_splits(SMALL, faces, seed=4, train=3, val=1, test=1)
    assert a.digest() == b.digest()
    assert a.digest() != c.digest()


def test_render_class_does_not_depend_on_the_other_classes(faces):
    # 'A' is label 1 in "0A" and label 0 in "A"; its images must be the same bytes.
    with_digit = render_splits("0A", faces, seed=0, train=3, val=1, test=1)
    alone = render_class("A", faces, 0, 5)
    assert torch.equal(with_digit.train.x[3:, 0], torch.from_numpy(alone[:3]))


def test_discover_fonts_keeps_only_fonts_that_draw_every_class(faces):
    fonts = discover_fonts(FONT_CLASSES, [MPL_FONTS])
    names = {Path(f.path).name for f in fonts}
    assert all(_covers(f.path, FONT_CLASSES) for f in fonts)
    # Symbol fonts: no letters at all, letters mapped to symbols, or one glyph for everything.
    for dropped in ("cmsy10.ttf", "cmex10.ttf", "STIXSizOneSymReg.ttf", "LastResortHE-Regular.ttf"):
        assert dropped not in names
    assert {"DejaVuSans.ttf", "cmr10.ttf", "STIXGeneral.ttf"} <= names
    order = [(f.family, STYLES.index(f.style), f.sha256) for f in fonts]
    assert order == sorted(order)


def test_discover_fonts_picks_up_fonts_dir_and_drops_identical_copies(tmp_path):
    _renamed_font(tmp_path, "Test Sans")
    shutil.copy(MPL_FONTS / "DejaVuSans-Bold.ttf", tmp_path / "IdenticalCopy.ttf")
    fonts = discover_fonts(SMALL, [MPL_FONTS, tmp_path])
    assert [f.family for f in fonts if f.path.startswith(str(tmp_path.resolve()))] == ["Test Sans"]
    digests = [f.sha256 for f in fonts]
    assert len(digests) == len(set(digests))


def test_build_faces_has_four_styles_real_or_synthesised(faces):
    by_family = {}
    for face in faces:
        by_family.setdefault(face.font.family, {})[face.style] = face
    assert all(set(styles) == set(STYLES) for styles in by_family.values())
    # DejaVu Sans ships all four files; cmr10 ships one, so three of its styles are drawn.
    assert not any(f.synth_bold or f.synth_italic for f in by_family["DejaVu Sans"].values())
    cmr = by_family["cmr10"]
    assert cmr["bold"].synth_bold and not cmr["bold"].synth_italic
    assert cmr["italic"].synth_italic and not cmr["italic"].synth_bold
    assert cmr["bold-italic"].synth_bold and cmr["bold-italic"].synth_italic
    assert len({f.font.path for f in cmr.values()}) == 1


def test_build_faces_skips_styles_an_italic_only_family_cannot_make():
    italic = FontFile(str(MPL_FONTS / "DejaVuSans-Oblique.ttf"), "Only Italic", False, True, "x", 1.0, "Aa")
    faces = build_faces([italic])
    # An upright face cannot be made from a slanted one; bold-italic can (a stroke).
    assert [(f.style, f.synth_bold, f.synth_italic) for f in faces] == [
        ("italic", False, False),
        ("bold-italic", True, False),
    ]


def test_load_font_generates_and_writes_manifest(tmp_path, capsys):
    _renamed_font(tmp_path / "myfonts", "Test Sans")
    splits = load_font(
        tmp_path,
        work_dir=tmp_path / "work",
        download=False,
        seed=5,
        classes=SMALL,
        fonts_dir=str(tmp_path / "myfonts"),
        train=2,
        val=1,
        test=1,
    )
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 3, 3)
    manifest = json.loads((tmp_path / "work" / "font-generated" / "manifest-5.json").read_text())
    assert manifest["options"]["classes"] == SMALL and manifest["digest"] == splits.digest()
    assert all(_covers(face["path"], SMALL) for face in manifest["faces"])
    assert "Test Sans" in {face["family"] for face in manifest["faces"]}
    assert "faces" in capsys.readouterr().out


def _glyph_png(path: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    """A black rectangle 'glyph' on white, as a scanner or Chars74K would save it."""
    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).rectangle(box, fill=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def test_load_imagefolder_maps_class_folders_and_resizes(tmp_path):
    for split in ("train", "val", "test"):
        for char in "0Aa":
            _glyph_png(tmp_path / split / char / "x.png", (60, 40), (20, 10, 40, 30))
    with pytest.warns(UserWarning, match="no images for classes"):
        splits = load_imagefolder(tmp_path, FONT_CLASSES)
    assert splits.train.x.shape == (3, 1, 90, 90)
    assert splits.train.y.tolist() == [0, 10, 35]  # '0', 'A', 'a' in the seed's table
    image = splits.test.x[0, 0]
    assert image[0, 0] == 0 and image[45, 45] == 255  # inverted: glyph bright, page dark


def test_load_imagefolder_rejects_unknown_class_and_missing_split(tmp_path):
    for split in ("train", "val", "test"):
        _glyph_png(tmp_path / split / "A" / "x.png", (32, 32), (8, 8, 24, 24))
    _glyph_png(tmp_path / "train" / "O" / "x.png", (32, 32), (8, 8, 24, 24))  # 'O' is not a seed class
    with pytest.raises(UsageError, match="not one of the classes"):
        load_imagefolder(tmp_path, FONT_CLASSES)
    shutil.rmtree(tmp_path / "train" / "O")
    shutil.rmtree(tmp_path / "test")
    with pytest.raises(UsageError, match="test is missing"):
        load_imagefolder(tmp_path, "A")


def _chars74k_tree(root: Path, samples: tuple[int, ...], per_sample: int) -> None:
    for sample in samples:
        for i in range(1, per_sample + 1):
            # A different box per image, so which image lands in which split shows in the digest.
            path = root / "English" / "Fnt" / f"Sample{sample:03d}" / f"img{sample:03d}-{i:05d}.png"
            _glyph_png(path, (128, 128), (30 + i, 30, 90, 100))


def test_load_chars74k_maps_samples_splits_per_class_and_inverts(tmp_path):
    _chars74k_tree(tmp_path, (1, 11, 25, 37), per_sample=8)  # '0', 'A', 'O' (not a class), 'a'
    fnt = tmp_path / "English" / "Fnt"
    fractions = (150 / 1016, 150 / 1016)
    with pytest.warns(UserWarning):
        splits = load_chars74k(fnt, FONT_CLASSES, seed=0, fractions=fractions)
    assert split_counts(8, fractions) == (6, 1, 1)
    assert splits.train.y.tolist() == [0] * 6 + [10] * 6 + [35] * 6
    assert splits.val.y.tolist() == splits.test.y.tolist() == [0, 10, 35]
    assert splits.train.x.shape == (18, 1, 90, 90)
    assert splits.train.x[0, 0, 0, 0] == 0 and splits.train.x[0, 0, 45, 45] == 255
    with pytest.warns(UserWarning):
        other = load_chars74k(fnt, FONT_CLASSES, seed=1, fractions=fractions)
    assert other.digest() != splits.digest()  # the seed chooses which images are held out


def test_split_counts_reproduce_the_seed_split():
    assert split_counts(1016, (150 / 1016, 150 / 1016)) == (716, 150, 150)


def test_load_font_auto_picks_imagefolder_then_chars74k_then_generate(tmp_path):
    assert resolve_source(tmp_path, "auto") == "generate"
    _chars74k_tree(tmp_path, (11,), per_sample=4)
    assert resolve_source(tmp_path, "auto") == "chars74k"
    splits = load_font(tmp_path, work_dir=tmp_path / "work", download=False, seed=0, classes="A")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (2, 1, 1)
    for split in ("train", "val", "test"):
        _glyph_png(tmp_path / "font" / split / "A" / "x.png", (32, 32), (8, 8, 24, 24))
    assert resolve_source(tmp_path, "auto") == "imagefolder"
    assert (
        len(load_font(tmp_path, work_dir=tmp_path / "work", download=False, seed=0, classes="A").train) == 1
    )
    assert resolve_source(tmp_path, "generate") == "generate"


def test_load_font_rejects_bad_source_and_classes(tmp_path):
    with pytest.raises(UsageError, match="choose one of auto, generate, imagefolder, chars74k"):
        load_font(tmp_path, work_dir=tmp_path / "work", download=False, seed=0, source="emnist")
    with pytest.raises(UsageError, match="unique"):
        validate_classes("AAb")
    with pytest.raises(UsageError, match="train"):
        load_font(tmp_path, work_dir=tmp_path / "work", download=False, seed=0, train=0)


@pytest.mark.slow
def test_load_font_generates_the_seed_sized_set(tmp_path):
    splits = load_font(tmp_path, work_dir=tmp_path / "work", download=False, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (37_232, 7_800, 7_800)
    assert torch.equal(torch.bincount(splits.val.y), torch.full((52,), 150))
    assert np.unique(splits.train.x[:, 0, 0, 0].numpy()).tolist() == [0]
