"""Classify pictures with a model a search kept: its export, or its MLflow model.

    python search/predict.py exports/<search>/best.yaml digit.png     # an export (search/export.py)
    python search/predict.py exports/<search> drawings/ --top 3       # its best.yaml; every image in a folder
    python search/predict.py runs:/<trial run id>/model digit.png     # a trial's MLflow model
    python search/predict.py models:/<model id> digit.png --tracking-uri sqlite:///mlflow.db

Prints a line per image: its --top classes, each with its probability.

A picture is first made to look like the task's training images:
  - Transparency is laid over a background that contrasts with what is drawn, so strokes on a
    transparent canvas stay visible whatever their colour.
  - Grayscale tasks (mnist, emnist, font) train on light ink (255) on a dark background (0):
    the picture goes to gray, and is inverted if its border is light (dark ink on paper); its
    levels are stretched so that the background is 0 and the brightest ink 255. Then, with
    --fit ink (the default), it is cropped to its ink, scaled so that the ink's longer side is
    what the training images give it (mnist: 20 of 28 px, centred on its centre of mass, as
    MNIST was made; emnist: 26 of 28; font: 46 of 90, centred on its box) and laid on a dark
    square of the input size. --fit whole instead pads the whole picture to a square and
    resizes it: for pictures already framed like the training images (a test image saved as
    PNG, say). Any size, RGB, gray, palette or with alpha.
  - Colour tasks (cifar10, cifar100): the picture's central square, resized to 32x32.
--save-inputs DIR writes what the model was given, as PNG, to check the conversion.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from hpsearch.plumbing.cli import ArgumentParser, run_main
from hpsearch.plumbing.errors import UsageError
from hpsearch.search.exported import read_exported
from hpsearch.trainables.tasks import Task, get_task

# How each grayscale task's training images frame a character: the ink's longer side in pixels,
# and what sits at the centre (MNIST: the centre of mass; EMNIST and the rendered fonts: the
# ink's box). Measured for the font: the median glyph of DejaVu Sans as font_render sizes it.
FRAMING: dict[str, tuple[int, str]] = {
    "mnist": (20, "mass"),
    "emnist": (26, "box"),
    "emnist_digit_letter": (26, "box"),
    "font": (46, "box"),
}
INK = 0.25  # of the stretched range: brighter is ink, when cropping to it
MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/", "file:", "s3://", "gs://", "http")


@dataclass
class Model:
    predict: Callable[[torch.Tensor], torch.Tensor]  # float [N, C, H, W] in 0..1 -> probabilities
    task: Task
    classes: list[str]


def load_model(spec: str, tracking_uri: str | None = None) -> Model:
    """An export (its YAML file, or a folder with best.yaml) or an MLflow model URI."""
    if spec.startswith(MLFLOW_SCHEMES):
        return _load_mlflow_model(spec, tracking_uri)
    path = Path(spec)
    if path.is_dir():
        path = path / "best.yaml"
    exported = read_exported(path)  # a missing or broken file is a UsageError
    classifier = exported.classifier(path.parent)
    task = get_task(exported.task)
    return Model(classifier, task, _class_names(exported.classes, task))


def _load_mlflow_model(uri: str, tracking_uri: str | None) -> Model:
    import mlflow.artifacts
    import mlflow.pytorch
    from mlflow.models import Model as MlflowModel

    from hpsearch.reports.runs import open_client
    from hpsearch.search.tracking import global_tracking_uri  # (imports Ray: only for an MLflow model)

    open_client(tracking_uri)  # a missing local store or a dead server: one line, and no new store
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with global_tracking_uri(tracking_uri):
                local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
            metadata = MlflowModel.load(local).metadata or {}
        except Exception as e:  # no such run or model, no store there: MLflow says which
            raise UsageError(f"cannot load the MLflow model {uri}: {_first_line(e)}") from e
        if "task" not in metadata:
            raise UsageError(f"{uri} is not a model kept by a search (its MLmodel names no task)")
        task = get_task(metadata["task"])
        module = mlflow.pytorch.load_model(local)
    return Model(module, task, _class_names(metadata.get("classes", []), task))


def _class_names(classes: list[str], task: Task) -> list[str]:
    return (
        [str(c) for c in classes]
        if len(classes) == task.num_classes
        else [str(k) for k in range(task.num_classes)]
    )


# Pictures to inputs


def to_input(image: Image.Image, task: Task, fit: str = "ink") -> torch.Tensor:
    """``image`` as the task's training images look: uint8 ``[C, H, W]``."""
    channels, height, width = task.input_shape
    image = _flatten_alpha(image)
    if channels == 3:
        rgb = ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
        return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).contiguous()
    gray = _light_on_dark(_gray(image))
    if fit == "ink" and task.name in FRAMING:
        side, centre = FRAMING[task.name]
        framed = _frame_ink(gray, height, width, side, centre)
    else:
        framed = _resize(_pad_square(gray), width, height)
    return torch.from_numpy(np.clip(np.rint(framed), 0, 255).astype(np.uint8))[None]


def _flatten_alpha(image: Image.Image) -> Image.Image:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode not in ("RGBA", "LA", "PA"):
        return image
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba, dtype=np.float64)[..., 3] / 255
    if alpha.min() == 1:
        return rgba.convert("RGB")
    # What is opaque is the drawing: lay it over a background of the other brightness.
    lum = np.asarray(rgba.convert("L"), dtype=np.float64)
    drawn = (lum * alpha).sum() / max(alpha.sum(), 1e-9)
    shade = 0 if drawn > 127 else 255
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (shade, shade, shade, 255)), rgba).convert(
        "RGB"
    )


def _gray(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit or float: L would clip them
        values = np.asarray(image, dtype=np.float64)
        return values / max(values.max(), 1e-9) * 255
    return np.asarray(image.convert("L"), dtype=np.float64)


def _light_on_dark(gray: np.ndarray) -> np.ndarray:
    """Light ink on a dark background, stretched from 0 (the background) to 255 (the brightest ink)."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:
        gray = 255 - gray
    background = np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]))
    top = gray.max()
    if top - background < 8:
        raise UsageError("no drawing found: the picture is one flat shade")
    return np.clip((gray - background) / (top - background), 0, 1) * 255


def _frame_ink(gray: np.ndarray, height: int, width: int, side: int, centre: str) -> np.ndarray:
    rows, cols = np.nonzero(gray > INK * 255)
    ink = gray[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = side / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    ink = _resize(ink, *size)
    ink = ink / max(ink.max(), 1e-9) * 255  # thin strokes scaled down stay as bright as drawn
    if centre == "mass":
        total = ink.sum()
        cy = (ink.sum(1) * np.arange(ink.shape[0])).sum() / total
        cx = (ink.sum(0) * np.arange(ink.shape[1])).sum() / total
        top, left = round((height - 1) / 2 - cy), round((width - 1) / 2 - cx)
    else:
        top, left = (height - ink.shape[0]) // 2, (width - ink.shape[1]) // 2
    canvas = np.zeros((height, width))
    # Paste, clipped to the canvas (a lopsided drawing centred on its mass may overhang).
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + ink.shape[0], height), min(left + ink.shape[1], width)
    canvas[y0:y1, x0:x1] = ink[y0 - top : y1 - top, x0 - left : x1 - left]
    return canvas


def _pad_square(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    side = max(h, w)
    square = np.zeros((side, side))
    square[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = gray
    return square


def _resize(gray: np.ndarray, width: int, height: int) -> np.ndarray:
    image = Image.fromarray(gray.astype(np.float32))  # mode F
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float64)


# The command


def image_files(paths: list[Path]) -> list[Path]:
    """The files named, with a folder standing for the images in it (by name)."""
    suffixes = {s for s, f in Image.registered_extensions().items() if f in Image.OPEN}
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                raise UsageError(f"no images in {path}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"image {path} not found")
    return files


def read_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.copy()
    except (UnidentifiedImageError, OSError) as e:
        raise UsageError(f"{path} is not an image this can read ({_first_line(e)})") from e


def predict(model: Model, images: list[Image.Image], fit: str = "ink") -> torch.Tensor:
    """Probabilities ``[N, classes]`` for ``images``."""
    x = torch.stack([to_input(image, model.task, fit) for image in images])
    with torch.no_grad():
        return model.predict(x.float().div(255)).float()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(__doc__)
    p.add_argument(
        "model", help="an export's YAML file or folder, or an MLflow model URI (runs:/..., models:/...)"
    )
    p.add_argument("images", nargs="+", type=Path, help="image files, or folders of them")
    p.add_argument("--top", type=int, default=3, help="how many classes to print per image (default 3)")
    p.add_argument(
        "--fit",
        choices=("ink", "whole"),
        default="ink",
        help="grayscale tasks: crop to the ink and frame it as in training (default), or resize it whole",
    )
    p.add_argument("--tracking-uri", help="MLflow store of an MLflow model URI (default: MLflow's own)")
    p.add_argument(
        "--save-inputs", type=Path, metavar="DIR", help="write the model's inputs as PNG files here"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.top < 1:
        raise UsageError(f"--top must be at least 1, got {args.top}")
    files = image_files(args.images)  # a missing image fails before the model loads
    images = [read_image(path) for path in files]
    model = load_model(args.model, args.tracking_uri)
    probs = predict(model, images, args.fit)
    top = probs.topk(min(args.top, probs.shape[1]), dim=1)
    for path, values, indices in zip(files, top.values.tolist(), top.indices.tolist(), strict=True):
        ranked = ", ".join(f"{model.classes[i]} {p:.3f}" for p, i in zip(values, indices, strict=True))
        print(f"{path}: {ranked}")
    if args.save_inputs:
        args.save_inputs.mkdir(parents=True, exist_ok=True)
        for path, image in zip(files, images, strict=True):
            x = to_input(image, model.task, args.fit)
            Image.fromarray(x.permute(1, 2, 0).squeeze(-1).numpy()).save(
                args.save_inputs / f"{path.stem}.png"
            )
    return 0


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


if __name__ == "__main__":
    run_main(main)
