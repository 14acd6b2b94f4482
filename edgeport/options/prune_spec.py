"""The ``--prune`` option: ``magnitude:0.5``, ``channels:0.3`` and per-layer targets.

Grammar: ``METHOD[:ITEM[,ITEM...]]`` where an ITEM is either a global ratio (``0.5``) or a
per-layer target ``LAYER=RATIO``. ``LAYER`` is a source layer name (``features.1.0``) or a
shell-style pattern (``features.*``). Layers with their own target are pruned exactly that
much; the others share the global target, distributed by sensitivity.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from edgeport.core.errors import InputError

METHODS = ("magnitude", "channels")
# Above this a layer keeps too little to be worth running: ratios are fractions removed.
MAX_RATIO = {"magnitude": 0.99, "channels": 0.9}

_HINT = "e.g. --prune magnitude:0.5, --prune channels:0.3 or --prune magnitude:0.5,classifier=0"


@dataclass
class PruneSpec:
    """A parsed ``--prune``: the method, the global ratio (None: only per-layer targets) and
    the per-layer targets (pattern -> ratio removed)."""

    method: str
    ratio: float | None
    layers: dict[str, float] = field(default_factory=dict)
    text: str = ""

    def fixed_ratio(self, layer: str) -> float | None:
        """Return the user's own target for ``layer`` (the first matching pattern), or None."""
        for pattern, ratio in self.layers.items():
            if layer == pattern or fnmatch.fnmatchcase(layer, pattern):
                return ratio
        return None

    def as_dict(self) -> dict:
        """JSON-ready data for the report."""
        return {"method": self.method, "ratio": self.ratio, "layers": dict(self.layers), "text": self.text}


def _ratio(text: str, method: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"bad --prune ratio {text!r} for {what}", hint=_HINT) from None
    if not 0.0 <= value <= MAX_RATIO[method]:
        raise InputError(
            f"--prune ratio {value} for {what} is out of range",
            hint=f"the fraction to remove, from 0 to {MAX_RATIO[method]} for {method}",
        )
    return value


def parse_prune(value: str) -> PruneSpec:
    """Parse ``--prune`` into a :class:`PruneSpec`; raise InputError (with an example) when malformed."""
    text = value.strip()
    method, _, rest = text.partition(":")
    method = method.strip().lower()
    if method not in METHODS:
        raise InputError(f"unknown --prune method {method!r}", hint=_HINT)
    ratio: float | None = None
    layers: dict[str, float] = {}
    for item in (i.strip() for i in rest.split(",") if i.strip()):
        if "=" in item:
            name, _, number = item.partition("=")
            if not name.strip():
                raise InputError(f"bad --prune item {item!r}: no layer name before '='", hint=_HINT)
            layers[name.strip()] = _ratio(number.strip(), method, name.strip())
        elif ratio is None:
            ratio = _ratio(item, method, "the global target")
        else:
            raise InputError(f"--prune {text!r} gives two global ratios", hint=_HINT)
    if ratio is None and not layers:
        raise InputError(f"--prune {text!r} says how to prune but not how much", hint=_HINT)
    return PruneSpec(method, ratio, layers, text)
