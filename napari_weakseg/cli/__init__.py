"""``weakseg`` command line: a thin face over the core.

Each module in this package that defines ``register(subparsers)`` adds its subcommands;
a subcommand's handler takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from .. import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weakseg",
        description="Train medical image segmentation models from cheap annotations "
                    "(scribbles, coarse masks, partial and sparse labels).")
    parser.add_argument("--version", action="version", version=f"weakseg {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, FileNotFoundError) as exc:
        # Core errors name the file and the problem; show them without a traceback.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"weakseg {args.command}: error: {message}", file=sys.stderr)
        return 1
