"""coremltools itself: importing it (quietly, naming the extra when it is missing), switching on
its TensorFlow 2 frontend, and silencing its progress output."""

from __future__ import annotations

import contextlib
import importlib
import io

from edgeport.core.extras import missing_extra
from edgeport.runtime import coreml as coreml_runtime


def import_coremltools():
    """Import coremltools quietly (``runtime/coreml.py``) and return it; InputError (exit 2)
    naming the extra to install when it is missing."""
    try:
        return coreml_runtime.import_coremltools()
    except coreml_runtime.CoreMLMissing as exc:
        raise missing_extra("Core ML export", "coreml") from exc


def enable_tf_frontend(ct) -> str:
    """Make coremltools' TensorFlow 2 frontend usable in this process; return the TF version.

    When coremltools was imported with TensorFlow hidden (:func:`import_coremltools`), it
    registered no TF ops and its converter entry point believes TF is absent: both are
    switched on here, once (the same imports coremltools runs at start-up when TF is present).
    """
    import coremltools._deps as deps
    import tensorflow as tf

    if not deps._HAS_TF_2:
        deps._HAS_TF = deps._HAS_TF_2 = True
        with quiet():
            from coremltools.converters import _converters_entry as entry
            from coremltools.converters.mil.frontend import tensorflow as tf_frontend
            from coremltools.converters.mil.frontend import tensorflow2 as tf2_frontend

            importlib.reload(tf_frontend)  # registers the TF ops
            importlib.reload(tf2_frontend)  # registers the TF2-only ops
            from coremltools.converters.mil.frontend.tensorflow2.load import TF2Loader

        entry._HAS_TF_2, entry.tf, entry.TF2Loader = True, tf, TF2Loader
    return tf.__version__


@contextlib.contextmanager
def quiet():
    """Silence coremltools' progress bars and prints (they would tear the CLI's progress display)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
