"""Registry of methods: name -> class. One short file per method, each behind the hook
protocol of :mod:`spp_sweep.methods.base`."""

from __future__ import annotations

from ..entry_points import METHOD_GROUP, Registry
from ..errors import ConfigError
from .agem import AGEM
from .base import Method, Option, Step, TaskView
from .derpp import DERpp
from .er import ExperienceReplay
from .ewc import EWC
from .finetune import FineTune
from .frozen import FrozenSGD
from .joint import Joint
from .lwf import LwF
from .mas import MAS
from .sgd import SingleHeadSGD
from .si import SI
from .spp import SPP


def _valid_method(name: str, loaded: object) -> str | None:
    if not (isinstance(loaded, type) and issubclass(loaded, Method)):
        return "it is not a subclass of spp_sweep.methods.Method"
    return None if loaded.name == name else f"its name is {loaded.name!r}, the entry point says {name!r}"


# the built-in methods, and on first use those of other installed packages (entry points
# "spp_sweep.methods", spp_sweep/entry_points.py)
METHODS: dict[str, type[Method]] = Registry(
    {cls.name: cls for cls in [SPP, EWC, SI, MAS, LwF, SingleHeadSGD, FrozenSGD, FineTune, Joint,
                                    ExperienceReplay, AGEM, DERpp]}, METHOD_GROUP, _valid_method)


def get_method(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}") from None


__all__ = ["METHODS", "Method", "Option", "Step", "TaskView", "get_method"]
