"""What a task asks of the network: the engine's extension point for kinds of task.

The engine's loop (tasks in sequence, SGD steps, a method's hooks, a task × task matrix of
scores, checkpoints) is the same for every kind of task; only three things differ, and an
objective says them:

* the training loss of a mini-batch (classification: cross-entropy; a VAE: the negative ELBO),
  with what a method's penalty sees of the step (features and outputs, ``methods.Step``);
* the score of a task, summed over its samples, that fills the matrix P[j, i] and from which
  ACC/BWT/FWT are computed (accuracy; negative ELBO per image), and whether higher is better;
* the loss and the score of a network that has learned nothing, for the divergence rules (log
  of the number of classes, and accuracy 1/classes; none for a VAE, whose loss has no fixed scale).

A benchmark names its objective (``Benchmark.objective``); a new kind of task is one class
here and one registry entry, not a fork of the engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .benchmarks.base import Task
from .errors import ConfigError
from .models import ContinualModel
from .models.vae import VAE, negative_elbo

PICTURES = 8  # images per row of Figure 5


@dataclass(frozen=True)
class Forward:
    """One training batch through the network: the objective's loss (what the optimiser
    minimises before any penalty, and what the blow-up rule watches) and what a method's
    penalty may inspect of the step (features and outputs, ``methods.Step``)."""

    loss: torch.Tensor
    features: torch.Tensor
    outputs: torch.Tensor


class Objective:
    """Classification with a softmax head (the paper's every table): cross-entropy, accuracy."""

    name: ClassVar[str] = "classification"
    score_name: ClassVar[str] = "accuracy"
    # True: a larger score is better (accuracy). False: a loss (negative ELBO); tables say so.
    higher_is_better: ClassVar[bool] = True

    def training_forward(self, model: ContinualModel, head: int, x: torch.Tensor, y: torch.Tensor) -> Forward:
        """The batch's mean cross-entropy; a stacked model's (K, B, C) logits give one mean per
        member, (K,), each the mean over that member's own batch (stacked.py)."""
        features = model.trunk(x)
        logits = model.heads[head](features)
        loss = F.cross_entropy(logits, y) if logits.dim() == 2 else self.sample_losses(logits, y).mean(-1)
        return Forward(loss, features, logits)

    def sample_losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample cross-entropy of (..., B, C) logits against (..., B) labels: (..., B)."""
        return F.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="none").view(y.shape)

    def score_sum(self, model: ContinualModel, head: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum over the batch of the per-sample score (here: 1 if the argmax is the label); a
        stacked model's leading member dimension is kept, (K,) sums (stacked.py)."""
        return (model(x, head).argmax(-1) == y).sum(-1)

    def untrained_loss(self, outputs: int) -> float | None:
        """The loss of uniform guessing over ``outputs`` classes: log(outputs)."""
        return math.log(outputs)

    def chance_score(self, outputs: int) -> float | None:
        """The score of guessing over ``outputs`` classes (accuracy 1/outputs), or None where
        the score has no chance level: the collapse rule reads it (engine._collapsed)."""
        return 1.0 / outputs

    def correct(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """How many of a training batch's predictions are right (over the last dimension's
        classes; a leading member dimension is kept), or None where the objective has no
        accuracy: the finite blow-up rule reads it (engine._blown_up)."""
        return (outputs.argmax(-1) == y).sum(-1)

    def pictures(self, model: ContinualModel, tasks: Sequence[Task]) -> dict[str, torch.Tensor] | None:
        """Images worth keeping after each task (a generator's reconstructions and samples), or None."""
        return None


class NegativeELBO(Objective):
    """A variational autoencoder's negative evidence lower bound (paper section 4.2.4).

    Per image: -ELBO = BCE(x, decoder(z)) summed over pixels (a Bernoulli likelihood on grey
    levels in [0, 1]) + KL(q(z|x) || N(0, I)) summed over latent units, in nats (Kingma and
    Welling 2014, eq. 10). Training samples z with the reparameterisation; the score is the
    same bound at z = μ (no sampling noise, so P[j, i] is deterministic), lower is better.
    """

    name: ClassVar[str] = "elbo"
    score_name: ClassVar[str] = "negative ELBO (nats per image, lower is better)"
    higher_is_better: ClassVar[bool] = False

    def training_forward(self, model: ContinualModel, head: int, x: torch.Tensor, y: torch.Tensor) -> Forward:
        """The batch's mean -ELBO with one reparameterised draw per image; a stack's (K,) means,
        each over its member's own batch (stacked.py)."""
        mu, logvar = _vae(model).encode(x, head)
        recon = _vae(model).decode(_vae(model).reparameterise(mu, logvar))
        return Forward(negative_elbo(recon, x, mu, logvar).mean(-1), mu, recon)

    def score_sum(self, model: ContinualModel, head: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mu, logvar = _vae(model).encode(x, head)
        return negative_elbo(_vae(model).decode(mu), x, mu, logvar).sum(-1)

    def untrained_loss(self, outputs: int) -> float | None:
        return None

    def chance_score(self, outputs: int) -> float | None:
        return None

    def correct(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        return None

    @torch.no_grad()
    def pictures(self, model: ContinualModel, tasks: Sequence[Task]) -> dict[str, torch.Tensor] | None:
        """Figure 5's material: the first PICTURES test images of task 1, their reconstructions
        through task 1's latent head (at the posterior mean), the decoder's images of PICTURES
        latent codes drawn once from N(0, I) with a fixed seed (``samples``: the same codes after
        every task and in every run, so the pictures compare the decoder, not the draw), and
        ``task1_samples``: the same draw mapped onto task 1's own latent statistics.

        Why the second: every task's head is pulled towards the one prior N(0, I), so prior
        samples decode to whatever the shared decoder now draws, with nothing of a task in them.
        Task 1's region of the latent space is where its head puts its images: the mean and
        standard deviation of its posterior means over (up to 512 of) its training images, through
        the current encoder. Codes μ₁ + σ₁ ⊙ ε show what the network can still generate *of task
        1* (section 4.2.4 has a latent head per task for exactly this), comparably across methods.

        A stack's pictures have its member dimension first, the originals too (one copy each)."""
        model = _vae(model)
        was_training = model.training
        model.eval()
        originals = tasks[0].x_test[:PICTURES]
        codes = torch.randn(PICTURES, model.latent, generator=torch.Generator().manual_seed(0)).to(originals.device)
        posterior = model.encode(tasks[0].x_train[:512], 0)[0]  # (512, latent), or (K, 512, latent)
        task1 = posterior.mean(-2, keepdim=True) + posterior.std(-2, keepdim=True) * codes
        if posterior.dim() == 3:
            originals = originals.expand(posterior.shape[0], *originals.shape)
        pictures = {"originals": originals,
                    "reconstructions": torch.sigmoid(model.decode(model.encode(originals, 0)[0])),
                    "samples": torch.sigmoid(model.decode(codes)),
                    "task1_samples": torch.sigmoid(model.decode(task1))}
        model.train(was_training)
        return pictures


def _vae(model: ContinualModel) -> VAE:
    """The ELBO is defined for the VAE only (config refuses other models with this objective)."""
    if not isinstance(model, VAE):
        raise TypeError(f"the elbo objective needs the vae model, not {type(model).__name__}")
    return model


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (Objective(), NegativeELBO())}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective {name!r}; choose one of: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]
