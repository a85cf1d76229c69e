"""One look per method across every figure: display name, colour and marker.

Colours are the Okabe-Ito palette (distinguishable under the common colour-vision
deficiencies); each method keeps its colour in every figure and report, whichever methods a
sweep happens to contain. The penalty step of the quadratic methods is a line style.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Look:
    name: str
    colour: str
    marker: str


LOOKS: dict[str, Look] = {
    "spp": Look("SPP", "#D55E00", "o"),          # vermillion: the paper's method stands out
    "ewc": Look("EWC", "#0072B2", "s"),          # blue
    "mas": Look("MAS", "#009E73", "^"),          # bluish green
    "si": Look("SI", "#CC79A7", "D"),            # reddish purple
    "lwf": Look("LwF", "#E69F00", "v"),          # orange
    "finetune": Look("Fine-tuning", "#555555", "P"),
    "joint": Look("Joint", "#000000", "*"),
    "sgd": Look("SGD", "#56B4E9", "X"),          # sky blue
    "sgd_frozen": Look("SGD-F", "#8C6D31", "h"),  # brown
    # replay, from Paul Tol's muted palette (the Okabe-Ito colours are taken above)
    "er": Look("ER", "#882255", "<"),            # wine
    "agem": Look("A-GEM", "#332288", ">"),       # indigo
    "derpp": Look("DER++", "#44AA99", "p"),      # teal
}
_FALLBACK = ("#999999", "#F0E442", "#DDCC77")  # colours no built-in method has
STEP_LINES: dict[str, Any] = {"explicit": "-", "implicit": "--", "-": "-"}
STEP_NAMES = {"explicit": "explicit step", "implicit": "implicit step"}


def look(method: str) -> Look:
    """The method's look; a method this file does not know gets a grey-ish fallback by name."""
    if method in LOOKS:
        return LOOKS[method]
    return Look(method, _FALLBACK[sum(map(ord, method)) % len(_FALLBACK)], "o")


def display_name(method: str, step: str | None = None) -> str:
    """``SPP`` or, where the penalty step tells two curves apart, ``SPP (implicit step)``."""
    name = look(method).name
    return f"{name} ({STEP_NAMES[step]})" if step in STEP_NAMES else name
