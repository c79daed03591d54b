"""The `font` dataset: rendered from real fonts, or read from an ImageFolder or Chars74K tree."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.data import font_bundle
from hpsearch.trainables.data.font import FONT_CLASSES, load_font, validate_classes
from hpsearch.trainables.data.font_bundle import OPEN_LICENSES, PACKAGES, bundle_families
from hpsearch.trainables.data.font_folders import load_imagefolder
from hpsearch.trainables.data.font_render import (
    STYLES,
    FontFile,
    assign_splits,
    build_faces,
    design_groups,
    design_name,
    discover_fonts,
    face_schedule,
    render_class,
    render_splits,
    split_fonts,
    split_sizes,
)
from hpsearch.trainables.data.font_split import MIN_EVAL_FAMILIES, check_families
from hpsearch.trainables.data.registry import DATASETS
from hpsearch.trainables.data.splits import Split, Splits

REPO = Path(__file__).resolve().parent.parent

MPL_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
SMALL = "0Aa"  # a digit, an upper- and a lower-case letter: labels 0, 1, 2


@pytest.fixture(scope="module")
def faces():
    # matplotlib's fonts only: what every machine has, so the tests do not depend on what else is installed.
    return build_faces(discover_fonts(FONT_CLASSES, [MPL_FONTS]))


def _by_family(faces, *families):
    return [f for f in faces if f.font.family in families]


@pytest.fixture(scope="module")
def split_faces(faces):
    return {
        "train": _by_family(faces, "DejaVu Sans", "STIXGeneral"),
        "val": _by_family(faces, "DejaVu Serif"),
        "test": _by_family(faces, "cmtt10"),
    }


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


def test_render_splits_is_balanced_with_right_shapes_and_labels(split_faces):
    splits = render_splits(SMALL, split_faces, seed=0, counts={"train": 4, "val": 2, "test": 3})
    assert splits.classes == list(SMALL)
    for name, per_class in (("train", 4), ("val", 2), ("test", 3)):
        split = getattr(splits, name)
        assert split.x.dtype == torch.uint8 and split.x.shape == (3 * per_class, 1, 90, 90)
        assert split.y.tolist() == [0] * per_class + [1] * per_class + [2] * per_class
    # Glyph 255 on background 0: the corners are dark, and every image has ink.
    assert splits.train.x[:, 0, 0, 0].max() == 0
    assert (splits.train.x.flatten(1).max(dim=1).values > 200).all()


def test_render_splits_is_deterministic_per_seed_and_worker_count(split_faces):
    counts = {"train": 3, "val": 1, "test": 1}
    a = render_splits(SMALL, split_faces, seed=3, counts=counts)
    b = render_splits(SMALL, split_faces, seed=3, counts=counts, workers=2)
    c = render_splits(SMALL, split_faces, seed=4, counts=counts)
    assert a.digest() == b.digest()
    assert a.digest() != c.digest()


def test_a_class_renders_the_same_in_any_class_list(split_faces):
    # 'A' is label 1 in "0A" and label 0 in "A"; its images must be the same bytes.
    counts = {"train": 3, "val": 1, "test": 1}
    with_digit = render_splits("0A", split_faces, seed=0, counts=counts)
    alone = render_splits("A", split_faces, seed=0, counts=counts)
    assert torch.equal(with_digit.train.x[3:], alone.train.x)
    # render_class draws sample i with face i: what the schedule hands it.
    faces = face_schedule(split_faces["train"], "A", 0, 3)
    assert torch.equal(alone.train.x[:, 0], torch.from_numpy(render_class("A", faces, 0, 3)))


def test_face_schedule_takes_design_groups_in_turn_and_classes_together_show_them_all(faces):
    families = sorted({f.font.family for f in faces})
    group_of = {f: f for f in families} | {"DejaVu Serif": "DejaVu Sans"}  # two families, one group
    groups = set(group_of.values())
    one_round = face_schedule(faces, "A", 0, len(groups), group_of=group_of)
    # One image per group before any group's second: a group of two families is no more frequent.
    assert sorted(group_of[f.font.family] for f in one_round) == sorted(groups)
    # Styles rotate: a round draws several styles, not every group's normal face.
    assert len({f.style for f in one_round}) > 1
    # Two images per class: each class starts elsewhere, so together they show every group.
    drawn = [f for c in FONT_CLASSES for f in face_schedule(faces, c, 0, 2, group_of=group_of)]
    shown = {group_of[f.font.family] for f in drawn}
    assert shown == groups
    assert face_schedule(faces, "A", 0, 5) == face_schedule(list(reversed(faces)), "A", 0, 5)  # order-free


def test_render_splits_counts_the_groups_its_images_show(split_faces):
    # train holds DejaVu Sans and STIXGeneral: one image of one class shows one of them, two show both.
    one = render_splits("A", split_faces, seed=0, counts={"train": 1, "val": 1, "test": 1})
    two_each = {"train": 2, "val": 1, "test": 1}
    two = render_splits("A", split_faces, seed=0, counts=two_each)
    assert one.families == {"train": 1, "val": 1, "test": 1}
    assert two.families == {"train": 2, "val": 1, "test": 1}
    merged = {"DejaVu Sans": "g", "STIXGeneral": "g"}  # one design group: counted once
    grouped = render_splits("A", split_faces, seed=0, counts=two_each, group_of=merged)
    assert grouped.families["train"] == 1


def test_render_splits_draws_each_split_from_its_own_faces_only(split_faces):
    counts = {"train": 4, "val": 4, "test": 4}
    splits = render_splits("A", split_faces, seed=0, counts=counts)
    # Same seed and stream, other faces: val's bytes change, train's do not.
    swapped = render_splits("A", {**split_faces, "val": split_faces["test"]}, seed=0, counts=counts)
    assert torch.equal(swapped.train.x, splits.train.x)
    assert not torch.equal(swapped.val.x, splits.val.x)
    # Two splits never reuse one jitter sequence: the same faces in train and val give other images.
    same = render_splits("A", {**split_faces, "val": split_faces["train"]}, seed=0, counts=counts)
    assert not torch.equal(same.val.x, same.train.x)


def test_render_splits_refuses_a_split_without_faces(split_faces):
    with pytest.raises(UsageError, match="no font faces for the val split"):
        render_splits("A", {**split_faces, "val": []}, seed=0, counts={"train": 1, "val": 1, "test": 1})


def test_discover_fonts_keeps_only_fonts_that_draw_every_class(faces):
    fonts = discover_fonts(FONT_CLASSES, [MPL_FONTS])
    names = {Path(f.path).name for f in fonts}
    assert all(_covers(f.path, FONT_CLASSES) for f in fonts)
    # Symbol fonts: no letters at all, letters mapped to symbols, or one glyph for everything.
    for dropped in ("cmsy10.ttf", "cmex10.ttf", "STIXSizOneSymReg.ttf", "LastResortHE-Regular.ttf"):
        assert dropped not in names
    assert {"DejaVuSans.ttf", "cmr10.ttf", "STIXGeneral.ttf"} <= names
    order = [(f.family, STYLES.index(f.style), f.weight, f.sha256) for f in fonts]
    assert order == sorted(order)


def test_discover_fonts_picks_up_fonts_dir_and_drops_identical_copies(tmp_path):
    _renamed_font(tmp_path, "Test Sans")
    shutil.copy(MPL_FONTS / "DejaVuSans-Bold.ttf", tmp_path / "IdenticalCopy.ttf")
    fonts = discover_fonts(SMALL, [MPL_FONTS, tmp_path])
    assert "Test Sans" in [f.family for f in fonts if f.path.startswith(str(tmp_path.resolve()))]
    digests = [f.sha256 for f in fonts]
    assert len(digests) == len(set(digests))
    # The copy and the original are one font: one DejaVu Sans bold, whichever path was read first.
    assert [f.style for f in fonts if f.family == "DejaVu Sans"].count("bold") == 1


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


def test_design_name_drops_cut_words_and_joins_computer_modern():
    def font(family, typographic=""):
        return FontFile("x.ttf", family, False, False, "x", 1.0, "Aa", typographic)

    assert design_name(font("DejaVu Sans Condensed")) == "DejaVu Sans"
    assert design_name(font("Roboto Condensed Light", "Roboto Condensed")) == "Roboto"
    assert design_name(font("Lato Semibold")) == "Lato"
    assert design_name(font("DejaVu Sans Mono")) == "DejaVu Sans Mono"  # a design of its own
    # cmb10 and cmti10 are cmr10's bold and italic; cmss10 and cmtt10 are other designs.
    assert {design_name(font(f)) for f in ("cmr10", "cmb10", "cmti10")} == {"cmr"}
    assert design_name(font("cmss10")) != design_name(font("cmtt10")) != "cmr"


def test_design_groups_merges_a_renamed_clone_and_keeps_designs_apart(tmp_path, faces):
    _renamed_font(tmp_path, "Zzz Renamed")  # DejaVu Sans's glyphs under a name no rule links to it
    clone = build_faces(discover_fonts(SMALL, [tmp_path]))
    groups = design_groups(_by_family(faces, "DejaVu Sans", "DejaVu Serif", "cmr10", "cmb10") + clone)
    assert groups["Zzz Renamed"] == groups["DejaVu Sans"] == "DejaVu Sans"  # measured likeness
    assert groups["cmb10"] == groups["cmr10"]  # by name
    assert len({groups["DejaVu Sans"], groups["DejaVu Serif"], groups["cmr10"]}) == 3


def test_split_sizes_follow_the_seed_split_with_one_group_at_least():
    assert split_sizes(13) == {"train": 9, "val": 2, "test": 2}
    assert split_sizes(254) == {"train": 179, "val": 38, "test": 37}  # 716:150:150 of 254 fonts
    assert split_sizes(3) == {"train": 1, "val": 1, "test": 1}
    with pytest.raises(UsageError, match="2 font group"):
        split_sizes(2)


def test_assign_splits_is_a_seeded_partition_independent_of_order():
    groups = [f"family {i}" for i in range(20)]
    a = assign_splits(groups, seed=0)
    assert sorted(sum(a.values(), [])) == sorted(groups)  # each group in exactly one split
    assert assign_splits(list(reversed(groups)), seed=0) == a
    assert assign_splits(groups, seed=1) != a
    # Adding a family moves few others: ranks are per family, not positions in a shuffled list.
    b = assign_splits([*groups, "family new"], seed=0)
    moved = [g for g in groups if not any(g in b[n] and g in a[n] for n in a)]
    assert len(moved) <= 2


def test_load_font_generates_splits_by_family_and_writes_manifest(tmp_path, capsys):
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
    parts = manifest["splits"]
    families = [set(parts[name]["families"]) for name in ("train", "val", "test")]
    assert all(families) and not (
        families[0] & families[1] or families[0] & families[2] or families[1] & families[2]
    )
    groups = [set(parts[name]["groups"]) for name in ("train", "val", "test")]
    assert sum(len(g) for g in groups) == len(set().union(*groups))
    # A family's every face (all styles) is in the split that lists the family.
    for face in manifest["faces"]:
        assert sum(face["family"] in f for f in families) == 1
    out = capsys.readouterr().out
    assert "train 6 (" in out and "design groups" in out
    assert len(manifest["bundle"]) == len(PACKAGES) and manifest["options"]["system_fonts"] is False


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


def test_load_imagefolder_counts_keep_a_subset_per_class_never_more(tmp_path):
    for split, n in (("train", 5), ("val", 3), ("test", 2)):
        for char in "0A":
            for i in range(n):
                _glyph_png(tmp_path / split / char / f"{i}.png", (32, 32), (4 + i, 8, 24, 24))
    counts = {"train": 2, "val": 9, "test": None}  # val asks for more than there is
    splits = load_imagefolder(tmp_path, "0A", counts=counts, seed=0)
    assert splits.train.y.tolist() == [0, 0, 1, 1]
    assert splits.val.y.tolist() == [0] * 3 + [1] * 3 and len(splits.test) == 4
    other = load_imagefolder(tmp_path, "0A", counts=counts, seed=1)
    again = load_imagefolder(tmp_path, "0A", counts=counts, seed=0)
    assert again.digest() == splits.digest()
    assert other.digest() != splits.digest()  # the seed chooses the subset


def test_load_font_rejects_bad_source_and_classes(tmp_path):
    with pytest.raises(UsageError, match="choose one of auto, generate, imagefolder, chars74k"):
        load_font(tmp_path, work_dir=tmp_path / "work", download=False, seed=0, source="emnist")
    with pytest.raises(UsageError, match="unique"):
        validate_classes("AAb")
    with pytest.raises(UsageError, match="train"):
        load_font(tmp_path, work_dir=tmp_path / "work", download=False, seed=0, train=0)



# The pinned font bundle: the default data, the same on every machine


def test_bundle_pins_are_the_pyproject_pins():
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(d.split("==") for d in deps if d.startswith(font_bundle.PREFIX))
    assert pins == {font_bundle.PREFIX + slug: version for slug, version in PACKAGES.items()}


def test_bundle_is_installed_as_pinned_with_open_licences():
    families, dropped = bundle_families()
    assert len(families) == len(PACKAGES) >= 100 and dropped == {}
    assert {f.license for f in families} <= set(OPEN_LICENSES)
    files = [p for f in families for p in f.files]
    assert all(f.files for f in families) and all(p.suffix in (".ttf", ".otf") and p.is_file() for p in files)


def test_bundle_refuses_a_missing_package_or_another_version():
    with pytest.raises(UsageError, match=r"fontpkg-abel 1\.3 \(pinned 0\.1\).*pip install -e \."):
        bundle_families({"abel": "0.1"})
    with pytest.raises(UsageError, match="fontpkg-no-such-family missing"):
        bundle_families({"no-such-family": "1.0"})
    assert [f.version for f in bundle_families({"acme": "1.2"})[0]] == ["1.2"]  # 1.2 is 1.002 (PEP 440)


def test_bundle_leaves_out_a_family_without_an_open_licence(monkeypatch):
    real = metadata.distribution

    class Relicensed:
        def __init__(self, dist, license):
            self.version, self.files, self.locate_file = dist.version, dist.files, dist.locate_file
            self.metadata = {"License-Expression": license} if license else {}

    licences = {"fontpkg-abel": "LicenseRef-Proprietary", "fontpkg-acme": None}
    monkeypatch.setattr(
        font_bundle.metadata,
        "distribution",
        lambda name: Relicensed(real(name), licences[name]) if name in licences else real(name),
    )
    families, dropped = bundle_families({slug: PACKAGES[slug] for slug in ("abel", "acme", "anton")})
    assert [f.package for f in families] == ["fontpkg-anton"]
    assert dropped == {
        "fontpkg-abel": "licence LicenseRef-Proprietary",
        "fontpkg-acme": "licence not declared",
    }


@pytest.fixture(scope="module")
def default_font_data(tmp_path_factory):
    """The default generated data, one image per class and split: its splits and manifest."""
    root = tmp_path_factory.mktemp("default_font")
    splits = load_font(root, work_dir=root / "work", download=False, seed=0, train=1, val=1, test=1)
    return splits, json.loads((root / "work" / "font-generated" / "manifest-0.json").read_text())


def test_default_font_data_is_the_bundle_alone_with_at_least_100_families(default_font_data):
    _, manifest = default_font_data
    bundle_dirs = {str(metadata.distribution(name).locate_file("")) for name in manifest["bundle"]}
    packages = {Path(face["path"]).parent.parent.name for face in manifest["faces"]}
    # Nothing from matplotlib or the machine's folders: every face is a file of a pinned package.
    assert all(any(face["path"].startswith(d) for d in bundle_dirs) for face in manifest["faces"])
    assert len(packages) == len(PACKAGES)
    groups = {name: part["groups"] for name, part in manifest["splits"].items()}
    assert sum(map(len, groups.values())) >= 100
    assert min(len(groups["val"]), len(groups["test"])) >= MIN_EVAL_FAMILIES


def test_default_font_split_is_the_same_twice_in_any_file_order(default_font_data):
    _, manifest = default_font_data
    families, _ = bundle_families()
    files = [path for family in families for path in family.files]
    again = split_fonts(FONT_CLASSES, seed=0, sources=list(reversed(files)))
    for name, part in manifest["splits"].items():
        assert again.groups[name] == part["groups"]
        assert again.families(name) == part["families"]


def _splits_with(families: dict[str, int]) -> Splits:
    one = Split(torch.zeros((1, 1, 2, 2), dtype=torch.uint8), torch.zeros(1, dtype=torch.int64))
    return Splits(one, one, one, ["a"], families=families)


def test_check_families_prints_the_counts_on_one_line(capsys):
    check_families(_splits_with({"train": 104, "val": 13, "test": 13}), allow_small_split=False)
    assert capsys.readouterr().err == "font data: 130 families -> train 104, val 13, test 13\n"
    check_families(_splits_with({}), allow_small_split=False)  # not split by font family: nothing to say
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "val, test, refused",
    [(1, 3, "val and test"), (4, 9, "val"), (9, 4, "test"), (MIN_EVAL_FAMILIES, MIN_EVAL_FAMILIES, None)],
)
def test_check_families_refuses_a_small_val_or_test_unless_allowed(capsys, val, test, refused):
    small = _splits_with({"train": 9, "val": val, "test": test})
    if refused is None:
        check_families(small, allow_small_split=False)
        assert f"val {val}, test {test}" in capsys.readouterr().err
        return
    with pytest.raises(UsageError) as err:
        check_families(small, allow_small_split=False)
    message = str(err.value)
    assert f"{refused} need at least {MIN_EVAL_FAMILIES}" in message and "--allow-small-split" in message
    assert "\n" not in message and capsys.readouterr().err == ""  # the error is the one line
    check_families(small, allow_small_split=True)
    said = f"font data: {9 + val + test} families -> train 9, val {val}, test {test}\n"
    assert capsys.readouterr().err == said


def test_load_font_system_fonts_must_be_a_bool(tmp_path):
    with pytest.raises(UsageError, match="system_fonts must be True or False"):
        load_font(tmp_path, work_dir=tmp_path / "w", download=False, seed=0, system_fonts="yes")


@pytest.mark.slow
def test_load_font_generates_the_seed_sized_set(tmp_path):
    splits = load_font(tmp_path, work_dir=tmp_path / "work", download=False, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (37_232, 7_800, 7_800)
    assert torch.equal(torch.bincount(splits.val.y), torch.full((52,), 150))
    assert np.unique(splits.train.x[:, 0, 0, 0].numpy()).tolist() == [0]
