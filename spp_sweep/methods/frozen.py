"""SGD-F (paper section 4.1): after the first task the shared layers are frozen; only new heads learn."""

from __future__ import annotations

from torch import nn

from .base import Method

_NORMS = (nn.modules.batchnorm._BatchNorm,)


class FrozenSGD(Method):
    name = "sgd_frozen"
    summary = "SGD-F: shared layers frozen after the first task, only each new head is trained"

    def trainable_parameters(self, task: int) -> list[nn.Parameter]:
        if task == 0:
            return list(self.model.parameters())
        return list(self.model.heads[min(task, len(self.model.heads) - 1)].parameters())  # its head, or the shared one

    def set_train_mode(self, task: int) -> None:
        """A frozen trunk is a fixed function: after the first task its batch-norm layers use and
        keep the first task's running statistics (in train mode they would re-estimate them on
        every new task, which is adaptation SGD-F does not have and inflates its transfer)."""
        self.model.train()
        if task > 0:
            for module in self.model.trunk.modules():
                if isinstance(module, _NORMS):
                    module.eval()
