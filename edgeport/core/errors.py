"""One exception family for everything the user should see as a one-line message.

The CLI prints ``message`` (and ``hint`` when there is one) without a traceback and exits
with ``exit_code``: 2 bad usage or input, 3 a gate failed, 4 the conversion failed.
"""

from __future__ import annotations


class EdgeportError(Exception):
    """Base class: a user-facing one-line message, an optional hint and an exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """Return the message and hint joined into the single line the CLI prints."""
        text = self.message.replace("\n", " ")
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class InputError(EdgeportError):
    """Bad usage or bad input: missing file, wrong suffix, corrupt model, bad shape. Exit 2."""

    exit_code = 2


class ConversionError(EdgeportError):
    """The conversion itself failed: an exporter error, an unsupported op, a parity failure. Exit 4."""

    exit_code = 4


class GateFailed(EdgeportError):
    """An accuracy or latency gate failed; the artifact was still written and marked failed. Exit 3."""

    exit_code = 3

    def __init__(self, message: str, hint: str | None = None, bundle_dir: str | None = None) -> None:
        super().__init__(message, hint)
        self.bundle_dir = bundle_dir


def describe_exception(exc: BaseException, with_type: bool = True) -> str:
    """Return ``Type: first line of the message`` (third-party messages can span pages)."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    if not with_type:
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
