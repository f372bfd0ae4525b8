"""The ``atlas-events`` command line (also ``python -m atlas_events``)."""

from __future__ import annotations

import argparse
import importlib
import os
import secrets
import signal
import sys
import textwrap
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ._bus import EventBus
    from .demo import DemoMesh

__all__ = ["build_parser", "main"]

_DEFAULT_PORT = 8765
_TOKEN_ENV = "ATLAS_EVENTS_TOKEN"

_SERVE_EPILOG = f"""\
examples:
  atlas-events serve --demo
      watch a demo mesh (a provider, two agents, a workflow) run every second
  atlas-events serve --app myproject.events:bus --port 9000
      watch your own bus: 'bus' is an EventBus (or a function returning one)
      defined in the module myproject.events, imported from the current
      directory or your installed packages

security:
  The dashboard listens on 127.0.0.1 unless --host says otherwise. On a
  loopback address (127.0.0.0/8, ::1, localhost) it answers only requests
  whose Host is localhost, 127.0.0.1, ::1 or the address itself (a guard
  against DNS rebinding; --allow-host adds names). With a token (--token or
  ${_TOKEN_ENV}) every request must present it: the printed URL carries it
  once, then the browser keeps it in a cookie. Listening on any other
  interface always needs a token: one is generated if none is given. Values
  under payload keys that look secret (password, token, secret,
  authorization, api_key...) are shown as '***' unless --no-redact is given.
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``atlas-events`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="atlas-events",
        description="atlas-events: a typed, in-process event mesh for Python.",
        epilog="Run 'atlas-events COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        help="run a provider/agent/workflow mesh and print its timeline, history and stats",
        description=(
            "Wire a provider, two agents and a workflow through a root bus and nested "
            "scopes, then print the timeline, middleware effects, history queries, "
            "tokens, weak handlers and stats."
        ),
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    demo.add_argument(
        "--redis",
        metavar="URL",
        help=(
            "instead, run the demo across two buses bridged through Redis Streams at URL "
            "(e.g. redis://127.0.0.1:6379/0); needs the 'redis' extra"
        ),
    )

    serve = sub.add_parser(
        "serve",
        help="serve the live dashboard of a bus (the demo mesh or your own) in the browser",
        description=textwrap.fill(
            "Serve a live dashboard of an event bus over HTTP: a web page with the "
            "event timeline, filters, counts per type, scopes and bus health, fed by "
            "Server-Sent Events (/events), with JSON at /stats and /history. "
            "Prints the URL to open and runs until Ctrl+C.",
            78,
        ),
        epilog=_SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = serve.add_argument_group("what to serve (one of)").add_mutually_exclusive_group(
        required=True
    )
    source.add_argument(
        "--demo",
        action="store_true",
        help="run the demo mesh continuously (a workflow run every --interval seconds)",
    )
    source.add_argument(
        "--app",
        metavar="MODULE:BUS",
        help="serve the EventBus BUS defined in MODULE, e.g. myproject.events:bus",
    )
    net = serve.add_argument_group("server")
    net.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default: %(default)s, reachable from this machine only)",
    )
    net.add_argument(
        "--port",
        type=_port,
        default=_DEFAULT_PORT,
        help="TCP port (default: %(default)s; 0 picks a free one)",
    )
    net.add_argument(
        "--token",
        help=f"access token the browser must present (default: ${_TOKEN_ENV}, else none)",
    )
    net.add_argument(
        "--max-clients",
        type=_positive_int,
        default=64,
        metavar="N",
        help="concurrent live connections; more get HTTP 503 (default: %(default)s)",
    )
    net.add_argument(
        "--heartbeat",
        type=_seconds,
        default=15.0,
        metavar="SECONDS",
        help="keep-alive comment interval on idle streams, 0 for none (default: %(default)s)",
    )
    net.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another Host name the dashboard answers to (repeatable; see 'security' below)",
    )
    net.add_argument(
        "--send-timeout",
        type=_positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="drop a browser whose connection has not drained for this long (default: %(default)s)",
    )
    net.add_argument(
        "--no-redact",
        action="store_true",
        help="show payload values under secret-looking keys instead of '***'",
    )
    demo_opts = serve.add_argument_group("with --demo")
    demo_opts.add_argument(
        "--interval",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="pause between workflow runs (default: %(default)s)",
    )
    demo_opts.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    return parser


class _Usage(Exception):
    """A mistake in the command line that argparse cannot see (exit status 2)."""


def _load_bus(spec: str) -> EventBus:
    from ._bus import EventBus

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _Usage(f"--app takes MODULE:BUS (e.g. myproject.events:bus), got {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # as 'python -m' and uvicorn do
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise _Usage(f"cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _Usage(f"{module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, EventBus) and callable(obj):
        obj = obj()
    if not isinstance(obj, EventBus):
        raise _Usage(f"{spec} is a {type(obj).__name__}, not an EventBus")
    return obj


class _DemoRunner:
    """Runs the demo mesh in a background thread until stopped."""

    def __init__(self, mesh: DemoMesh, interval: float) -> None:
        self.mesh = mesh
        self.interval = interval
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="atlas-events-demo", daemon=True)

    def _run(self) -> None:
        self.mesh.start()
        while not self.stopping.is_set():
            self.mesh.run_once()
            self.stopping.wait(self.interval)
        self.mesh.stop()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)


def _serve(args: argparse.Namespace, out: TextIO, stop: threading.Event | None = None) -> int:
    from .web import DashboardServer, is_loopback

    mesh: DemoMesh | None = None
    if args.demo:
        from .demo import DemoMesh

        mesh = DemoMesh(seed=args.seed)
        bus = mesh.bus
    else:
        bus = _load_bus(args.app)
    token = args.token or os.environ.get(_TOKEN_ENV) or None
    if token is None and not is_loopback(args.host):
        token = secrets.token_urlsafe(18)
        out.write(f"{args.host} is reachable from other machines: generated an access token.\n")
    server = DashboardServer(
        bus,
        host=args.host,
        port=args.port,
        token=token,
        max_clients=args.max_clients,
        heartbeat=args.heartbeat,
        redact=not args.no_redact,
        send_timeout=args.send_timeout,
        allowed_hosts=args.allow_host or None,
    )
    try:
        server.start()
    except OSError as exc:
        sys.stderr.write(f"atlas-events serve: cannot listen on {args.host}:{args.port}: {exc}\n")
        return 1
    runner = _DemoRunner(mesh, args.interval) if mesh is not None else None
    stop = stop or threading.Event()
    previous = _on_signals(stop)
    try:
        if runner is not None:
            runner.start()
        what = "demo mesh" if mesh is not None else f"bus {bus.name!r} ({args.app})"
        out.write(f"atlas-events dashboard for the {what}\n  {server.url}\n")
        if server.wildcard:
            out.write(
                f"  (listening on every interface: from other machines use this machine's "
                f"name or address instead of {server.base_url.split('//')[1].rsplit(':', 1)[0]})\n"
            )
        out.write("Press Ctrl+C to stop.\n")
        out.flush()
        stop.wait()
    finally:
        _restore_signals(previous)
        if runner is not None:
            runner.stop()
        server.stop()
        if mesh is not None:
            bus.close()
    out.write("stopped\n")
    return 0


def _on_signals(stop: threading.Event) -> dict[int, Any]:
    """Make SIGINT and SIGTERM set ``stop`` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    if args.redis:
        try:
            from .bridges.demo import run_redis_demo
        except ImportError as exc:
            sys.stderr.write(
                f"atlas-events demo --redis: the Redis bridge is not available ({exc}); "
                "install it with: pip install 'atlas-events[redis]'\n"
            )
            return 1
        return int(run_redis_demo(args.redis, out))
    from .demo import run_demo

    run_demo(out, seed=args.seed)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args, sys.stdout)
        if args.command == "serve":
            return _serve(args, sys.stdout)
    except _Usage as exc:
        parser.exit(2, f"atlas-events {args.command}: error: {exc}\n")
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
