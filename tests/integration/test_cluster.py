"""A sweep joins an existing two-node Ray cluster (both nodes on this machine) via --address, and
loses nothing when one of its nodes leaves mid-sweep."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from analysis.load import load_trials, read_final_reports, read_reports
from spp_sweep.sweep.runner import SweepOptions, run_sweep
from spp_sweep.sweep.study import parse_study


def test_a_sweep_on_a_two_node_cluster_runs_trials_on_both_nodes(tmp_path: Path) -> None:
    ray.shutdown()  # leave the tests' shared local instance; this test brings its own cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        # one configuration per trial, each long enough that the first node alone cannot finish all
        # of them before the second node's actor has started: Ray Tune hands a pending trial to a
        # freed actor it reuses and cancels that trial's actor start on the other node (CI saw all
        # eight 5-epoch trials run on one node while the second node's worker was still starting);
        # at 300 epochs a trial takes about 3.5 s (idle 2-core machine), eight on one node about 28 s
        study = parse_study({
            "name": "cluster", "benchmark": "split_digits", "fixed": {"epochs": 300},
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


def test_a_worker_node_removed_mid_sweep_loses_nothing_and_its_trials_continue_on_the_survivor(
        tmp_path: Path) -> None:
    """A node leaves the cluster while its trial trains: Ray Tune reschedules that trial on the
    node that is left, from its last checkpoint (shared storage: here one disk). Every trial
    finishes, no task is trained twice, and every accuracy matrix equals an undisturbed sweep's."""
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        spec = {"name": "node_lost", "benchmark": "split_digits", "fixed": {"epochs": 40},
                "methods": {"finetune": {"space": {"lr": [0.1, 0.05]}}}, "seeds": 2,
                "resources": {"cpu": 1}, "storage": str(tmp_path), "stack": "off", "max_failures": 3}
        worker_id = worker.node_id
        root = tmp_path / "node_lost"
        outcome: dict[str, object] = {}
        sweep = threading.Thread(target=lambda: outcome.update(
            result=run_sweep(parse_study(spec), SweepOptions(address=cluster.address, verbose=0))))
        sweep.start()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not _checkpointed_on(root, worker_id):
            time.sleep(0.1)
        assert _checkpointed_on(root, worker_id), "no trial reached a checkpoint on the worker node"
        cluster.remove_node(worker)
        sweep.join(timeout=600)
        assert "result" in outcome, "the sweep did not finish after the node left"
        trials = load_trials(root)
        assert len(trials) == 4 and set(trials["status"]) == {"finished"}, trials[["status", "error"]]
        survivor = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        moved = [p for p in root.glob("grid/*/result.json") if _nodes(p.parent) == [worker_id, *survivor]]
        assert moved, "no trial moved from the removed node to the survivor"
        for folder in (Path(p) for p in trials["path"]):
            tasks = [r["task"] for r in read_reports(folder) if not r.get("replayed")]
            assert tasks == sorted(set(tasks)) and tasks[-1] == 5, (folder, tasks)  # nothing retrained
    finally:
        ray.shutdown()
        cluster.shutdown()
    undisturbed = parse_study({**spec, "name": "undisturbed"})
    reference = load_trials(run_sweep(undisturbed, SweepOptions(verbose=0)).root)
    ray.shutdown()
    lost, kept = (load_matrices_by_config(frame) for frame in (trials, reference))
    assert lost == kept


def load_matrices_by_config(trials) -> dict[tuple[float, int], list]:
    return {(row.lr, row.seed): read_final_reports(Path(row.path))[-1]["accuracy_matrix"]
            for row in trials.itertuples()}


def _nodes(folder: Path) -> list[str]:
    """The nodes a trial reported from, in order, each once."""
    seen: list[str] = []
    for report in read_reports(folder):
        if report.get("node_id") and (not seen or seen[-1] != report["node_id"]):
            seen.append(report["node_id"])
    return seen


def _checkpointed_on(root: Path, node_id: str) -> bool:
    """Whether a trial on ``node_id`` has reported a finished task (and so written a checkpoint)."""
    return any(_nodes(p.parent)[:1] == [node_id] and any(p.parent.glob("checkpoint_*"))
               for p in root.glob("grid/*/result.json"))
