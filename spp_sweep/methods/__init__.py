"""Registry of methods: name -> class. One short file per method, each behind the hook
protocol of :mod:`spp_sweep.methods.base`."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Method, Option, Step, TaskView
from .ewc import EWC
from .finetune import FineTune
from .frozen import FrozenSGD
from .joint import Joint
from .lwf import LwF
from .mas import MAS
from .sgd import SGD
from .si import SI
from .spp import SPP

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in [SPP, EWC, SI, MAS, LwF, SGD, FrozenSGD, FineTune, Joint]
}


def get_method(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}") from None


__all__ = ["METHODS", "Method", "Option", "Step", "TaskView", "get_method"]
