"""penalty_step=implicit: the quadratic penalty applied as its exact proximal step (quadratic.py).

Hand computations on the tiny linear model, first-order agreement with the explicit step,
stability where the explicit step diverges, and checkpoint continuity.
"""

import numpy as np
import pytest
import torch

from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment
from spp_sweep.errors import ConfigError
from spp_sweep.methods import Step
from spp_sweep.methods.ewc import EWC
from spp_sweep.methods.mas import MAS
from spp_sweep.methods.si import SI
from spp_sweep.methods.spp import SPP
from tests.conftest import resumed_after_second_task

# Each method's own factor in front of lam * sum Omega (w - w*)^2, written out independently of
# the code: SPP eq. 5, MAS eq. 3, Zenke eq. 4 have 1; Kirkpatrick eq. 3 has 1/2.
SCALES = [(SPP, 1.0), (MAS, 1.0), (SI, 1.0), (EWC, 0.5)]


def _anchored(method_cls, tiny, lam, step):
    """A method on ``tiny`` with a known accumulated importance and anchor, as after task 1."""
    method = method_cls(tiny, lam=lam, penalty_step=step)
    rng = np.random.default_rng(1)
    shape = tiny.trunk.weight.shape
    method.omega = [torch.tensor(rng.uniform(0.0, 3.0, shape))]
    method.anchor = [torch.tensor(rng.normal(size=shape))]
    if isinstance(method, SI):
        method._previous = [tiny.trunk.weight.detach().clone()]
        method._path = [torch.zeros(shape, dtype=torch.float64)]
        method._start = [tiny.trunk.weight.detach().clone()]
    return method


@pytest.mark.parametrize("method_cls,scale", SCALES)
def test_implicit_step_is_the_closed_form_by_hand(tiny, method_cls, scale):
    lam, lr = 7.0, 0.3
    method = _anchored(method_cls, tiny, lam, "implicit")
    v = tiny.trunk.weight.detach().numpy().copy()  # the parameters after the SGD step on the task loss
    omega, anchor = method.omega[0].numpy(), method.anchor[0].numpy()
    x = torch.zeros(1, 3, dtype=torch.float64)
    assert method.penalty(Step(1, 1, x, x, x, x)) is None  # nothing enters the loss
    tiny.trunk.weight.grad = torch.zeros_like(tiny.trunk.weight)
    method.after_step(lr)
    c = 2 * lr * scale * lam * omega
    expected = (v + c * anchor) / (1 + c)  # argmin_w |w - v|^2 / (2 lr) + scale lam Omega (w - anchor)^2
    np.testing.assert_allclose(tiny.trunk.weight.detach().numpy(), expected, rtol=1e-12)
    # and it is that minimiser: the objective's gradient vanishes there
    grad = (expected - v) / lr + 2 * scale * lam * omega * (expected - anchor)
    np.testing.assert_allclose(grad, 0, atol=1e-9)
    # the heads carry no penalty and are left alone
    assert method.penalty_scale == scale


@pytest.mark.parametrize("method_cls,scale", SCALES)
def test_explicit_step_leaves_the_parameters_to_the_optimiser(tiny, method_cls, scale):
    method = _anchored(method_cls, tiny, 7.0, "explicit")
    before = tiny.trunk.weight.detach().clone()
    tiny.trunk.weight.grad = torch.zeros_like(before)
    method.after_step(0.3)
    assert torch.equal(tiny.trunk.weight.detach(), before)


@pytest.mark.parametrize("method_cls,scale", SCALES)
def test_the_two_steps_agree_to_first_order(tiny, method_cls, scale):
    """One SGD step on the penalty alone against its proximal step: they differ by
    (w - w*) c^2 / (1 + c) with c = 2 lr scale lam Omega, i.e. second order in lr lam Omega."""
    lam, lr = 0.01, 0.01
    explicit = _anchored(method_cls, tiny, lam, "explicit")
    w = tiny.trunk.weight
    start = w.detach().clone()
    x = torch.zeros(1, 3, dtype=torch.float64)
    grad = torch.autograd.grad(explicit.penalty(Step(1, 1, x, x, x, x)), w)[0]
    after_explicit = start - lr * grad
    implicit = _anchored(method_cls, tiny, lam, "implicit")
    w.grad = torch.zeros_like(w)
    implicit.after_step(lr)
    c = 2 * lr * scale * lam * implicit.omega[0]
    assert c.max() < 1e-3  # the regime the test is about
    moved = (after_explicit - start).abs()
    assert moved.max() > 0
    # tolerance: |difference| <= c^2 |w - w*| (the exact second-order remainder), plus rounding
    difference = (w.detach() - after_explicit).abs()
    bound = c.square() * (start - implicit.anchor[0]).abs()
    assert torch.all(difference <= bound + 1e-15)
    assert difference.max() <= 1e-3 * moved.max()


def test_si_path_integral_takes_the_whole_implicit_step(tiny):
    """With the implicit step the gradient holds no penalty, and delta w includes the proximal move."""
    lam, lr = 2.0, 0.1
    si = _anchored(SI, tiny, lam, "implicit")
    w = tiny.trunk.weight
    previous = w.detach().clone()
    task_grad = torch.full_like(w, 0.4)
    w.grad = task_grad.clone()
    with torch.no_grad():
        w.add_(-lr * task_grad)  # the optimiser's step on the task loss
    v = w.detach().clone()
    si.after_step(lr)
    c = 2 * lr * lam * si.omega[0]
    after = (v + c * si.anchor[0]) / (1 + c)
    torch.testing.assert_close(w.detach(), after)
    torch.testing.assert_close(si._path[0], -task_grad * (after - previous))  # Zenke eq. 3


def test_implicit_step_with_momentum_is_refused_before_running():
    with pytest.raises(ConfigError, match="momentum"):
        RunConfig(method="spp", momentum=0.9, method_options={"penalty_step": "implicit"}).resolved()
    RunConfig(method="spp", momentum=0.9, method_options={"penalty_step": "explicit"}).resolved()


def test_every_quadratic_method_offers_the_option_and_no_other_does():
    from spp_sweep.methods import METHODS

    quadratic = {name for name, cls in METHODS.items() if "penalty_step" in cls.options}
    assert quadratic == {"spp", "ewc", "si", "mas"}
    with pytest.raises(ConfigError, match="explicit, implicit"):
        RunConfig(method="spp", method_options={"penalty_step": "exact"}).resolved()


FAST = dict(benchmark="split_digits", epochs=3, lr=0.1)


@pytest.mark.parametrize("method,lam", [("spp", 1000.0), ("mas", 1000.0)])
def test_a_lambda_that_diverges_explicitly_finishes_implicitly(method, lam):
    explicit = Experiment(RunConfig(method=method, method_options={"lam": lam}, **FAST)).run()
    assert explicit.status == "diverged"
    implicit = Experiment(RunConfig(method=method, method_options={"lam": lam, "penalty_step": "implicit"},
                                    **FAST)).run()
    assert implicit.status == "finished"
    assert implicit.metrics["acc"] > 0.8  # a working learner, not a frozen one at chance


def test_implicit_step_at_small_lambda_tracks_the_explicit_run():
    """Over whole tasks the two steps stay close when lr lam Omega is small."""
    runs = [Experiment(RunConfig(method="spp", method_options={"lam": 0.5, "penalty_step": s}, **FAST)).run()
            for s in ("explicit", "implicit")]
    assert abs(runs[0].metrics["acc"] - runs[1].metrics["acc"]) < 0.02


@pytest.mark.parametrize("method", ["spp", "si"])
def test_checkpoint_round_trip_with_the_implicit_step(method):
    config = RunConfig(method=method, method_options={"lam": 300.0, "penalty_step": "implicit"}, **FAST)
    uninterrupted = Experiment(config).run()
    result = resumed_after_second_task(config)
    assert uninterrupted.status == "finished"
    assert result.accuracy_matrix == uninterrupted.accuracy_matrix
