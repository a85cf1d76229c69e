"""SPP's importance (eqs. 2-3), accumulation (eq. 4) and penalty (eq. 5) against hand computations."""

import numpy as np
import pytest
import torch

from spp_sweep.methods import Step, TaskView
from spp_sweep.methods.spp import SPP


def hand_entropy_gradient(W, V, x):
    """dI/dW of I = -sum_n sum_c q_nc log q_nc for logits z = V W x, by the chain rule in numpy.

    dI/dz_c = -q_c (log q_c + I_n) for one sample; dI/dW = V^T dI/dz x^T.
    """
    per_sample = []
    for xn in x:
        h = W @ xn
        z = V @ h
        q = np.exp(z - z.max())
        q /= q.sum()
        i_n = -(q * np.log(q)).sum()
        dz = -q * (np.log(q) + i_n)
        per_sample.append(np.outer(V.T @ dz, xn))
    return np.array(per_sample)


def test_batch_importance_matches_hand_computation(tiny):
    x = torch.randn(7, 3, dtype=torch.float64)
    spp = SPP(tiny, lam=1.0, importance_batch_size=4)  # two batches: 4 + 3 samples
    omega = spp.task_importance(TaskView(0, 0, x, torch.zeros(7, dtype=torch.long)))[0].numpy()

    W = tiny.trunk.weight.detach().numpy()
    V = tiny.heads[0].weight.detach().numpy()
    expected = []
    for batch in (x[:4].numpy(), x[4:].numpy()):
        g = hand_entropy_gradient(W, V, batch).sum(0)  # gradient of the batch-summed entropy
        expected.append(np.maximum(0.0, g * W + 0.5 * W**2 * g**2))  # eqs. 2-3
    np.testing.assert_allclose(omega, np.mean(expected, axis=0), rtol=1e-10, atol=1e-12)
    assert (omega >= 0).all()


def test_per_sample_importance_uses_sum_of_squared_sample_gradients(tiny):
    x = torch.randn(5, 3, dtype=torch.float64)
    spp = SPP(tiny, importance="per_sample", importance_batch_size=100)
    omega = spp.task_importance(TaskView(0, 1, x, torch.zeros(5, dtype=torch.long)))[0].numpy()
    W = tiny.trunk.weight.detach().numpy()
    g_n = hand_entropy_gradient(W, tiny.heads[1].weight.detach().numpy(), x.numpy())
    expected = np.maximum(0.0, g_n.sum(0) * W + 0.5 * W**2 * (g_n**2).sum(0))
    np.testing.assert_allclose(omega, expected, rtol=1e-10, atol=1e-12)


def test_importance_is_label_free(tiny):
    x = torch.randn(6, 3, dtype=torch.float64)
    spp = SPP(tiny)
    a = spp.task_importance(TaskView(0, 0, x, torch.zeros(6, dtype=torch.long)))[0]
    b = spp.task_importance(TaskView(0, 0, x, torch.ones(6, dtype=torch.long)))[0]
    assert torch.equal(a, b)


def test_sharpening_is_softmax_per_tensor(tiny):
    x = torch.randn(6, 3, dtype=torch.float64)
    plain = SPP(tiny).task_importance(TaskView(0, 0, x, torch.zeros(6, dtype=torch.long)))[0]
    sharp = SPP(tiny, beta=3.0).task_importance(TaskView(0, 0, x, torch.zeros(6, dtype=torch.long)))[0]
    expected = np.exp(3 * plain.numpy()) / np.exp(3 * plain.numpy()).sum()
    np.testing.assert_allclose(sharp.numpy(), expected, rtol=1e-10)


def test_accumulation_and_penalty(tiny):
    x = torch.randn(6, 3, dtype=torch.float64)
    spp = SPP(tiny, lam=2.5)
    labels = torch.zeros(6, dtype=torch.long)
    view0, view1 = TaskView(0, 0, x, labels), TaskView(1, 1, x, labels)
    omega0 = spp.task_importance(view0)[0].clone()
    spp.after_task(view0)
    anchor0 = tiny.trunk.weight.detach().clone()
    assert spp.penalty(Step(1, 1, x, x, x, x)).item() == 0.0  # at the anchor
    with torch.no_grad():
        tiny.trunk.weight.add_(0.3)
    omega1 = spp.task_importance(view1)[0].clone()
    spp.after_task(view1)
    torch.testing.assert_close(spp.omega[0], omega0 + omega1)  # eq. 4
    assert torch.equal(spp.anchor[0], tiny.trunk.weight.detach())  # anchor = parameters after the last task
    with torch.no_grad():
        tiny.trunk.weight.sub_(0.1)
    expected = 2.5 * ((omega0 + omega1) * 0.1**2).sum()  # eq. 5, no 1/2
    assert spp.penalty(Step(2, 0, x, x, x, x)).item() == pytest.approx(expected.item(), rel=1e-10)
    assert not torch.equal(anchor0, spp.anchor[0])


def test_penalty_off_before_first_task_and_at_zero_lambda(tiny):
    x = torch.randn(4, 3, dtype=torch.float64)
    assert SPP(tiny).penalty(Step(0, 0, x, x, x, x)) is None
    spp = SPP(tiny, lam=0.0)
    spp.after_task(TaskView(0, 0, x, torch.zeros(4, dtype=torch.long)))
    assert spp.penalty(Step(1, 1, x, x, x, x)) is None


@pytest.mark.parametrize("sign,clip", [("paper", "zero"), ("entropy", "zero"), ("paper", "abs")])
def test_sign_and_clip_ablations_by_hand(sign: str, clip: str) -> None:
    """eq. 2's sign (+gW: the change of H = Σ q log q; -gW: the change of the entropy itself) and
    eq. 3's clipping (max(0, .) or |.|), each against the formula written out."""
    from spp_sweep.methods import get_method
    from spp_sweep.methods.base import TaskView
    from spp_sweep.models import build_model

    torch.manual_seed(3)
    model = build_model("mlp", (5,), [3], {"hidden": (4,), "dropout": 0.0}).double()
    spp = get_method("spp")
    method = spp(model, **spp.validate_options({"sign": sign, "clip": clip, "importance_batch_size": 100}))
    x = torch.randn(9, 5, dtype=torch.float64)
    omega = method.task_importance(TaskView(0, 0, x, torch.zeros(9, dtype=torch.long)))
    q = torch.softmax(model(x, 0), -1)
    entropy = -(q * q.log()).sum()
    grads = torch.autograd.grad(entropy, model.shared_parameters())
    s = 1.0 if sign == "paper" else -1.0
    for w, g, o in zip(model.shared_parameters(), grads, omega):
        change = s * g * w + 0.5 * w.square() * g.square()
        expected = change.abs() if clip == "abs" else change.clamp_min(0)
        assert torch.allclose(o, expected.detach())
