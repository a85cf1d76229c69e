"""K independent copies of one network as a single batched network (issue 14's stacked runs).

Every weight gets a leading member dimension K, every matmul becomes a batched matmul and every
convolution a grouped one, so K small trainings cost about one launch sequence instead of K.
Members are mathematically independent: no operation mixes the member dimension, so member k's
outputs, gradients and updates depend on member k's parameters and data alone (a NaN in one
member stays there).

Two layouts. An MLP trunk (Flatten, Linear, ReLU, Dropout) works on (K, B, features) throughout.
A CNN trunk (Conv2d, BatchNorm2d, ReLU, pooling, torchvision's ResNet blocks) works on
(B, K·C, H, W): member k owns channels k·C..(k+1)·C, a convolution with ``groups = K`` applies
each member's filters to its own channels only, and batch norm's per-channel statistics are
each member's own batch statistics, so the layers that follow need no change; at the trunk's
Flatten (or a ResNet's pooled features) the activations turn into (K, B, features) for the
Linear layers and heads. Any other layer is refused with the reason (``stack_models`` raises), and
such runs train one configuration per trial. Module names are the unstacked model's
(``trunk.1.weight``), so member k's slice of every tensor is its own model's tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from ..errors import ConfigError
from .base import CHAIN_CONTAINERS, ContinualModel
from .cnn import RandomHorizontalFlip
from .vae import VAE


def stacked_parameters(layers: Sequence[nn.Module]) -> tuple[nn.Parameter, nn.Parameter | None]:
    """The members' ``weight`` and ``bias`` (None where the layers have none) stacked on a new
    leading member dimension: member k's slice is its own layer's tensor."""
    weight = nn.Parameter(torch.stack([cast(torch.Tensor, layer.weight).detach() for layer in layers]))
    if getattr(layers[0], "bias", None) is None:
        return weight, None
    return weight, nn.Parameter(torch.stack([cast(torch.Tensor, layer.bias).detach() for layer in layers]))


class StackedLinear(nn.Module):
    """K Linear layers: weight (K, out, in), bias (K, out); input (K, B, in) -> (K, B, out)."""

    linear_input_rank = 3  # models.base.linear_input_rank: what the vectorised importance passes ask

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.weight, self.bias = stacked_parameters(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class MemberInput(nn.Module):
    """The trunk's Flatten: (K, B, *shape) inputs, or (B, *shape) shared by every member
    (evaluation, importance passes), become (K, B, features)."""

    def __init__(self, members: int, input_dims: int):
        super().__init__()
        self.members, self.input_dims = members, input_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == self.input_dims + 1:  # one batch for every member
            x = x.unsqueeze(0).expand(self.members, *x.shape)
        return x.flatten(2)


class MemberDropout(nn.Dropout):
    """Dropout whose mask for member k comes from member k's own generator, drawn exactly as
    ``nn.Dropout`` draws it on CPU (a (rows, features) Bernoulli(1 - p) tensor divided by 1 - p),
    so a stacked member sees the masks of its separate run. ``rows`` (set by the engine for a
    step whose members have batches of different sizes, joint training) says how many rows of
    each member's padded batch are real."""

    def __init__(self, p: float, generators: list[torch.Generator]):
        super().__init__(p)  # a Dropout to every isinstance check (LwF's mode-dependence test)
        self.generators = generators
        self.rows: list[int] | None = None

    def __deepcopy__(self, memo: dict) -> MemberDropout:
        """A copy (LwF's old network) draws from the same generators, as an unstacked copy
        draws from the one global generator."""
        clone = MemberDropout(self.p, self.generators)
        clone.train(self.training)
        return clone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        rows = self.rows or [x.shape[1]] * x.shape[0]
        noise = x.new_zeros(x.shape)
        for k, (generator, n) in enumerate(zip(self.generators, rows)):
            mask = torch.empty((n, *x.shape[2:]), dtype=x.dtype).bernoulli_(keep, generator=generator)
            noise[k, :n] = mask.div_(keep)
        return x * noise


class StackedConv2d(nn.Module):
    """K Conv2d layers as one grouped convolution on the channel layout (B, K·C_in, H, W):
    weight (K, C_out, C_in / groups, kh, kw), bias (K, C_out); member k's filters see only its
    own channel block, exactly as its separate Conv2d sees its input."""

    def __init__(self, layers: Sequence[nn.Conv2d]):
        super().__init__()
        first = layers[0]
        self.stride, self.padding, self.dilation, self.groups = first.stride, first.padding, first.dilation, \
            first.groups
        self.weight, self.bias = stacked_parameters(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members = self.weight.shape[0]
        bias = None if self.bias is None else self.bias.flatten()
        return nn.functional.conv2d(x, self.weight.flatten(0, 1), bias, self.stride, self.padding, self.dilation,
                                    self.groups * members)


class StackedConvTranspose2d(nn.Module):
    """K ConvTranspose2d layers as one grouped transposed convolution on the channel layout:
    a transposed convolution's weight is (C_in, C_out / groups, kh, kw), so the members' weights
    stacked, (K, C_in, C_out, kh, kw), flattened over the first two dimensions are exactly the
    grouped weight with ``groups = K``."""

    def __init__(self, layers: Sequence[nn.ConvTranspose2d]):
        super().__init__()
        first = layers[0]
        self.stride, self.padding, self.dilation = first.stride, first.padding, first.dilation
        self.output_padding, self.groups = first.output_padding, first.groups
        self.weight, self.bias = stacked_parameters(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members = self.weight.shape[0]
        bias = None if self.bias is None else self.bias.flatten()
        return nn.functional.conv_transpose2d(x, self.weight.flatten(0, 1), bias, self.stride,
                                              cast(tuple[int, ...], self.padding), self.output_padding,
                                              self.groups * members, self.dilation)


class MemberUnflatten(nn.Module):
    """A decoder's Unflatten: (K, B, C·H·W) becomes the channel layout (B, K·C, H, W)."""

    def __init__(self, members: int, shape: Sequence[int]):
        super().__init__()
        self.members, self.shape = members, tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels, *plane = self.shape
        return x.transpose(0, 1).reshape(x.shape[1], self.members * channels, *plane)


class MemberImages:
    """A decoder's forward hook: images that leave it in the channel layout, (B, K·C, H, W),
    become (K, B, C, H, W), each member's images as its separate decoder draws them."""

    def __init__(self, members: int):
        self.members = members

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output.view(output.shape[0], self.members, -1, *output.shape[2:]).transpose(0, 1)


class StackedBatchNorm2d(nn.BatchNorm2d):
    """K BatchNorm2d layers on the channel layout: weight, bias, running mean and variance are
    (K, C), ``num_batches_tracked`` (K,). A BatchNorm2d over K·C channels normalises each channel
    by its own batch statistics, so member k is normalised by its own batch's statistics and
    updates its own running statistics (views of the (K, C) buffers). A ``_BatchNorm`` to every
    isinstance check (SGD-F keeps its frozen trunk's statistics; LwF's mode test)."""

    def __init__(self, layers: Sequence[nn.BatchNorm2d]):
        nn.Module.__init__(self)
        first = layers[0]
        self.num_features, self.eps, self.momentum = first.num_features, first.eps, first.momentum
        self.affine, self.track_running_stats = first.affine, first.track_running_stats
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, torch.stack([cast(torch.Tensor, getattr(layer, name)) for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # nn.BatchNorm2d.forward, on (K, C) tensors as K·C channels
        mean, var, count = (cast(torch.Tensor, b) for b in (self.running_mean, self.running_var,
                                                             self.num_batches_tracked))
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training:
            count.add_(1)
            if self.momentum is None:  # cumulative moving average: every member has seen as many batches
                factor = 1.0 / float(count[0])
        return nn.functional.batch_norm(x, mean.view(-1), var.view(-1), self.weight.view(-1), self.bias.view(-1),
                                        self.training, factor, self.eps)


class MemberFlatten(nn.Module):
    """A CNN trunk's Flatten: the channel layout (B, K·C, H, W) becomes (K, B, C·H·W), each
    member's features in its separate Flatten's order (channel-major)."""

    def __init__(self, members: int):
        super().__init__()
        self.members = members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.members, -1).transpose(0, 1)


class MemberFlip(nn.Module):
    """models.cnn.RandomHorizontalFlip on the channel layout: member k's flips are drawn from its
    own generator exactly as its separate run draws them (``torch.rand(batch)``), so a stacked
    member sees its separate run's flips (on CPU)."""

    def __init__(self, p: float, generators: list[torch.Generator]):
        super().__init__()
        self.p, self.generators = p, generators

    def __deepcopy__(self, memo: dict) -> MemberFlip:
        clone = MemberFlip(self.p, self.generators)  # as MemberDropout: a copy draws from the same generators
        clone.train(self.training)
        return clone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return x
        batch, members = x.shape[0], len(self.generators)
        flip = torch.stack([torch.rand(batch, generator=g) < self.p for g in self.generators], 1).to(x.device)
        blocks = x.view(batch, members, -1, *x.shape[2:])
        return torch.where(flip[:, :, None, None, None], blocks.flip(-1), blocks).view(x.shape)


class ChannelInput:
    """A CNN trunk's forward pre-hook: (K, B, C, H, W) inputs, one batch per member (training), or
    (B, C, H, W) shared by every member (evaluation, importance passes), become the channel
    layout (B, K·C, H, W)."""

    def __init__(self, members: int, input_dims: int):
        self.members, self.input_dims = members, input_dims

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        x, *rest = args
        if x.dim() == self.input_dims + 1:  # one batch for every member
            return (x.repeat(1, self.members, *[1] * (self.input_dims - 1)), *rest)
        return (x.transpose(0, 1).reshape(x.shape[1], -1, *x.shape[3:]), *rest)


class MemberFeatures:
    """A CNN trunk's forward hook: features that leave it in the channel layout, (B, K·F) (a
    ResNet's pooled, flattened output), become (K, B, F) for the heads."""

    def __init__(self, members: int):
        self.members = members

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if output.dim() == 2:
            return output.view(output.shape[0], self.members, -1).transpose(0, 1)
        return output


class StackedModel(ContinualModel):
    """``members`` networks as one: trunk and heads with a leading member dimension."""

    def __init__(self, models: Sequence[ContinualModel], generators: list[torch.Generator], input_dims: int):
        nn.Module.__init__(self)
        self.members = len(models)
        self.trunk = stack_trunk([m.trunk for m in models], generators, input_dims)
        self.heads = nn.ModuleList(_stack(list(heads), generators, MEMBERS)[0]
                                   for heads in zip(*(m.heads for m in models)))
        self.norm_stats = {}

    def set_rows(self, rows: list[int] | None) -> None:
        """Real rows per member of the next training batch (None: all rows)."""
        for module in self.trunk.modules():
            if isinstance(module, MemberDropout):
                module.rows = rows

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member k's parameters and buffers under the unstacked model's names (load into
        ``build_model``'s model)."""
        return {name: tensor[k].detach().clone() for name, tensor in self.state_dict().items()}


class StackedVAE(StackedModel, VAE):
    """``members`` continual VAEs as one (section 4.2.4): encoder and latent heads as any stacked
    trunk and heads, the decoder from the members' (K, B, latent) codes to (K, B, C, H, W) images
    through grouped transposed convolutions. Each member's reparameterisation noise comes from its
    own generator, drawn as its separate run draws it from torch's (``torch.randn_like``, CPU)."""

    def __init__(self, models: Sequence[VAE], generators: list[torch.Generator], input_dims: int):
        super().__init__(models, generators, input_dims)
        self.latent, self.generators = models[0].latent, generators
        self.decoder = cast(nn.Sequential, _stack([m.decoder for m in models], generators, MEMBERS)[0])
        self.decoder.register_forward_hook(MemberImages(self.members))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:  # codes shared by every member (Figure 5's samples)
            z = z.unsqueeze(0).expand(self.members, *z.shape)
        return self.decoder(z)

    def reparameterise(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        noise = torch.stack([torch.randn(mu.shape[1:], generator=g) for g in self.generators]).to(mu.device)
        return mu + noise * (0.5 * logvar).exp()


def stack_models(models: Sequence[ContinualModel], generators: list[torch.Generator], input_dims: int) -> StackedModel:
    """The members' networks as one: a :class:`StackedVAE` for VAEs, else a :class:`StackedModel`.
    Raises ConfigError naming what cannot be stacked (a model of another kind, a layer)."""
    if type(models[0]) not in (ContinualModel, VAE):
        raise ConfigError(f"only ContinualModel classifiers and the VAE are stacked, and this model is a "
                          f"{type(models[0]).__name__}")
    if isinstance(models[0], VAE):
        return StackedVAE(cast(Sequence[VAE], models), generators, input_dims)
    return StackedModel(models, generators, input_dims)


# The two layouts of activations inside a stack (module docstring).
MEMBERS, CHANNELS = "members (K, B, features)", "channels (B, K·C, H, W)"
# Layers that act on each channel alone (pooling: within a channel's plane): in the channel layout the
# same module serves every member.
_PER_CHANNEL = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity)


def stack_trunk(trunks: Sequence[nn.Module], generators: list[torch.Generator], input_dims: int) -> nn.Module:
    """The members' trunks as one: an MLP trunk (it starts with Flatten) in the members layout,
    any other in the channel layout with hooks that convert its inputs and features."""
    first = trunks[0]
    if isinstance(first, nn.Sequential) and len(first) and isinstance(first[0], nn.Flatten):
        layers = [MemberInput(len(trunks), input_dims)]
        stacked, _ = _stack_children([cast(nn.Sequential, t)[1:] for t in trunks], generators, MEMBERS)
        return nn.Sequential(*layers, *stacked)
    if input_dims != 3:
        raise ConfigError(f"a trunk without a leading Flatten is stacked on images (channels, height, width); "
                          f"these inputs have {input_dims} dimensions")
    trunk, _ = _stack(list(trunks), generators, CHANNELS)
    trunk.register_forward_pre_hook(ChannelInput(len(trunks), input_dims))
    trunk.register_forward_hook(MemberFeatures(len(trunks)))
    return trunk


def _stack_children(sequences: Sequence[nn.Sequential], generators: list[torch.Generator],
                    layout: str) -> tuple[list[nn.Module], str]:
    layers = []
    for position in range(len(sequences[0])):
        layer, layout = _stack([s[position] for s in sequences], generators, layout)
        layers.append(layer)
    return layers, layout


def _stack(modules: list[nn.Module], generators: list[torch.Generator], layout: str) -> tuple[nn.Module, str]:
    """The K members' ``modules`` (one architecture) as one module, and the layout after it.
    Raises ConfigError naming a layer that cannot be stacked in this layout."""
    import copy

    first = modules[0]
    members = len(modules)
    if isinstance(first, nn.Sequential):
        layers, layout = _stack_children(cast(list[nn.Sequential], modules), generators, layout)
        return nn.Sequential(*layers), layout
    if isinstance(first, tuple(CHAIN_CONTAINERS)) and layout == CHANNELS:
        if [*first.named_parameters(recurse=False), *first.named_buffers(recurse=False)]:
            raise ConfigError(f"cannot stack a {type(first).__name__} holding its own parameters")
        stacked = copy.deepcopy(first)
        for name, _ in first.named_children():
            child, _ = _stack([getattr(m, name) for m in modules], generators, CHANNELS)
            setattr(stacked, name, child)
        # a ResNet ends in torch.flatten: its features leave in the channel layout (MemberFeatures)
        return stacked, CHANNELS
    if isinstance(first, (nn.ReLU, nn.Identity)) or (isinstance(first, _PER_CHANNEL) and layout == CHANNELS):
        return copy.deepcopy(first), layout
    if layout == MEMBERS:
        if isinstance(first, nn.Linear):
            return StackedLinear(cast(list[nn.Linear], modules)), layout
        if isinstance(first, nn.Dropout):
            return MemberDropout(first.p, generators), layout
        if isinstance(first, nn.Unflatten) and first.dim == 1:
            return MemberUnflatten(members, cast(Sequence[int], first.unflattened_size)), CHANNELS
    else:
        if isinstance(first, nn.Conv2d) and first.padding_mode == "zeros":
            return StackedConv2d(cast(list[nn.Conv2d], modules)), layout
        if isinstance(first, nn.ConvTranspose2d) and first.padding_mode == "zeros":
            return StackedConvTranspose2d(cast(list[nn.ConvTranspose2d], modules)), layout
        if isinstance(first, nn.BatchNorm2d) and first.affine and first.track_running_stats:
            return StackedBatchNorm2d(cast(list[nn.BatchNorm2d], modules)), layout
        if isinstance(first, nn.Flatten) and first.start_dim == 1:
            return MemberFlatten(members), MEMBERS
        if isinstance(first, RandomHorizontalFlip):
            return MemberFlip(first.p, generators), layout
    where = "after the trunk's Flatten" if layout == MEMBERS else "in a convolutional trunk"
    raise ConfigError(f"cannot stack a {type(first).__name__} layer {where}")
