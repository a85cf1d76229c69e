"""The CNNs of the image benchmarks: VGG-9 with batch norm (visual sequence, CIFAR-100) and a
ResNet-18 trunk with the paper's per-task 2048-unit heads (Caltech-101).

Batch norm across tasks: BN's affine weights are trunk parameters like any other (shared,
regularised); its running statistics are buffers that each task's training overwrites. The
model keeps a copy of them per task (:meth:`ContinualModel.remember_norm_stats`, called by
the engine after each task) and evaluates task i with task i's statistics, so a later task
never silently changes how an earlier one is normalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import ContinualModel, register_chain_containers


class RandomHorizontalFlip(nn.Module):
    """Flips each image left-right with probability ``p`` in training mode; identity in eval.

    Augmentation lives in the model so the data stay tensors on the device (no DataLoader),
    importance passes (eval mode) see unflipped images, and the flips draw from torch's RNG,
    which checkpoints save.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return x
        flip = torch.rand(x.shape[0], device=x.device) < self.p
        return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _xavier(module: nn.Module) -> None:
    """Section 4.2.2: Xavier initialisation of every conv and linear layer, zero biases."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def image_shape(input_shape: Sequence[int], model: str) -> tuple[int, int, int]:
    """(channels, height, width), or a ValueError naming the fix for flat inputs."""
    if len(input_shape) != 3:
        raise ValueError(f"{model} needs image inputs (channels, height, width), and this benchmark's inputs have "
                         f"shape {tuple(input_shape)}; use --model mlp (or a benchmark of images)")
    channels, height, width = (int(v) for v in input_shape)
    return channels, height, width


def vgg9(
    input_shape: Sequence[int],
    head_sizes: Sequence[int],
    channels: Sequence[int] = (64, 128, 256),
    fc: int = 512,
    dropout: float = 0.0,
) -> ContinualModel:
    """VGG-9: three blocks of two 3x3 conv-BN-ReLU layers and a max-pool, two FC layers, and
    one linear head per task (6 conv + 2 FC + head = 9 layers)."""
    in_channels, height, width = image_shape(input_shape, "vgg9")
    layers: list[nn.Module] = []
    for out_channels in channels:
        for _ in range(2):
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                       nn.BatchNorm2d(out_channels), nn.ReLU()]
            in_channels = out_channels
        layers.append(nn.MaxPool2d(2))
        height, width = height // 2, width // 2
    layers += [nn.Flatten(), nn.Linear(in_channels * height * width, fc), nn.ReLU()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(fc, fc), nn.ReLU()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    model = ContinualModel(nn.Sequential(*layers), fc, head_sizes)
    _xavier(model)
    return model


def resnet18(
    input_shape: Sequence[int],
    head_sizes: Sequence[int],
    pretrained: bool = False,
    flip: bool = True,
    head_hidden: int = 2048,
    head_dropout: float = 0.5,
) -> ContinualModel:
    """torchvision's ResNet-18 as the trunk (512 features; ImageNet weights only if asked,
    which downloads them), and per task a 2048-unit FC + ReLU + dropout 0.5 + classifier
    (supplement, Caltech-101)."""
    from torchvision.models import ResNet18_Weights
    from torchvision.models import resnet18 as torchvision_resnet18
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    register_chain_containers(ResNet, BasicBlock, Bottleneck)

    image_shape(input_shape, "resnet18")
    network = torchvision_resnet18(weights=ResNet18_Weights.DEFAULT if pretrained else None)
    network.fc = nn.Identity()
    trunk = nn.Sequential(RandomHorizontalFlip(0.5 if flip else 0.0), network)

    def head(n_out: int) -> nn.Module:
        return nn.Sequential(nn.Linear(512, head_hidden), nn.ReLU(), nn.Dropout(head_dropout),
                             nn.Linear(head_hidden, n_out))

    return ContinualModel(trunk, 512, head_sizes, head_factory=head)
