"""EWC, MAS, SI and LwF against hand computations on a tiny linear model (z = V W x)."""

import numpy as np
import pytest
import torch

from spp_sweep.methods import Step, TaskView
from spp_sweep.methods.ewc import EWC
from spp_sweep.methods.lwf import LwF, distillation_loss
from spp_sweep.methods.mas import MAS
from spp_sweep.methods.si import SI


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_ewc_true_fisher_by_hand(tiny):
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1])
    fisher = EWC(tiny).task_importance(TaskView(0, 0, x, y))[0].numpy()
    W, V = tiny.trunk.weight.detach().numpy(), tiny.heads[0].weight.detach().numpy()
    expected = np.zeros_like(W)
    for xn in x.numpy():
        q = softmax(V @ W @ xn)
        for c in range(2):  # d log q_c / dz = e_c - q
            g = np.outer(V.T @ (np.eye(2)[c] - q), xn)
            expected += q[c] * g**2
    np.testing.assert_allclose(fisher, expected / 5, rtol=1e-10)


def test_ewc_empirical_fisher_by_hand(tiny):
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([2, 0, 1, 2])
    fisher = EWC(tiny, fisher="empirical").task_importance(TaskView(1, 1, x, y))[0].numpy()
    W, V = tiny.trunk.weight.detach().numpy(), tiny.heads[1].weight.detach().numpy()
    expected = sum(np.outer(V.T @ (np.eye(3)[yn] - softmax(V @ W @ xn)), xn) ** 2 for xn, yn in zip(x.numpy(), y))
    np.testing.assert_allclose(fisher, expected / 4, rtol=1e-10)


def test_ewc_accumulated_penalty_has_the_gradient_of_one_penalty_per_task(tiny):
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.zeros(6, dtype=torch.long)
    ewc = EWC(tiny, lam=3.0)
    fishers, anchors = [], []
    for t in range(2):
        fishers.append(ewc.task_importance(TaskView(t, t, x, y))[0].clone())
        ewc.after_task(TaskView(t, t, x, y))
        anchors.append(tiny.trunk.weight.detach().clone())
        with torch.no_grad():
            tiny.trunk.weight.add_(0.2 * (t + 1))
    w = tiny.trunk.weight
    grad_ours = torch.autograd.grad(ewc.penalty(Step(2, 0, x, y, x, x)), w)[0]
    separate = sum(1.5 * (f * (w - a).square()).sum() for f, a in zip(fishers, anchors))  # Kirkpatrick eq. 3
    grad_separate = torch.autograd.grad(separate, w)[0]
    torch.testing.assert_close(grad_ours, grad_separate)


def test_mas_importance_by_hand(tiny):
    x = torch.randn(5, 3, dtype=torch.float64)
    omega = MAS(tiny, importance_batch_size=2).task_importance(TaskView(0, 1, x, torch.zeros(5, dtype=torch.long)))[0]
    W, V = tiny.trunk.weight.detach().numpy(), tiny.heads[1].weight.detach().numpy()
    # d ||z||^2 / dW = V^T (2 z) x^T
    expected = np.mean([np.abs(np.outer(V.T @ (2 * (V @ W @ xn)), xn)) for xn in x.numpy()], axis=0)
    np.testing.assert_allclose(omega.numpy(), expected, rtol=1e-10)


def test_si_path_integral_by_hand(tiny):
    si = SI(tiny, lam=0.5, xi=0.1)
    x = torch.zeros(1, 3, dtype=torch.float64)
    view = TaskView(0, 0, x, torch.zeros(1, dtype=torch.long))
    w = tiny.trunk.weight
    start = w.detach().clone()
    steps = [(torch.full_like(w, 0.2), torch.full_like(w, -0.05)), (torch.full_like(w, -0.1), torch.full_like(w, 0.02))]
    si.before_task(view)
    for grad, delta in steps:
        w.grad = grad
        with torch.no_grad():
            w.add_(delta)
        si.after_step(0.1)
    path = -(0.2 * -0.05) - (-0.1 * 0.02)  # Zenke eq. 3: omega = -sum g * dw
    total = -0.05 + 0.02
    torch.testing.assert_close(w.detach() - start, torch.full_like(w, total))  # the task's whole displacement
    omega = si.task_importance(view)[0]
    torch.testing.assert_close(omega, torch.full_like(w, path / (total**2 + 0.1)))  # Zenke eq. 5
    si.after_task(view)
    assert torch.equal(si.anchor[0], w.detach())


def test_si_removes_the_penalty_gradient_from_the_path_integral(tiny):
    si = SI(tiny, lam=2.0, xi=0.1)
    x = torch.zeros(1, 3, dtype=torch.float64)
    view = TaskView(0, 0, x, torch.zeros(1, dtype=torch.long))
    si.before_task(view)
    si.after_task(view)  # Omega = 0 / (0 + xi) = 0 ... set a known Omega instead
    si.omega = [torch.full_like(si.omega[0], 3.0)]
    w = tiny.trunk.weight
    with torch.no_grad():
        w.add_(0.1)  # now w - anchor = 0.1
    si.before_task(TaskView(1, 1, x, torch.zeros(1, dtype=torch.long)))
    task_grad = torch.full_like(w, 0.4)
    w.grad = task_grad + 2 * 2.0 * 3.0 * 0.1  # what backward() gives: task + penalty gradient
    with torch.no_grad():
        w.add_(-0.01)
    si.after_step(0.1)
    torch.testing.assert_close(si._path[0], torch.full_like(w, -0.4 * -0.01))


def test_lwf_distillation_target_by_hand():
    new = torch.tensor([[1.0, 2.0, 0.5]], dtype=torch.float64)
    old = torch.tensor([[0.2, 1.0, 3.0]], dtype=torch.float64)
    target = softmax(old.numpy()[0] / 2.0)
    log_new = np.log(softmax(new.numpy()[0] / 2.0))
    assert distillation_loss(new, old, 2.0).item() == pytest.approx(-(target * log_new).sum(), rel=1e-12)


def test_lwf_penalty_distils_every_old_head(tiny):
    lwf = LwF(tiny, lam=0.7, temperature=2.0)
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.long)
    lwf.before_task(TaskView(0, 0, x, y))
    assert lwf.old_model is None
    lwf.before_task(TaskView(1, 1, x, y))
    with torch.no_grad():
        old_logits = tiny.heads[0](tiny.trunk(x))
        tiny.trunk.weight.add_(0.3)  # the new model moves away from the old one
    features = tiny.trunk(x)
    value = lwf.penalty(Step(1, 1, x, y, features, tiny.heads[1](features)))
    expected = 0.7 * distillation_loss(tiny.heads[0](features), old_logits, 2.0)
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)


def test_linear_fast_path_equals_vmap_per_sample_gradients():
    from spp_sweep.methods.gradients import per_sample_gradients, per_sample_square_sums
    from spp_sweep.models.mlp import mlp

    torch.manual_seed(0)
    model = mlp((6,), [3, 4], hidden=(5, 4), dropout=0.0).double().eval()
    x = torch.randn(9, 6, dtype=torch.float64)
    def entropies(z):  # softmax entropy per sample, by hand
        q = torch.softmax(z, -1)
        return -(q * q.log()).sum(-1)

    fast = per_sample_square_sums(model, 1, entropies, x)
    slow = [g.square().sum(0) for g in per_sample_gradients(model, 1, lambda z, _: entropies(z), x)]
    assert len(fast) == 4
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b)


def test_linear_abs_fast_path_equals_vmap_per_sample_gradients():
    """MAS's sum_i |g_i| as |delta|^T |a| (one matmul) against torch.func's per-sample gradients."""
    from spp_sweep.methods.gradients import per_sample_abs_sums, per_sample_gradients
    from spp_sweep.models.mlp import mlp

    torch.manual_seed(0)
    model = mlp((6,), [3, 4], hidden=(5, 4), dropout=0.0).double().eval()
    x = torch.randn(9, 6, dtype=torch.float64)
    fast = per_sample_abs_sums(model, 1, lambda z: z.square().sum(-1), x)
    slow = [g.abs().sum(0) for g in per_sample_gradients(model, 1, lambda z, _: z.square().sum(), x)]
    assert len(fast) == 4
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b)


def test_true_fisher_batched_over_classes_equals_a_loop_over_classes():
    """EWC's exact Fisher with every class in one batched backward against a class-by-class loop
    of torch.func per-sample gradients (the path CNNs take)."""
    import torch.nn.functional as F

    from spp_sweep.methods.gradients import per_sample_gradients, true_fisher_square_sums
    from spp_sweep.models.mlp import mlp

    torch.manual_seed(0)
    model = mlp((6,), [3, 10], hidden=(5, 4), dropout=0.0).double().eval()
    x = torch.randn(9, 6, dtype=torch.float64)
    fast = true_fisher_square_sums(model, 1, x)
    probs = torch.softmax(model(x, 1), dim=-1).detach()
    slow = None
    for c in range(10):
        grads = per_sample_gradients(model, 1, lambda z, t: -F.cross_entropy(z.unsqueeze(0), t.unsqueeze(0)), x,
                                     torch.full((9,), c))
        term = [torch.einsum("n,n...->...", probs[:, c], g.square()) for g in grads]
        slow = term if slow is None else [s + t for s, t in zip(slow, term)]
    assert len(fast) == 4
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b)
