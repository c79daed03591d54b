"""Model families by name: each is a plain ``nn.Module`` builder plus its knobs' defaults.

A family's defaults are the one source of its knobs: the config resolver accepts exactly
these keys for that family, and the seed architecture is what the defaults build.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

ModelBuilder = Callable[..., nn.Module]  # (num_classes, input_shape, **knobs) -> nn.Module


@dataclass(frozen=True)
class ModelFamily:
    name: str
    build: ModelBuilder
    defaults: dict[str, Any]


MODELS: dict[str, ModelFamily] = {}


def register_model(name: str, **defaults: Any) -> Callable[[ModelBuilder], ModelBuilder]:
    def add(build: ModelBuilder) -> ModelBuilder:
        if name in MODELS:
            raise ValueError(f"model family {name!r} is registered twice")
        MODELS[name] = ModelFamily(name, build, dict(defaults))
        return build

    return add


def build_model(family: str, num_classes: int, input_shape: tuple[int, int, int], **knobs: Any) -> nn.Module:
    return MODELS[family].build(num_classes, input_shape, **knobs)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
