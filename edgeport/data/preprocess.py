"""The ``--preprocess`` spec: how raw samples become model inputs (scale, mean/std, resize, layout)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgeport.core.errors import InputError


@dataclass
class Preprocess:
    """How raw samples become model inputs (``--preprocess`` spec)."""

    scale: float | None = None  # multiply first; default 1/255 for uint8 data fed to a float input
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    resize: tuple[int, int] | None = None  # (height, width), image folders only
    layout: str | None = None  # layout of the model input: NCHW or NHWC (default: from its shape)

    def describe(self) -> str:
        """Return the spec in ``--preprocess`` syntax."""
        parts = []
        if self.scale is not None:
            parts.append(f"scale={self.scale:g}")
        if self.mean:
            parts.append("mean=" + ",".join(f"{m:g}" for m in self.mean))
        if self.std:
            parts.append("std=" + ",".join(f"{s:g}" for s in self.std))
        if self.resize:
            parts.append(f"resize={self.resize[0]},{self.resize[1]}")
        if self.layout:
            parts.append(f"layout={self.layout}")
        return ";".join(parts) or "(none)"


def parse_preprocess(spec: str | None) -> Preprocess:
    """Parse ``scale=1/255;mean=0.485,0.456,0.406;std=...;resize=224,224;layout=NCHW``."""
    result = Preprocess()
    if not spec:
        return result
    for part in (p.strip() for p in spec.split(";") if p.strip()):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        try:
            if not sep:
                raise ValueError
            if key == "scale":
                num, _, den = value.partition("/")
                result.scale = float(num) / (float(den) if den else 1.0)
            elif key in ("mean", "std"):
                setattr(result, key, [float(v) for v in re.split(r"[,\s]+", value.strip()) if v])
            elif key == "resize":
                h, w = (int(v) for v in re.split(r"[,x]", value.strip()))
                result.resize = (h, w)
            elif key == "layout":
                if value.strip().upper() not in ("NCHW", "NHWC"):
                    raise ValueError
                result.layout = value.strip().upper()
            else:
                raise InputError(f"--preprocess: unknown key {key!r}", hint="keys: scale, mean, std, resize, layout")
        except (ValueError, ZeroDivisionError) as exc:
            raise InputError(
                f"--preprocess: bad value in {part!r}",
                hint="e.g. scale=1/255;mean=0.5;std=0.5;resize=224,224;layout=NCHW",
            ) from exc
    if result.std and any(s == 0 for s in result.std):
        raise InputError("--preprocess: std must not be 0")
    return result
