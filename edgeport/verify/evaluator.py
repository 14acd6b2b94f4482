"""The user's own evaluator (``--metric module:function``, ``--metric path/file.py:function``, or
``metric=callable`` in the Python API).

Contract: ``function(outputs, reference, labels)`` where ``outputs`` and ``reference`` map each
model output name to a numpy array with every eval sample concatenated along axis 0 (the
artifact's and the fp32 model's), and ``labels`` is the eval data's label array or None. It
returns the score of ``outputs`` as a number, higher is better; or ``(score, "lower")`` /
``{"score": s, "higher_is_better": False, "name": "WER"}`` to say otherwise. A function
attribute ``higher_is_better = False`` says the same. edgeport calls it on fp32's own outputs
(``outputs is reference``) and on the artifact's, and gates the drop between the two in the
score's own units (``--max_accuracy_drop``, default 1: return percentages).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core.errors import InputError, describe_exception


@dataclass
class Evaluator:
    """A loaded evaluator: the callable, its name and the direction of its score."""

    function: Callable[..., Any]
    name: str
    reference: str  # how the user named it (for the report)
    higher_is_better: bool = True

    def score(self, outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], labels: Any) -> float:
        """Call the evaluator and return its score as a float; a failing or non-numeric
        evaluator is an InputError (exit 2) naming it."""
        try:
            value = self.function(outputs, reference, labels)
        except Exception as exc:
            raise InputError(
                f"your evaluator {self.reference} raised {describe_exception(exc)}",
                hint="it is called as function(outputs, reference, labels) with dicts of numpy arrays by output name",
            ) from exc
        score, direction, name = value, None, None
        if isinstance(value, dict):
            score, direction, name = value.get("score"), value.get("higher_is_better"), value.get("name")
        elif isinstance(value, tuple) and len(value) == 2:
            score, word = value
            if word not in ("higher", "lower"):
                raise InputError(
                    f"your evaluator {self.reference} returned direction {word!r}", hint="use 'higher' or 'lower'"
                )
            direction = word == "higher"
        try:
            number = float(score)
        except (TypeError, ValueError):
            raise InputError(
                f"your evaluator {self.reference} returned {type(score).__name__}, not a number",
                hint="return a float, (float, 'higher'|'lower') or {'score': float, 'higher_is_better': bool}",
            ) from None
        if not math.isfinite(number):
            raise InputError(f"your evaluator {self.reference} returned a non-finite score ({number})")
        if direction is not None:
            self.higher_is_better = bool(direction)
        if name:
            self.name = str(name)
        return number


def _load_callable(spec: str) -> Callable[..., Any]:
    """Import ``module:function`` or execute ``path/file.py`` and take ``function`` from it."""
    target, _, attribute = spec.rpartition(":")
    if not target or not attribute:
        raise InputError(f"bad --metric {spec!r}", hint="write module:function or path/file.py:function")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise InputError(f"--metric {spec}: no file {target}")
        module_name = f"edgeport_user_metric_{abs(hash(str(path.resolve())))}"
        loader = importlib.util.spec_from_file_location(module_name, path)
        if loader is None or loader.loader is None:
            raise InputError(f"--metric {spec}: cannot load {target} as Python")
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module
        try:
            loader.loader.exec_module(module)
        except Exception as exc:
            raise InputError(f"--metric {spec}: importing {target} raised {describe_exception(exc)}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:
            raise InputError(f"--metric {spec}: cannot import {target} ({describe_exception(exc)})") from exc
    function = getattr(module, attribute, None)
    if not callable(function):
        raise InputError(f"--metric {spec}: {target} has no function {attribute!r}")
    return function


def load_evaluator(metric: str | Callable[..., Any]) -> Evaluator:
    """Return the Evaluator for ``metric``: a callable (Python API) or a ``module:function`` /
    ``file.py:function`` reference. Raises InputError when it cannot be loaded."""
    function = metric if callable(metric) else _load_callable(metric)
    name = getattr(function, "__name__", "evaluator")
    reference = metric if isinstance(metric, str) else f"{getattr(function, '__module__', '?')}:{name}"
    return Evaluator(function, name, reference, bool(getattr(function, "higher_is_better", True)))
