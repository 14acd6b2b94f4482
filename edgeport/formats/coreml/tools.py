"""coremltools itself: importing it (quietly, naming the extra when it is missing), switching on
its TensorFlow 2 frontend, and silencing its progress output."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging

from edgeport.core import quiet as quiet_output
from edgeport.core.extras import missing_extra
from edgeport.runtime import coreml as coreml_runtime


def import_coremltools():
    """Import coremltools quietly (``runtime/coreml.py``) and return it; InputError (exit 2)
    naming the extra to install when it is missing."""
    try:
        ct = coreml_runtime.import_coremltools()
    except coreml_runtime.CoreMLMissing as exc:
        raise missing_extra("Core ML export", "coreml") from exc
    if quiet_output.debug_enabled():  # --debug: coremltools' warnings on the terminal again
        logging.getLogger("coremltools").setLevel(logging.WARNING)
    return ct


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
    """Keep coremltools' progress bars and prints off the terminal (they would tear the CLI's
    progress display): their text goes to the run's captured log (:mod:`edgeport.core.quiet`),
    and to the terminal with ``--debug``."""
    if quiet_output.debug_enabled():
        yield
        return
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        quiet_output.append_log("coremltools", out.getvalue() + err.getvalue())
