"""The control channel between Python and the page: commands the page long-polls for, its
replies, and the errors it reports. Thread-safe: the HTTP server's threads write, the driver waits."""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeport.core.errors import ConversionError

POLL_S = 20.0  # how long the page's GET /_edgeport/next is held before a 204 (it asks again)


@dataclass
class Reply:
    """A page's reply: its content type and body."""

    content_type: str
    body: bytes

    def json(self) -> Any:
        """Return the body decoded as JSON."""
        return json.loads(self.body)


@dataclass
class Channel:
    """Commands for the page, replies by command id, blobs the page fetches, and page errors."""

    _commands: queue.Queue = field(default_factory=queue.Queue)
    _replies: dict[int, Reply] = field(default_factory=dict)
    _blobs: dict[int, bytes] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    errors: list[dict[str, Any]] = field(default_factory=list)
    ready: dict[str, Any] | None = None
    closed: bool = False

    # --- the driver's side ---
    def send(self, op: str, blob: bytes | None = None, **fields: Any) -> int:
        """Queue a command for the page; ``blob`` (npz bytes) is served at the URL in its
        ``feeds`` field. Returns the command id."""
        command_id = next(self._ids)
        if blob is not None:
            self._blobs[command_id] = blob
            fields["feeds"] = f"/_edgeport/blob/{command_id}"
        self._commands.put({"id": command_id, "op": op, **fields})
        return command_id

    def wait(
        self, command_id: int | None, timeout_s: float, step: str, check: Callable[[], str | None] | None = None
    ) -> Reply | dict[str, Any]:
        """Wait for the reply to ``command_id`` (or for the page's ready message when None).
        Raises ConversionError when the page reported an error, ``check()`` returns a reason to
        stop (the browser died) or ``step`` took over ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                if self.errors:
                    raise ConversionError(f"the page failed during {step}: {one_line(self.errors[0]['message'])}")
                if command_id is None and self.ready is not None:
                    return self.ready
                if command_id is not None and command_id in self._replies:
                    self._blobs.pop(command_id, None)
                    return self._replies.pop(command_id)
                problem = check() if check else None
                if problem:
                    raise ConversionError(f"{problem} during {step}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ConversionError(f"the browser timed out after {timeout_s:g} s during {step}")
                self._cond.wait(min(left, 0.5))

    def close(self) -> None:
        """Tell a polling page to stop and wake every waiter."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    # --- the server's side ---
    def next_command(self, wait_s: float = POLL_S) -> dict[str, Any] | None:
        """The next command for the page, or None after ``wait_s`` (or when closed)."""
        deadline = time.monotonic() + wait_s
        while not self.closed:
            try:
                return self._commands.get(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    return None
        return None

    def blob(self, command_id: int) -> bytes | None:
        """The payload of a command (None when unknown)."""
        return self._blobs.get(command_id)

    def put_reply(self, command_id: int, reply: Reply) -> None:
        """Record the page's reply to a command."""
        with self._cond:
            self._replies[command_id] = reply
            self._cond.notify_all()

    def put_error(self, error: dict[str, Any]) -> None:
        """Record an error the page reported (window.onerror, an unhandled rejection)."""
        with self._cond:
            self.errors.append(error)
            self._cond.notify_all()

    def put_ready(self, payload: dict[str, Any]) -> None:
        """Record that the page's command loop started."""
        with self._cond:
            self.ready = payload
            self._cond.notify_all()


def one_line(text: Any) -> str:
    """Return the first non-empty line of ``text`` (page errors may carry whole stacks)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"
