"""The continual VAE of section 4.2.4 (Figure 5): a conv-conv-fc encoder, a separate latent
head (μ, log σ²) per task, and an fc-deconv-deconv decoder.

Shared (what regularisers protect) are the encoder and the decoder; each task's latent head
is its own, as the paper describes. ``forward(x, head)`` is the decoder's per-pixel logits at
the posterior mean: the deterministic output through which label-free methods (SPP, MAS) look
at the network. Two stride-2 convolutions halve the side twice, so it must divide by 4
(8×8 digits, 28×28 MNIST, 96×96 faces).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import ContinualModel


class VAE(ContinualModel):
    def __init__(self, in_channels: int, side: int, n_tasks: int, latent: int, width: Sequence[int], hidden: int):
        small = side // 4
        encoder = nn.Sequential(
            nn.Conv2d(in_channels, width[0], 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width[0], width[1], 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(width[1] * small * small, hidden), nn.ReLU(),
        )
        super().__init__(encoder, hidden, [2 * latent] * n_tasks)
        self.latent = latent
        self.decoder = nn.Sequential(
            nn.Linear(latent, width[1] * small * small), nn.ReLU(), nn.Unflatten(1, (width[1], small, small)),
            nn.ConvTranspose2d(width[1], width[0], 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(width[0], in_channels, 4, stride=2, padding=1),
        )

    def encode(self, x: torch.Tensor, head: int) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) of task ``head``: its mean and log-variance."""
        mu, logvar = self.heads[head](self.trunk(x)).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Per-pixel Bernoulli logits of p(x|z), shaped like the images."""
        return self.decoder(z)

    def reparameterise(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = μ + σ ⊙ ε, ε ~ N(0, I) (Kingma & Welling, section 2.4), drawn from torch's generator."""
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    def forward(self, x: torch.Tensor, head: int = 0) -> torch.Tensor:
        return self.decode(self.encode(x, head)[0]).flatten(-3)  # (batch, pixels); a stack's (K, batch, pixels)

    def negative_elbos(self, x: torch.Tensor, head: int) -> torch.Tensor:
        """Per image, the negative ELBO at the posterior mean (:func:`negative_elbo`): a
        label-free loss, SPP's alternative uncertainty for a generator (``signal=elbo``)."""
        mu, logvar = self.encode(x, head)
        return negative_elbo(self.decode(mu), x, mu, logvar)

    def output_entropies(self, outputs: torch.Tensor) -> torch.Tensor:
        """Per sample, the entropy of the decoder's per-pixel Bernoulli outputs, summed over
        pixels: SPP's label-free uncertainty for a generator (section 4.2.4; see methods/spp.py)."""
        p = torch.sigmoid(outputs)
        return F.binary_cross_entropy_with_logits(outputs, p, reduction="none").sum(-1)  # outputs: (..., pixels)

    def shared_modules(self) -> list[nn.Module]:
        return [self.trunk, self.decoder]

    def named_shared_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        yield from super().named_shared_parameters()
        for name, param in self.decoder.named_parameters():
            yield f"decoder.{name}", param


# The VAE's likelihood lives with the model (objectives.NegativeELBO trains on it, SPP's
# ``signal=elbo`` reads it), so that models/ never imports objectives (no import cycle).
def negative_elbo(recon_logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor,
                  logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample -ELBO: Bernoulli reconstruction term plus the Gaussian KL (Kingma & Welling, eq. 10).

    Images are (..., C, H, W) and codes (..., latent): a stack's member dimension leads, and
    images shared by every member (evaluation) broadcast against its (K, B, C, H, W) outputs."""
    reconstruction = F.binary_cross_entropy_with_logits(recon_logits, x.expand_as(recon_logits),
                                                        reduction="none").flatten(-3).sum(-1)
    kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(-1)
    return reconstruction + kl


def vae(input_shape: Sequence[int], head_sizes: Sequence[int], latent: int = 16,
        channels: Sequence[int] = (16, 32), fc: int = 128) -> VAE:
    """The continual VAE of section 4.2.4: a conv-conv-fc encoder and a deconvolution decoder shared by
    every task, and one latent head (mean and log-variance of ``latent`` units) per task.

    ``head_sizes`` gives only the count of heads (one per task); images must be square with a side
    divisible by 4."""
    side = input_shape[-1]
    if len(input_shape) != 3 or input_shape[1] != side or side % 4:
        raise ValueError(f"vae needs square images whose side divides by 4, got input shape {tuple(input_shape)}")
    if len(channels) != 2:
        raise ValueError(f"vae needs two channel counts (one per convolution), got {list(channels)}")
    return VAE(input_shape[0], side, len(head_sizes), latent, tuple(channels), fc)
