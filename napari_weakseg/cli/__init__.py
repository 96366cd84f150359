"""``weakseg`` command line: a thin face over the core.

Each module in this package that defines ``register(subparsers)`` adds its subcommands;
a subcommand's handler takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import pkgutil
import sys
import traceback

from .. import __version__
from ..errors import WeakSegError


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
    except WeakSegError as exc:
        # The user's situation: one line that names the file/option and the problem.
        print(f"weakseg {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:
        # Disk full, read-only, permission, missing path: the user's situation too.
        print(f"weakseg {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        print(f"weakseg {args.command}: internal error (this is a bug in napari-weakseg; "
              "please report it with the traceback above)", file=sys.stderr)
        return 70


def one_line(exc: BaseException) -> str:
    """The error's message on one line (continuation lines joined with ' | ')."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " | ".join(part.strip() for part in text.splitlines() if part.strip())


_OS_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space and run the command again",
    errno.EDQUOT: "the disk quota is exceeded; free some space and run the command again",
    errno.EROFS: "the file system is read-only; choose an output folder you can write to",
    errno.EACCES: "permission denied; choose a path you can write to or fix its permissions",
    errno.EPERM: "operation not permitted; choose a path you can write to",
    errno.ENOENT: "no such file or folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of the path is not a folder",
}


def describe_os_error(exc: OSError) -> str:
    """``"<path>: <what happened>; <what to do>"`` for an :class:`OSError`."""
    path = exc.filename if exc.filename is not None else None
    reason = _OS_ADVICE.get(exc.errno) if exc.errno is not None else None
    reason = reason or (exc.strerror or str(exc))
    return f"{path}: {reason}" if path is not None else one_line(exc) if not exc.strerror \
        else reason
