"""The ``eventbus`` command line."""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="eventbus", description="An event-sourced, asynchronous callback bus for Keras."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="train the Keras guide's model on the digits data set with its callbacks on the bus",
        add_help=False,
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        try:
            demo = importlib.import_module("eventbus.examples.demo")
        except ImportError as exc:
            print(
                f"eventbus demo needs TensorFlow and scikit-learn ({exc}); "
                "install them with: pip install 'keras-eventbus[demo]'",
                file=sys.stderr,
            )
            return 2
        return int(demo.main(rest))
    parser.print_help()
    return 1 if argv else 0


if __name__ == "__main__":
    raise SystemExit(main())
