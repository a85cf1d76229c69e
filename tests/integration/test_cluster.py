"""A sweep joins an existing two-node Ray cluster (both nodes on this machine) via --address."""

from __future__ import annotations

from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from analysis.load import load_trials
from spp_sweep.sweep.runner import SweepOptions, run_sweep
from spp_sweep.sweep.study import parse_study


def test_a_sweep_on_a_two_node_cluster_runs_trials_on_both_nodes(tmp_path: Path) -> None:
    ray.shutdown()  # leave the tests' shared local instance; this test brings its own cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        # one configuration per trial, each a few seconds long: with reused actors, two stacks that
        # end before the second node's worker has started could both run on the first node
        study = parse_study({
            "name": "cluster", "benchmark": "split_digits", "fixed": {"epochs": 5},
            "methods": {"finetune": {"space": {"lr": [0.1, 0.05, 0.02, 0.01]}}}, "seeds": 2,
            "resources": {"cpu": 1}, "storage": str(tmp_path), "stack": "off",
        })
        outcome = run_sweep(study, SweepOptions(address=cluster.address, verbose=0))
        trials = load_trials(outcome.root)
        assert len(trials) == 8 and set(trials["status"]) == {"finished"}
        node_ids = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        assert set(trials["node_id"]) == node_ids and len(node_ids) == 2  # both nodes ran trials
    finally:
        ray.shutdown()
        cluster.shutdown()
