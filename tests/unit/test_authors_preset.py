"""The authors' split-MNIST preset (studies/split_mnist_authors.yaml, PROTOCOL.md section 6):
truncated-normal initialisation with 0.1 biases, dropout after the last hidden layer only, a
shared output layer that regularisers protect too, SPP's λ/2, complete batches only. Each
setting against a hand computation, and a stack of the preset equal to its separate runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment
from spp_sweep.errors import ConfigError
from spp_sweep.methods import get_method
from spp_sweep.methods.base import Step
from spp_sweep.models import build_model
from spp_sweep.stacked import StackedExperiment
from spp_sweep.sweep.study import load_study
from tests.conftest import REPO

PRESET = {"hidden": [16, 8], "init": "truncated_normal", "dropout": 0.5, "dropout_layers": "last"}


def test_truncated_normal_init_and_dropout_after_the_last_layer_only() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", (784,), [2], {"hidden": (64, 32), "init": "truncated_normal", "dropout": 0.5,
                                             "dropout_layers": "last"})
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3  # two hidden layers and the head
    for layer in linears:
        assert layer.weight.abs().max() <= 0.2  # TensorFlow's truncated normal: redrawn beyond 2σ
        assert torch.equal(layer.bias, torch.full_like(layer.bias, 0.1))
    # a normal of σ 0.1 truncated at ±2σ has standard deviation 0.1 * 0.8796
    assert abs(linears[0].weight.std().item() - 0.08796) < 0.002
    kinds = [type(m).__name__ for m in model.trunk]
    assert kinds == ["Flatten", "Linear", "ReLU", "Linear", "ReLU", "Dropout"]
    with pytest.raises(ConfigError, match="dropout_layers"):
        RunConfig(benchmark="split_digits", model_options={"dropout_layers": "first"}).resolved()


def test_penalise_head_makes_the_shared_output_layer_a_shared_parameter() -> None:
    config = RunConfig(method="spp", benchmark="split_digits", output="shared", penalise_head=True, epochs=1)
    experiment = Experiment(config)
    names = [name for name, _ in experiment.model.named_shared_parameters()]
    assert names[-2:] == ["heads.0.weight", "heads.0.bias"]
    assert len(experiment.model.shared_parameters()) == len(names)
    plain = Experiment(RunConfig(method="spp", benchmark="split_digits", output="shared", epochs=1))
    assert not any(name.startswith("heads") for name, _ in plain.model.named_shared_parameters())
    with pytest.raises(ConfigError, match="penalise_head"):
        RunConfig(method="spp", benchmark="split_digits", output="per_task", penalise_head=True).resolved()
    with pytest.raises(ConfigError, match="true or false"):
        RunConfig(method="spp", benchmark="split_digits", drop_last=1).resolved()


def test_spp_half_lambda_penalty_and_head_importance_by_hand() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", (4,), [2], {"hidden": (3,), "dropout": 0.0}).double()
    model.head_is_shared = True
    method = get_method("spp")(model, **get_method("spp").validate_options({"lam": 3.0, "half_lambda": True}))
    x = torch.randn(7, 4, dtype=torch.float64)
    from spp_sweep.methods.base import TaskView

    method.after_task(TaskView(0, 0, x, torch.zeros(7, dtype=torch.long)))
    # the head's importance, by hand: eq. 2-3 with g = d(sum of entropies)/d head weight
    head = model.heads[0].weight
    logits = model(x, 0)
    q = torch.softmax(logits, -1)
    entropy = -(q * q.log()).sum()
    g = torch.autograd.grad(entropy, head)[0]
    expected = (g * head + 0.5 * head.square() * g.square()).clamp_min(0).detach()
    assert torch.allclose(method.omega[-2], expected)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    penalty = method.penalty(Step(1, 0, x, None, None, None))
    by_hand = 1.5 * sum((o * 0.01 ** 2).sum() for o in method.omega)  # (λ/2) Σ Ω (w - w*)², w - w* = 0.01
    assert torch.allclose(penalty, by_hand)


def test_drop_last_trains_complete_batches_only() -> None:
    config = RunConfig(method="finetune", benchmark="split_digits", batch_size=64, epochs=1, drop_last=True)
    experiment = Experiment(config)
    sizes = [len(index) for _, index in experiment._schedule([0], experiment.shuffle)]
    n = len(experiment.benchmark.tasks[0].y_train)
    assert sizes == [64] * (n // 64) and n % 64
    with pytest.raises(ConfigError, match="no complete batch"):
        Experiment(RunConfig(method="finetune", benchmark="split_digits", batch_size=10 ** 6, epochs=1,
                             drop_last=True)).run()


@pytest.mark.parametrize("method", ["spp", "ewc", "si", "mas", "lwf"])
def test_a_stack_of_the_preset_equals_its_separate_runs(method: str) -> None:
    options = {"spp": {"beta": 3.0, "half_lambda": True}}.get(method, {})
    configs = [RunConfig(method=method, benchmark="split_digits", lr=0.05, seed=seed, threads=1, epochs=2,
                         batch_size=32, drop_last=True, output="shared", penalise_head=True, first_tasks=3,
                         model_options=PRESET, method_options={**options, "lam": lam})
               for seed, lam in [(0, 1.0), (1, 12.0)]]
    stack = StackedExperiment(configs)
    results = stack.run()
    for k, config in enumerate(configs):
        separate = Experiment(config)
        alone = separate.run()
        for ours, theirs in zip(results[k].accuracy_matrix, alone.accuracy_matrix):
            assert ours == pytest.approx(theirs, abs=0.02)
        member = stack.model.member_state(k)
        for name, tensor in separate.model.state_dict().items():
            assert torch.allclose(member[name], tensor, rtol=0, atol=1e-5), (method, k, name)


def test_the_preset_study_loads_and_names_every_setting() -> None:
    study = load_study(Path(REPO, "studies", "split_mnist_authors.yaml"))
    assert study.fixed["output"] == "shared" and study.fixed["penalise_head"] is True
    assert study.fixed["drop_last"] is True and study.fixed["epochs"] == 50 and study.fixed["lr"] == 0.01
    spp = next(m for m in study.methods if m.method == "spp")
    assert spp.options == {"beta": 3, "half_lambda": True}
    assert {0.01, 0.1, 0.5, 1, 2, 4, 6, 8, 12} <= set(spp.space["lam"].values)


def test_method_option_overrides_one_methods_options(tmp_path: Path) -> None:
    from spp_sweep.sweep.runner import SweepOptions, prepare_study

    study = load_study(Path(REPO, "studies", "split_mnist_authors_ablation.yaml"))
    changed = prepare_study(study, SweepOptions(storage=str(tmp_path), method_options=(("spp.beta", 0.0),)))
    assert next(m for m in changed.methods if m.method == "spp").options == {"beta": 0.0, "half_lambda": True}
    with pytest.raises(ConfigError, match="METHOD.OPTION"):
        prepare_study(study, SweepOptions(storage=str(tmp_path), method_options=(("ewc.lam", 1.0),)))
