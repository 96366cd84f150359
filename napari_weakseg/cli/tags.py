"""``weakseg tag``: set or remove tags of project volumes (the split above all: volumes
tagged ``split=val`` with a reference mask validate training runs)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import OptionError
from ._args import split_assignment


def _assignment(text: str) -> tuple[str, str]:
    return split_assignment(text, OptionError,
                            f"--set {text!r}: expected KEY=VALUE, e.g. split=val")


def register(subparsers) -> None:
    tag = subparsers.add_parser(
        "tag", help="set or remove tags of project volumes (e.g. --set split=val)",
        description="Set (--set KEY=VALUE) or remove (--unset KEY) tags of volumes of a "
                    "project. Volumes tagged split=val with a reference mask (ground truth "
                    "or a dense annotation) validate training runs and are left out of "
                    "training; split=test volumes are left out of both. VOLUME names a "
                    "volume; --all tags every volume.")
    tag.add_argument("project", type=Path)
    tag.add_argument("volumes", nargs="*", metavar="VOLUME")
    tag.add_argument("--all", action="store_true", help="every volume of the project")
    tag.add_argument("--set", dest="assignments", action="append", default=[],
                     metavar="KEY=VALUE", help="tag to set (repeatable), e.g. split=val")
    tag.add_argument("--unset", action="append", default=[], metavar="KEY",
                     help="tag to remove (repeatable), e.g. split")
    tag.set_defaults(handler=run_tag)


def run_tag(args) -> int:
    from ..store import Project

    assignments = dict(_assignment(text) for text in args.assignments)
    for key in args.unset:
        if key in assignments:
            raise OptionError(f"--unset {key}: also given to --set")
        assignments[key] = None
    if not assignments:
        raise OptionError("nothing to do: give --set KEY=VALUE and/or --unset KEY")
    if bool(args.volumes) == bool(args.all):
        raise OptionError("name the volumes to tag, or give --all (not both)")
    with Project.open(args.project) as project:
        project.check_writable()
        names = [v.name for v in project.volumes()] if args.all else list(args.volumes)
        known = {v.name for v in project.volumes()}
        missing = [name for name in names if name not in known]
        if missing:
            raise OptionError(f"{args.project}: no volume named {', '.join(missing[:5])}"
                              + (" …" if len(missing) > 5 else "")
                              + f" (weakseg list {args.project} shows the names)")
        for name in names:
            project.set_tags(name, **assignments)
        change = ", ".join(f"{k}={v}" if v is not None else f"-{k}"
                           for k, v in assignments.items())
        print(f"{change}: {len(names)} volume(s)")
        if assignments.get("split") == "val":
            without = [name for name in names if not project.has_ground_truth(name)
                       and not any(a.kind == "dense" for a in project.annotations(name))]
            if without:
                print(f"note: {len(without)} of them have no reference mask (ground truth "
                      f"or dense annotation) and cannot validate: "
                      f"{', '.join(without[:5])}{' …' if len(without) > 5 else ''}",
                      file=sys.stderr)
    return 0
