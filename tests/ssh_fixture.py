"""A throwaway OpenSSH server on 127.0.0.1 for the remote-verification tests.

Per run: a fresh host key and user key in a temporary folder, an ``sshd_config`` (loopback
only, a free high port, keys and pid file in that folder, ``SetEnv TMPDIR`` so the remote
temporary folders land in a folder the tests can list), and ``/usr/sbin/sshd -D`` started in
the background and stopped at teardown. Needs the Debian ``openssh-server`` package
(``apt-get install -y openssh-server``); ``find_sshd`` says why when it cannot be used.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
START_TIMEOUT_S = 10.0


@dataclass
class SshServer:
    """A running test server: port, login user, client options and the remote TMPDIR."""

    port: int
    user: str
    options: list[str]
    remote_tmp: Path
    log: Path

    def url(self, python: str) -> str:
        """Return ``ssh://user@127.0.0.1:port/<python>``."""
        return f"ssh://{self.user}@127.0.0.1:{self.port}{python}"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_sshd() -> str | None:
    """Return why the server cannot run here, or None when it can."""
    if not os.path.exists(SSHD):
        return f"{SSHD} not found (apt-get install -y openssh-server)"
    for tool in ("ssh", "scp", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install -y openssh-client)"
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        try:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
        except OSError as exc:
            return f"cannot create /run/sshd: {exc}"
    return None


@contextmanager
def ssh_server(root: Path) -> Iterator[SshServer]:
    """Start sshd on 127.0.0.1 with throwaway keys under ``root``; yield it; stop it on exit."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True, timeout=30)
    shutil.copyfile(root / "user_key.pub", root / "authorized_keys")
    (root / "user_key").chmod(0o600)
    remote_tmp = root / "remote_tmp"
    remote_tmp.mkdir()
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {root / 'host_key'}",
                f"AuthorizedKeysFile {root / 'authorized_keys'}",
                f"PidFile {root / 'sshd.pid'}",
                "StrictModes no",
                "UsePAM no",
                "PermitRootLogin yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "Subsystem sftp internal-sftp",
                f"SetEnv TMPDIR={remote_tmp}",
                "",
            ]
        )
    )
    options = [
        "-F",
        "/dev/null",
        "-i",
        str(root / "user_key"),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={root / 'known_hosts'}",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        "LogLevel=ERROR",
    ]
    log = root / "sshd.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log_file, stderr=log_file)
    server = SshServer(port, getpass.getuser(), options, remote_tmp, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            probe = subprocess.run(
                ["ssh", *options, "-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "-p", str(port),
                 f"{server.user}@127.0.0.1", "true"],
                capture_output=True,
                text=True,
                timeout=10,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if probe.returncode == 0:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {log.read_text()[-500:]} {probe.stderr[-300:]}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
