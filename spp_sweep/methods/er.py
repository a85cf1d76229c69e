"""Experience replay (Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning").

Every mini-batch of the current task is trained together with as many rows drawn from a small
buffer of earlier samples, minimising the mean loss over the joint batch (their section 3):
  L = 1/(B + B') [ sum_{(x,y) in batch} l(f(x), y) + sum_{(x',y') drawn} l(f_{h'}(x'), y') ],
each stored row through its own task's head (h'). The buffer is filled by reservoir sampling over
the stream (``buffer: reservoir``, ``memory`` rows in total) or after each task with ``memory``
rows of each of its classes (``buffer: class_balanced``, the default, as van de Ven et al.'s
reference code). Draws use the run's own generator; in a stack each member has its own buffer
(``memory`` may differ between members) and draws as its separate run.
"""

from __future__ import annotations

from .base import Option, Rows, Step, TaskView
from .buffer import BUFFERS, ReplayMethod


class ExperienceReplay(ReplayMethod):
    name = "er"
    summary = "Experience replay: each mini-batch trained together with rows drawn from a small buffer"
    options = {
        "memory": Option(100, "stored samples: per class (class_balanced) or in total (reservoir)", 1),
        "buffer": Option("class_balanced", "how the buffer is filled: class_balanced (after each task) or "
                         "reservoir (over the stream)", None, choices=BUFFERS),
        "replay_batch": Option(0, "rows drawn per step (0: as many as the current mini-batch)", 0),
    }

    def extra_rows(self, task: int, head: int, size: int) -> Rows | None:
        return self.draw(self.hparams["replay_batch"] or size)

    def observe(self, step: Step) -> None:
        if self.hparams["buffer"] == "reservoir":
            self.store_stream(step)

    def after_task(self, view: TaskView) -> None:
        if self.hparams["buffer"] == "class_balanced":
            self.store_task(view)
