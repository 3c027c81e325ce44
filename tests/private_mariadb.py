"""A MariaDB server of a test's own (private datadir, port and socket), so that a test may stop and restart it
without touching the shared server other runs use. Started as scripts/lib.sh starts the shared one."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pymysql

#: Bounds on the server's start and stop (a loaded machine is slow, never this slow).
START_SECONDS, STOP_SECONDS = 60.0, 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError(f"{name} is not installed (Debian: mariadb-server)")
    return found


class PrivateMariaDB:
    """`start()`, `stop()`, `restart()`; `params` are pymysql keywords for root over TCP."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.datadir, self.socket, self.log = root / "data", root / "mariadb.sock", root / "mariadbd.log"
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run([_binary("mariadb-install-db"), "--no-defaults", f"--datadir={self.datadir}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=START_SECONDS)

    @property
    def params(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "user": "root", "password": ""}

    def start(self) -> None:
        """Start the server and wait (bounded) until it answers."""
        self.socket.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [_binary("mariadbd"), "--no-defaults", f"--datadir={self.datadir}", "--user=root",
                 "--bind-address=127.0.0.1", f"--port={self.port}", f"--socket={self.socket}",
                 f"--pid-file={self.root / 'mariadbd.pid'}", f"--log-error={self.log}", "--skip-name-resolve",
                 "--skip-log-bin", "--innodb-flush-log-at-trx-commit=2", "--innodb-buffer-pool-size=64M",
                 "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited during start-up: {self.log.read_text()[-2000:]}")
            try:
                pymysql.connect(**self.params, connect_timeout=2).close()
                return
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mariadbd did not answer within {START_SECONDS:g} s") from None
                time.sleep(0.05)  # polling the server's readiness, not guessing a duration

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM: a clean shutdown; SIGKILL: a crash) and wait until it is gone."""
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_SECONDS)
        self.proc = None

    def restart(self, sig: signal.Signals = signal.SIGTERM) -> float:
        """Stop then start again; returns the seconds the server was away."""
        started = time.monotonic()
        self.stop(sig)
        self.start()
        return time.monotonic() - started
