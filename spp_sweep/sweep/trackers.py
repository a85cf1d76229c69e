"""Where researchers already watch sweeps: TensorBoard, MLflow and Weights & Biases.

Each trial reports once per task, so every tracker's step is the task index: a run's curve
in TensorBoard, MLflow or W&B is ACC (and BWT, FWT, SMT at the end) as tasks are added.

* TensorBoard needs nothing extra: Ray Tune writes event files into every trial folder
  (tensorboardX comes with ``ray[tune]``); ``--tensorboard`` checks that and says where to look.
* MLflow (``--mlflow URI``) and W&B (``--wandb PROJECT``) go through Ray Tune's own logger
  callbacks. Their clients are optional extras (``pip install 'spp-sweep[mlflow]'`` /
  ``'spp-sweep[wandb]'``); a missing one is a one-line error before any trial. W&B honours
  ``WANDB_MODE=offline`` (runs kept on disk, ``wandb sync`` later) and ``WANDB_API_KEY``.

The callbacks are part of the experiment Ray Tune saves, so a resumed sweep keeps the trackers
it was started with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

# Report fields that are lists or bookkeeping, not metrics to chart.
NOT_METRICS = ("accuracy_matrix", "accuracy_row", "initial_accuracy", "validation_matrix", "validation_row",
               "node_id", "device", "threads", "replayed", "status", "penalty_step", "diverged_at_task")


@dataclass(frozen=True)
class Trackers:
    """Which trackers a sweep logs to (all off by default)."""

    tensorboard: bool = False
    mlflow: str | None = None  # tracking URI: sqlite:///path/mlflow.db, http://host:5000, databricks ...
    wandb: str | None = None  # project name

    def check(self) -> None:
        """The clients each asked-for tracker needs are importable (else one line naming the extra)."""
        for wanted, module, extra in [(self.tensorboard, "tensorboardX", "ray[tune]"),
                                      (self.mlflow, "mlflow", "spp-sweep[mlflow]"),
                                      (self.wandb, "wandb", "spp-sweep[wandb]")]:
            if not wanted:
                continue
            try:
                __import__(module)
            except ImportError:
                raise ConfigError(f"the {module} client is not installed; pip install '{extra}'") from None
        if self.mlflow:  # an unreachable or refused store: one line now, not a traceback in every trial
            import mlflow

            _check_mlflow_uri(self.mlflow)
            try:
                mlflow.MlflowClient(tracking_uri=self.mlflow).search_experiments(max_results=1)
            except Exception as error:  # MlflowException, connection errors, a bad URI scheme...
                reason = " ".join(str(error).split())[:300]
                raise ConfigError(f"--mlflow {self.mlflow} cannot be used ({reason}); for a local store give "
                                  "sqlite:///PATH/mlflow.db") from None

    def callbacks(self, experiment: str, phase: str) -> list[Any]:
        """Ray Tune callbacks for one phase (TensorBoard's is Ray's default, always on)."""
        found: list[Any] = []
        if self.mlflow:
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            found.append(MLflowLoggerCallback(tracking_uri=self.mlflow, experiment_name=experiment,
                                              tags={"phase": phase}, save_artifact=False))
        if self.wandb:
            from ray.air.integrations.wandb import WandbLoggerCallback

            found.append(WandbLoggerCallback(project=self.wandb, group=f"{experiment}/{phase}",
                                             excludes=list(NOT_METRICS), log_config=True))
        return found


REACH_TIMEOUT_S = 3.0  # how long --mlflow http://HOST:PORT may take to accept a connection


def _check_mlflow_uri(uri: str) -> None:
    """What MLflow's client would only find out after minutes of retries (about 250 s for a
    server that does not answer), said in one line within seconds: the URI schemes that work
    (sqlite:///PATH, http(s)://HOST:PORT, databricks; MLflow 3 refuses file:// and plain paths
    as tracking stores) and whether an http server accepts connections at all."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        raise ConfigError(f"--mlflow {uri}: MLflow 3 no longer takes a folder as its tracking store; give "
                          "sqlite:///PATH/mlflow.db (a local file) or http://HOST:PORT (a tracking server)")
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname or "localhost", port), timeout=REACH_TIMEOUT_S).close()
        except OSError as error:
            raise ConfigError(f"--mlflow {uri}: no tracking server answers at {parsed.hostname}:{port} "
                              f"({error}); start it (mlflow server --port {port}) or fix the URI") from None
