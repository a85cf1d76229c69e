"""Fine-tuning (paper section 4.1): one head per task, shared layers trained on, no regulariser."""

from __future__ import annotations

from .base import Method


class FineTune(Method):
    name = "finetune"
    summary = "SGD with one head per task, shared layers fine-tuned, no regulariser"
