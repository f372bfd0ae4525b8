"""Helpers for the bridge tests: real redis-server processes and polling."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import redis

REDIS_SERVER = shutil.which("redis-server")

StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]
"""What ``XRANGE`` returns on a client without ``decode_responses``: ``(id, fields)`` pairs."""


class RawCommands(Protocol):
    """A client's raw command interface (redis-py leaves ``execute_command`` unannotated)."""

    def execute_command(self, *args: str) -> object: ...


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server child process with its own port and data directory.

    Args:
        directory: The data directory (AOF files live here).
        port: The port; a free one by default.
        tls: ``(ca_cert, server_cert, server_key)`` files: serve TLS only.
    """

    def __init__(
        self, directory: Path, port: int | None = None, tls: tuple[Path, Path, Path] | None = None
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers ``PING``."""
        if REDIS_SERVER is None:  # pragma: no cover - guarded by the fixtures
            raise RuntimeError("redis-server is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        ports = ["--port", str(self.port)]
        if self.tls is not None:
            ca, cert, key = self.tls
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert)]
            ports += ["--tls-key-file", str(key), "--tls-ca-cert-file", str(ca)]
            ports += ["--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                *ports,
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        client = self.client(socket_connect_timeout=0.2, socket_timeout=1)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server did not start on {self.port}:\n{log}")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no final fsync) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def client(self, **options: Any) -> redis.Redis:
        options.setdefault("socket_timeout", 5)
        if self.tls is not None:
            options.update(ssl=True, ssl_ca_certs=str(self.tls[0]))
        return redis.Redis(host="127.0.0.1", port=self.port, **options)


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, step: float = 0.005) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; return its last truth."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return bool(predicate())
        time.sleep(step)
    return True


OPENSSL = shutil.which("openssl")


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1: ``(ca, cert, key)``."""
    if OPENSSL is None:  # pragma: no cover - guarded by the test
        raise RuntimeError("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    cert, key, csr = directory / "server.crt", directory / "server.key", directory / "server.csr"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run = [OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run(
        [*run, "-keyout", str(ca_key), "-out", str(ca), "-subj", "/CN=atlas-test-ca"],
        check=True,
        capture_output=True,
    )
    request = [OPENSSL, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key)]
    subprocess.run(
        [*request, "-out", str(csr), "-subj", "/CN=127.0.0.1"], check=True, capture_output=True
    )
    sign = [OPENSSL, "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key)]
    subprocess.run(
        [*sign, "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(ext)],
        check=True,
        capture_output=True,
    )
    return ca, cert, key
