"""The MLP of the paper's MNIST experiments (section 4.1): 784-512-256, ReLU, dropout."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

from torch import nn

from ..memory import check_memory
from .base import ContinualModel

# How the hidden layers are followed by dropout: after every one (this project's default) or
# after the last only (the authors' split-MNIST scripts: dropout on h2, before the output layer).
DROPOUT_LAYERS = ("all", "last")


def _init_linear(layer: nn.Linear, init: str) -> None:
    if init == "normal":  # section 4.1: MLP weights drawn from N(0, 0.1^2)
        nn.init.normal_(layer.weight, mean=0.0, std=0.1)
        nn.init.zeros_(layer.bias)
    elif init == "truncated_normal":  # the authors' code: tf.truncated_normal(stddev=0.1), biases 0.1
        # TensorFlow's truncated normal redraws values beyond two standard deviations
        nn.init.trunc_normal_(layer.weight, mean=0.0, std=0.1, a=-0.2, b=0.2)
        nn.init.constant_(layer.bias, 0.1)
    elif init != "torch":  # "torch": PyTorch's default (Kaiming-uniform) initialisation
        raise ValueError(f"unknown init {init!r}")


def mlp(
    input_shape: Sequence[int],
    head_sizes: Sequence[int],
    hidden: Sequence[int] = (512, 256),
    dropout: float = 0.2,
    init: str = "normal",
    dropout_layers: str = "all",
) -> ContinualModel:
    """An MLP trunk (Linear-ReLU per hidden layer, each followed by Dropout, or only the last one
    with ``dropout_layers="last"``) with one linear head per task."""
    if dropout_layers not in DROPOUT_LAYERS:
        raise ValueError(f"dropout_layers={dropout_layers!r}; choose one of: {', '.join(DROPOUT_LAYERS)}")
    widths = [int(math.prod(input_shape)), *map(int, hidden)]
    n_parameters = sum((a + 1) * b for a, b in zip(widths, widths[1:])) + sum((widths[-1] + 1) * n for n in head_sizes)
    # weights, gradients, and a method's importances and anchors: about four copies of float32
    check_memory(16 * n_parameters, f"an MLP of {n_parameters:,} parameters (hidden {list(hidden)})",
                 "choose smaller hidden widths")
    layers: list[nn.Module] = [nn.Flatten()]
    width = int(math.prod(input_shape))
    for i, size in enumerate(hidden):
        linear = nn.Linear(width, int(size))
        _init_linear(linear, init)
        layers += [linear, nn.ReLU()]
        if dropout > 0 and (dropout_layers == "all" or i == len(hidden) - 1):
            layers.append(nn.Dropout(dropout))
        width = int(size)
    model = ContinualModel(nn.Sequential(*layers), width, head_sizes)
    for head in model.heads:
        _init_linear(cast(nn.Linear, head), init)
    return model
