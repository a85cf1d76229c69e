"""Registry of networks: name -> builder(input_shape, head_sizes, **options) -> ContinualModel.

A new network (the CNNs of the image benchmarks) is one entry here; the engine only needs
a :class:`ContinualModel`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from .base import ContinualModel
from .cnn import resnet18, vgg9
from .mlp import mlp
from .vae import vae

MODELS: dict[str, Callable[..., ContinualModel]] = {"mlp": mlp, "vgg9": vgg9, "resnet18": resnet18, "vae": vae}


def build_model(
    name: str, input_shape: Sequence[int], head_sizes: Sequence[int], options: Mapping[str, Any] | None = None
) -> ContinualModel:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    builder = MODELS[name]
    valid = [p for p in inspect.signature(builder).parameters if p not in ("input_shape", "head_sizes")]
    unknown = sorted(set(options or {}) - set(valid))
    if unknown:
        raise ConfigError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
                          f"valid options: {', '.join(valid)}")
    try:
        return builder(input_shape, head_sizes, **dict(options or {}))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"model {name!r}: {error}") from None


__all__ = ["MODELS", "ContinualModel", "build_model"]
