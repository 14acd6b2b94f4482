"""Finding and launching a headless Chromium on a URL, and killing it (with every child) after.

No driver library: the page talks back to edgeport's own server (``server.py``), so Chromium
only has to open one URL. The flags keep it offline (no component updates, sync, QUIC or
background requests) and give each launch a fresh profile.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgeport.core.errors import InputError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",  # edgeport may run as root (CI containers), where the sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--mute-audio",
)
# WebGPU in headless Chromium: --enable-unsafe-webgpu is the one flag needed (measured here,
# Chromium 156 on Linux without a GPU: it then offers Dawn's SwiftShader adapter, vendor "google",
# architecture "swiftshader", isFallbackAdapter true; without it requestAdapter() returns null).
# Vulkan/ANGLE flags added nothing and logged vkCreateInstance errors. --disable-gpu is left out:
# it removes the GPU process that WebGPU runs in.
WEBGPU_FLAGS = ("--enable-unsafe-webgpu",)


def find_chromium() -> Path:
    """Return the browser to run: ``$EDGEPORT_CHROMIUM``, else the first of :data:`CANDIDATES` on
    PATH. Raises InputError naming what was tried."""
    env = os.environ.get("EDGEPORT_CHROMIUM", "").strip()
    if env:
        path = Path(env).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise InputError(
            f"no Chromium found: EDGEPORT_CHROMIUM={env} is not an executable file", hint="apt-get install chromium"
        )
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise InputError(f"no Chromium found on PATH (tried {', '.join(CANDIDATES)})", hint="apt-get install chromium")


def flags_for(backend: str) -> list[str]:
    """Return the command-line flags for a page running ``backend`` (wasm or webgpu)."""
    if backend == "webgpu":
        return [f for f in BASE_FLAGS if f != "--disable-gpu"] + list(WEBGPU_FLAGS)
    return list(BASE_FLAGS)


@dataclass
class Browser:
    """A running headless Chromium: its process, profile folder and stderr log."""

    process: subprocess.Popen
    profile: Path
    log: Path
    _closed: bool = field(default=False)

    def stderr_tail(self, lines: int = 5) -> str:
        """Return the last ``lines`` lines Chromium wrote to stderr."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def alive(self) -> bool:
        """Return whether the browser process is still running."""
        return self.process.poll() is None

    def close(self) -> None:
        """Kill the browser's whole process group (renderers, GPU and utility processes included)
        and remove its profile folder."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        shutil.rmtree(self.profile.parent, ignore_errors=True)


def launch(url: str, backend: str = "wasm", extra_flags: tuple[str, ...] = ()) -> Browser:
    """Start headless Chromium on ``url`` in a new process group with a fresh profile; return it.
    Raises InputError when no browser is found or it cannot start."""
    binary = find_chromium()
    work = Path(tempfile.mkdtemp(prefix="edgeport-chromium-"))
    profile, log = work / "profile", work / "stderr.log"
    command = [str(binary), *flags_for(backend), *extra_flags, f"--user-data-dir={profile}", url]
    try:
        with open(log, "wb") as err:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
            )
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise InputError(f"cannot start {binary}: {exc.strerror or exc}", hint="apt-get install chromium") from None
    return Browser(process, profile, log)
