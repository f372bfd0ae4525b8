"""The ``atlas-events`` command line: help texts, ``demo``, ``serve``."""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import httpx
import pytest

from atlas_events import EventBus, cli
from atlas_events.web import is_loopback

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``main(argv)``; return (exit status, stdout, stderr)."""
    try:
        status = cli.main(argv)
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


# ------------------------------------------------------------------------- help


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` names both commands with a one-line summary each."""
    status, out, _ = run(["--help"], capsys)
    assert status == 0
    assert "usage: atlas-events" in out
    assert "demo" in out
    assert "serve" in out
    assert "live dashboard" in out


def test_serve_help_reads_well(capsys: pytest.CaptureFixture[str]) -> None:
    """``serve --help`` explains sources, defaults, examples and security."""
    status, out, _ = run(["serve", "--help"], capsys)
    assert status == 0
    for text in (
        "--demo",
        "--app MODULE:BUS",
        "default: 127.0.0.1",
        "default: 8765",
        "$ATLAS_EVENTS_TOKEN",
        "--max-clients N",
        "HTTP 503",
        "--heartbeat SECONDS",
        "examples:",
        "myproject.events:bus",
        "security:",
    ):
        assert text in out, text
    assert max(len(line) for line in out.splitlines()) <= 80


def test_demo_help_mentions_redis(capsys: pytest.CaptureFixture[str]) -> None:
    """``demo --help`` documents --seed and --redis."""
    status, out, _ = run(["demo", "--help"], capsys)
    assert status == 0
    assert "--seed SEED" in out
    assert "--redis URL" in out


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    """No command is a usage error."""
    status, _, err = run([], capsys)
    assert status == 2
    assert "COMMAND" in err


# ------------------------------------------------------------------------- demo


def test_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """``demo`` prints the narrated demo and exits 0."""
    status, out, _ = run(["demo", "--seed", "3"], capsys)
    assert status == 0
    assert "Timeline" in out
    assert "Stats" in out


def test_demo_redis_calls_the_bridge_demo(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``demo --redis URL`` hands URL and stdout to bridges.demo.run_redis_demo."""
    calls: list[tuple[str, TextIO]] = []
    fake = types.ModuleType("atlas_events.bridges.demo")

    def run_redis_demo(url: str, out: TextIO) -> int:
        calls.append((url, out))
        out.write("redis demo ran\n")
        return 3

    fake.run_redis_demo = run_redis_demo  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "atlas_events.bridges.demo", fake)
    status, out, _ = run(["demo", "--redis", "redis://127.0.0.1:6379/0"], capsys)
    assert status == 3
    assert calls[0][0] == "redis://127.0.0.1:6379/0"
    assert "redis demo ran" in out


def test_demo_redis_without_the_bridge_explains(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the bridge cannot be imported, ``demo --redis`` says how to get it."""
    monkeypatch.setitem(sys.modules, "atlas_events.bridges.demo", None)
    status, _, err = run(["demo", "--redis", "redis://x"], capsys)
    assert status == 1
    assert "pip install 'atlas-events[redis]'" in err


# ------------------------------------------------------------ serve: arguments


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve"], "one of the arguments --demo --app is required"),
        (["serve", "--demo", "--app", "m:b"], "not allowed with"),
        (["serve", "--demo", "--port", "70000"], "between 0 and 65535"),
        (["serve", "--demo", "--port", "web"], "expected a port number"),
        (["serve", "--demo", "--max-clients", "0"], "at least 1"),
        (["serve", "--demo", "--heartbeat", "-1"], "0 or more"),
        (["serve", "--demo", "--heartbeat", "inf"], "finite"),
        (["serve", "--demo", "--send-timeout", "0"], "positive number of seconds"),
        (["serve", "--demo", "--send-timeout", "soon"], "expected a number of seconds"),
        (["serve", "--app", "no_colon"], "--app takes MODULE:BUS"),
        (["serve", "--app", "surely_not_a_module_xyz:bus"], "cannot import"),
    ],
)
def test_serve_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mistakes exit with status 2 and a message that names the problem."""
    status, _, err = run(argv, capsys)
    assert status == 2
    assert message in err


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module ``userbus`` in the current directory, with a bus, a factory and a non-bus."""
    name = f"userbus_{os.getpid()}_{id(tmp_path)}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from atlas_events import EventBus, EventType

            bus = EventBus(name="user-bus")
            bus.publish(EventType.SYSTEM_INIT, {"hello": "world", "password": "p"})

            class Holder:
                inner = bus

            def make_bus():
                return EventBus(name="made")

            not_a_bus = 42
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield name
    sys.modules.pop(name, None)


def test_load_bus_from_module(app_module: str) -> None:
    """MODULE:BUS finds an instance, a dotted attribute or a factory, from the cwd."""
    bus = cli._load_bus(f"{app_module}:bus")
    assert isinstance(bus, EventBus)
    assert bus.name == "user-bus"
    assert cli._load_bus(f"{app_module}:Holder.inner") is bus
    assert cli._load_bus(f"{app_module}:make_bus").name == "made"
    with pytest.raises(cli._Usage, match="not an EventBus"):
        cli._load_bus(f"{app_module}:not_a_bus")
    with pytest.raises(cli._Usage, match="no attribute"):
        cli._load_bus(f"{app_module}:missing")


def test_loopback_detection() -> None:
    """Only loopback addresses count as private to this machine."""
    for host in ("127.0.0.1", "127.0.0.2", "127.255.0.9", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    assert is_loopback("::ffff:127.0.0.1")
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org", "localhost.example.org"):
        assert not is_loopback(host), host


def serve_in_thread(argv: list[str]) -> tuple[threading.Thread, threading.Event, io.StringIO]:
    """Run ``serve`` in a thread (no signal handlers there); stop it with the event."""
    parser = cli.build_parser()
    args: argparse.Namespace = parser.parse_args(argv)
    out = io.StringIO()
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(cli._serve(args, out, stop)))
    thread.start()
    return thread, stop, out


def printed_url(out: io.StringIO, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in out.getvalue().splitlines():
            if line.strip().startswith("http://"):
                return line.strip()
        time.sleep(0.02)
    pytest.fail(f"no URL printed: {out.getvalue()!r}")


def test_serve_app_with_token(app_module: str) -> None:
    """``serve --app`` serves the user's bus; the token protects it; redaction is on."""
    thread, stop, out = serve_in_thread(
        ["serve", "--app", f"{app_module}:bus", "--port", "0", "--token", "tok"]
    )
    try:
        url = printed_url(out)
        assert url.endswith("/?token=tok")
        base = url.split("/?")[0]
        assert "bus 'user-bus'" in out.getvalue()
        assert httpx.get(f"{base}/stats").status_code == 401
        history = httpx.get(f"{base}/history?token=tok").json()["events"]
        assert history[0]["data"] == {"hello": "world", "password": "***"}
        evil = httpx.get(f"{base}/stats?token=tok", headers={"Host": "evil.example"})
        assert evil.status_code == 400  # DNS-rebinding guard on a loopback bind
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert out.getvalue().endswith("stopped\n")


def test_serve_on_all_interfaces_generates_a_token(app_module: str) -> None:
    """Listening beyond loopback without --token makes one up and prints it."""
    thread, stop, out = serve_in_thread(
        ["serve", "--app", f"{app_module}:bus", "--host", "0.0.0.0", "--port", "0", "--no-redact"]
    )
    try:
        url = printed_url(out)
        assert "generated an access token" in out.getvalue()
        token = url.split("?token=")[1]
        assert len(token) >= 20
        port = url.split(":")[2].split("/")[0]
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/stats").status_code == 401
        history = httpx.get(f"{base}/history", params={"token": token}).json()["events"]
        assert history[0]["data"]["password"] == "p"  # --no-redact
    finally:
        stop.set()
        thread.join(10)


def test_serve_reports_a_busy_port(app_module: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A port already in use is a clear error (status 1), not a traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _, err = run(["serve", "--app", f"{app_module}:bus", "--port", str(port)], capsys)
    assert status == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err


# ------------------------------------------------------- serve: as a process


def test_serve_demo_process_until_ctrl_c() -> None:
    """``python -m atlas_events serve --demo`` prints its URL, serves a live mesh,
    and exits cleanly on SIGINT."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("ATLAS_EVENTS_TOKEN", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "atlas_events",
            "serve",
            "--demo",
            "--port",
            "0",
            "--interval",
            "0.1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "atlas-events dashboard for the demo mesh"
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/")
        assert "Ctrl+C" in proc.stdout.readline()
        page = httpx.get(url)
        assert page.status_code == 200
        assert "atlas-events" in page.text
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}stats").json()["published"] < 40:
            assert time.monotonic() < deadline, "the demo mesh is not publishing"
            time.sleep(0.05)
        with httpx.stream("GET", f"{url}events", timeout=10) as resp:
            lines = resp.iter_lines()
            seen = [next(lines) for _ in range(8)]
            assert any(line.startswith("event: ") and "." in line for line in seen)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.endswith("stopped\n")
    assert "Traceback" not in err
