"""Run a bundle's artifact on another machine over SSH, with the system OpenSSH client.

``ssh``/``scp`` are run as subprocesses, so the user's ``~/.ssh/config``, keys, agent and jump
hosts apply. A target is ``ssh://user@host[:port][/path/to/python]`` (default python:
``python3`` on the device's PATH). Extra client options come from ``ssh_options`` or the
``EDGEPORT_SSH_OPTIONS`` environment variable (shell words, e.g. ``-F cfg -i key``); they must be
options both ``ssh`` and ``scp`` take (``-F``, ``-i``, ``-J``, ``-o``).

The run: ``mktemp -d`` on the device, ``scp`` of the harness with the part of edgeport it
runs (:func:`stage_harness`: the runners of ``edgeport/runtime`` as they are, numpy + the
runtime only), the model files and the inputs, one ``ssh`` running the harness (the remote
shell removes the folder when it exits, also on a hang-up), then a final ``rm -rf`` in a
``finally`` in case the connection dropped. Every failure is a one-line ``RemoteError``.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from edgeport.core.errors import EdgeportError, InputError
from edgeport.verify.harness import shipped_runtime

HARNESS = Path(__file__).resolve().parent / "harness.py"
PACKAGE = Path(__file__).resolve().parents[1]  # the edgeport package folder
# The device's edgeport/__init__.py: the real one imports the API, i.e. the whole converter.
PACKAGE_STUB = '''"""edgeport's runners as `edgeport verify --runner ssh://` ships them: numpy + the runtime only."""

import os

# As in the real package: ONNX Runtime's telemetry would write a file outside the run's folder.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
'''
REMOTE_PREFIX = "edgeport-verify."
CONNECT_TIMEOUT_S = 10
COPY_TIMEOUT_S = 300
RUN_TIMEOUT_S = 900
CLEANUP_TIMEOUT_S = 30


class RemoteError(EdgeportError):
    """The device could not be reached, or the run on it failed. Exit 5."""

    exit_code = 5


@dataclass
class SshTarget:
    """Where to run: user, host, port (None: the ssh config's) and the device's python."""

    user: str | None
    host: str
    port: int | None
    python: str

    @property
    def destination(self) -> str:
        """``user@host`` (or ``host``) for ssh and scp."""
        return f"{self.user}@{self.host}" if self.user else self.host

    def label(self) -> str:
        """``user@host:port`` as shown in messages."""
        return self.destination + (f":{self.port}" if self.port else "")

    def url(self) -> str:
        """The ``ssh://`` form of this target."""
        path = self.python if self.python.startswith("/") else ""
        return f"ssh://{self.label()}{path}"


def parse_target(url: str) -> SshTarget:
    """Parse ``ssh://user@host[:port][/path/to/python]``; raise InputError when it is not one."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise InputError(f"--runner {url!r} is not 'local' or ssh://user@host[:port][/path/to/python]")
    try:
        port = parts.port
    except ValueError as exc:
        raise InputError(f"--runner {url!r}: bad port") from exc
    if parts.query or parts.fragment or parts.password:
        raise InputError(f"--runner {url!r}: no password, query or fragment allowed (use ssh keys or an agent)")
    python = unquote(parts.path) if parts.path not in ("", "/") else "python3"
    return SshTarget(unquote(parts.username) if parts.username else None, parts.hostname, port, python)


def ssh_base_options(target: SshTarget, extra: list[str] | None = None) -> list[str]:
    """Options given to both ssh and scp: batch mode, timeouts, keep-alives, the port, extras."""
    options = [
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={CONNECT_TIMEOUT_S}",
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=3",
    ]
    if target.port:
        options += ["-o", f"Port={target.port}"]
    env_options = os.environ.get("EDGEPORT_SSH_OPTIONS", "")
    options += shlex.split(env_options) if env_options else []
    options += list(extra or [])
    return options


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


class _Session:
    """One device: runs ssh/scp with the shared options and turns failures into RemoteError."""

    def __init__(self, target: SshTarget, options: list[str], timeout: float) -> None:
        self.target = target
        self.options = options
        self.timeout = timeout

    def _run(self, argv: list[str], what: str, timeout: float) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise RemoteError(f"{argv[0]} not found: the ssh runner needs the OpenSSH client on this machine") from exc
        except subprocess.TimeoutExpired as exc:
            raise RemoteError(f"{what} on {self.target.label()} timed out after {timeout:g} s") from exc

    def _connection_error(self, what: str, result: subprocess.CompletedProcess) -> RemoteError:
        detail = _last_line(result.stderr) or f"exit code {result.returncode}"
        return RemoteError(f"{what} on {self.target.label()} failed: {detail}")

    def ssh(self, command: str, what: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run ``command`` (a shell line) on the device; raise RemoteError on an ssh failure (255)."""
        argv = ["ssh", *self.options, self.target.destination, command]
        result = self._run(argv, what, timeout or self.timeout)
        if result.returncode == 255:
            raise self._connection_error(what, result)
        return result

    def upload(self, files: list[Path], remote_dir: str) -> None:
        """Copy ``files`` into ``remote_dir`` on the device."""
        sources = [*map(str, files), f"{self.target.destination}:{remote_dir}/"]
        # A Core ML .mlpackage is a folder: copy recursively.
        flags = ["-q", "-r"] if any(Path(f).is_dir() for f in files) else ["-q"]
        result = self._run(
            ["scp", *flags, *self.options, *sources], "copying the files", min(self.timeout, COPY_TIMEOUT_S)
        )
        if result.returncode != 0 and "connection closed" in result.stderr.lower():
            # OpenSSH >= 9 scp speaks SFTP; a device without an sftp server takes the legacy protocol (-O).
            result = self._run(
                ["scp", *flags, "-O", *self.options, *sources], "copying the files", min(self.timeout, COPY_TIMEOUT_S)
            )
        if result.returncode != 0:
            raise self._connection_error("copying the files", result)


def _module_file(name: str) -> Path:
    """The source file of edgeport module ``name`` (a package's ``__init__.py``)."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _edgeport_imports(path: Path) -> set[str]:
    """The edgeport modules ``path`` imports, function-level imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:  # `from edgeport.core import errors` imports a module
                module = f"{node.module}.{alias.name}"
                found.add(module if _module_file(module).is_file() else node.module)
    return {name for name in found if name.startswith("edgeport.")}


def shipped_modules() -> list[str]:
    """Return the edgeport modules a device needs to run the harness: every module of
    ``edgeport/runtime``, and what they and the harness import in turn (the harness itself is
    shipped beside the package, and ``edgeport/__init__.py`` as a stub)."""
    runners = [f"edgeport.runtime.{p.stem}" for p in sorted((PACKAGE / "runtime").glob("*.py")) if p.stem != "__init__"]
    todo = [*_edgeport_imports(HARNESS), *runners]
    found: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(_edgeport_imports(_module_file(name)))
    return sorted(found)


def stage_harness(folder: Path) -> list[Path]:
    """Write ``harness.py`` and the ``edgeport`` package it runs (:func:`shipped_modules`, the
    packages' own ``__init__.py`` files, a stub for the top one) into ``folder``.

    Returns the two paths to copy to the device: ``folder/harness.py`` and ``folder/edgeport``.
    """
    shutil.copyfile(HARNESS, folder / "harness.py")
    for name in shipped_modules():
        source = _module_file(name)
        target = folder / source.relative_to(PACKAGE.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    root = folder / "edgeport"
    for package in [p for p in root.rglob("*") if p.is_dir()]:
        if not (package / "__init__.py").exists():
            shutil.copyfile(PACKAGE / package.relative_to(root) / "__init__.py", package / "__init__.py")
    (root / "__init__.py").write_text(PACKAGE_STUB)
    return [folder / "harness.py", root]


def run_remote(
    target: str | SshTarget,
    artifact: dict[str, Any],
    reference: dict[str, Any] | None,
    model_files: list[Path],
    feeds: dict[str, np.ndarray],
    output_names: list[str],
    *,
    threads: int = 1,
    runs: int = 100,
    warmup: int = 10,
    latency_batch: int = 1,
    ssh_options: list[str] | None = None,
    timeout: float = RUN_TIMEOUT_S,
    batch_axes: dict[str, int | None] | None = None,
) -> dict[str, Any]:
    """Run ``artifact`` (and ``reference``, each ``{kind, file, kwargs}`` naming a file among
    ``model_files``) on the device over SSH, on ``feeds``.

    Returns ``{"device", "runtime", "latency", "load_time_s", "outputs", "reference_outputs",
    "target"}`` where outputs are lists of arrays in ``output_names`` order (reference_outputs
    is None without a reference). Raises RemoteError (one line) when the device cannot be
    reached, lacks a package (the message names what to ``pip install`` there), times out or
    the harness crashes; the remote temporary folder is removed in every case.
    ``batch_axes``: per input, the axis the latency batch is cut from (default axis 0).
    """
    target = parse_target(target) if isinstance(target, str) else target
    for spec in [artifact, reference] if reference else [artifact]:
        try:  # before connecting: a runner that cannot ship fails here, in one line
            shipped_runtime(spec["kind"])
        except ValueError as exc:
            raise InputError(f"cannot verify on {target.label()}: {exc}") from exc
    session = _Session(target, ssh_base_options(target, ssh_options), timeout)
    job = {
        "artifact": artifact,
        "reference": reference,
        "inputs": "inputs.npz",
        "input_names": list(feeds),
        "output_names": output_names,
        "threads": threads,
        "runs": runs,
        "warmup": warmup,
        "latency_batch": latency_batch,
        "batch_axes": batch_axes,  # where each input holds its batch (None: no batch axis)
    }
    with tempfile.TemporaryDirectory(prefix="edgeport-remote-") as work_name:
        work = Path(work_name)
        np.savez(work / "inputs.npz", **feeds)
        (work / "job.json").write_text(json.dumps(job))
        harness = stage_harness(work)
        made = session.ssh(
            f'mktemp -d "${{TMPDIR:-/tmp}}/{REMOTE_PREFIX}XXXXXXXX"', "creating a temporary folder", CLEANUP_TIMEOUT_S
        )
        remote_dir = made.stdout.strip()
        if made.returncode != 0 or not remote_dir.startswith("/") or "\n" in remote_dir:
            raise RemoteError(
                f"creating a temporary folder on {target.label()} failed: {_last_line(made.stderr) or remote_dir!r}"
            )
        try:
            session.upload([*harness, work / "job.json", work / "inputs.npz", *model_files], remote_dir)
            quoted = shlex.quote(remote_dir)
            command = (
                f'd={quoted}; trap \'rm -rf "$d"\' EXIT HUP INT TERM; cd "$d" || exit 97; '
                f"{shlex.quote(target.python)} harness.py job.json"
            )
            result = session.ssh(f"sh -c {shlex.quote(command)}", "running the harness")
        finally:
            try:  # the trap removed it unless the connection dropped first; removing again is harmless
                session.ssh(f"rm -rf {shlex.quote(remote_dir)}", "removing the temporary folder", CLEANUP_TIMEOUT_S)
            except RemoteError:
                pass
    return _parse_result(result, target, artifact, reference, output_names)


def _parse_result(
    result: subprocess.CompletedProcess,
    target: SshTarget,
    artifact: dict[str, Any],
    reference: dict[str, Any] | None,
    output_names: list[str],
) -> dict[str, Any]:
    document: dict[str, Any] | None = None
    for line in reversed(result.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                document = json.loads(line)
            except ValueError:
                document = None
            break
    where = target.label()
    code = result.returncode
    if document is not None and document.get("missing"):
        missing = document["missing"]
        raise RemoteError(
            f"the python on {where} ({target.python}) lacks {', '.join(missing)}",
            hint=f"run `{target.python} -m pip install {' '.join(missing)}` on the device",
        )
    if document is not None and not document.get("ok", False):
        raise RemoteError(f"the harness failed on {where}: {document.get('error', 'unknown error')}")
    if document is None or code != 0:
        if code == 127:
            raise RemoteError(
                f"no python at {target.python!r} on {where}",
                hint="give the device's python in the runner, e.g. ssh://user@host/usr/bin/python3",
            )
        if code == 97:
            raise RemoteError(f"the temporary folder on {where} vanished before the run")
        if code > 128 or code < 0:
            signal_number = code - 128 if code > 128 else -code
            raise RemoteError(f"the harness crashed on {where} (killed by signal {signal_number})")
        detail = _last_line(result.stderr) or "no output"
        raise RemoteError(f"the harness failed on {where} (exit code {code}): {detail}")
    try:
        with np.load(io.BytesIO(base64.b64decode(document["outputs_npz_b64"]))) as data:
            outputs = [data[f"artifact/{name}"] for name in output_names]
            reference_outputs = [data[f"reference/{name}"] for name in output_names] if reference else None
    except (KeyError, ValueError, OSError) as exc:
        raise RemoteError(f"the harness on {where} returned unreadable outputs: {exc}") from exc
    return {
        "target": target.url(),
        "device": document["device"],
        "runtime": document["runtime"],
        "latency": document["latency"],
        "load_time_s": document["load_time_s"],
        "outputs": outputs,
        "reference_outputs": reference_outputs,
    }
