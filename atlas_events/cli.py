"""The ``atlas-events`` command line (also ``python -m atlas_events``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        run_demo(sys.stdout, seed=args.seed)
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
