"""The MLP of the paper's MNIST experiments (section 4.1): 784-512-256, ReLU, dropout."""

from __future__ import annotations

import math
from typing import Sequence

from torch import nn

from .base import ContinualModel


def _init_linear(layer: nn.Linear, init: str) -> None:
    if init == "normal":  # section 4.1: MLP weights drawn from N(0, 0.1^2)
        nn.init.normal_(layer.weight, mean=0.0, std=0.1)
        nn.init.zeros_(layer.bias)
    elif init != "torch":  # "torch": PyTorch's default (Kaiming-uniform) initialisation
        raise ValueError(f"unknown init {init!r}")


def mlp(
    input_shape: Sequence[int],
    head_sizes: Sequence[int],
    hidden: Sequence[int] = (512, 256),
    dropout: float = 0.2,
    init: str = "normal",
) -> ContinualModel:
    """An MLP trunk (Linear-ReLU-Dropout per hidden layer) with one linear head per task."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = int(math.prod(input_shape))
    for size in hidden:
        linear = nn.Linear(width, int(size))
        _init_linear(linear, init)
        layers += [linear, nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(size)
    model = ContinualModel(nn.Sequential(*layers), width, head_sizes)
    for head in model.heads:
        _init_linear(head, init)
    return model
