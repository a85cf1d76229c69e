"""EWC's exact Fisher on task 1 of permuted MNIST (10 classes): the class loop of the previous
version (one forward/backward per class through the Linear fast path) against the batched
backward now in methods/gradients.py, on the same model and data; also prints how far apart
the two results are (float32 rounding only).

    python bench/ewc_fisher.py --data-root ../shared/data
"""
import argparse
import time

import torch

from spp_sweep.config import RunConfig
from spp_sweep.engine import Experiment
from spp_sweep.methods.ewc import _log_likelihoods
from spp_sweep.methods.gradients import minibatches, per_sample_square_sums, true_fisher_square_sums

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data-root")
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)
options = {"data_root": args.data_root} if args.data_root else {}
e = Experiment(RunConfig(method="ewc", benchmark="permuted_mnist", benchmark_options=options, epochs=1,
                         threads=args.threads))
task = e.benchmark.tasks[0]
x, y = task.x_train, task.y_train
model = e.model.eval()

def old():
    total = None
    for b in minibatches(len(x), 100):
        xb = x[b]
        with torch.no_grad():
            probs = torch.softmax(model(xb, 0), -1)
        for c in range(probs.shape[1]):
            label = torch.full((len(xb),), c)
            def weighted(z, probs=probs, c=c, label=label):
                return probs[:, c].sqrt() * _log_likelihoods(z, label)

            s = per_sample_square_sums(model, 0, weighted, xb)
            total = s if total is None else [t + f for t, f in zip(total, s)]
    return total

def new():
    total = None
    for b in minibatches(len(x), 100):
        s = true_fisher_square_sums(model, 0, x[b])
        total = s if total is None else [t + f for t, f in zip(total, s)]
    return total

for name, f in (("class loop (previous)", old), ("batched over classes (now)", new)) * 2:
    start = time.perf_counter()
    f()
    print(f"{name}: {time.perf_counter() - start:.3f}s")
a, b = old(), new()
print("max relative difference", max(float(((p - q).abs() / q.abs().clamp_min(1e-12)).max()) for p, q in zip(a, b)))
