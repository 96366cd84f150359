"""``weakseg init|add|import|list|annotations|simulate|export-annotations``: the project
store from the command line (a thin face over :mod:`napari_weakseg.store`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._args import split_assignment

KINDS = ("scribble", "coarse_pos", "coarse_neg", "partial", "sparse", "dense")


def _tag(text: str) -> tuple[str, str]:
    return split_assignment(text, argparse.ArgumentTypeError,
                            f"expected KEY=VALUE, got {text!r}")


def register(subparsers) -> None:
    init = subparsers.add_parser(
        "init", help="create a project folder",
        description="Create a project: a folder with an SQLite manifest and NIfTI files. "
                    "Classes default to the cardiac schema (background, RV, MYO, LV). "
                    "Creation is atomic; a project whose creation was interrupted (a "
                    "manifest without schema or data) is finished, an existing project is "
                    "never replaced.")
    init.add_argument("project", type=Path)
    init.add_argument("--classes", nargs="+", metavar="NAME",
                      help="class names in order, background first")
    init.add_argument("--colors", nargs="+", metavar="HEX", help="one #rrggbb per class")
    init.set_defaults(handler=run_init)

    add = subparsers.add_parser(
        "add", help="add images (NIfTI, NRRD, MHA/MHD, DICOM series) to a project",
        description="Add 3D NIfTI images (copied into the project, or referenced with "
                    "--reference; a checksum detects later changes). NRRD, MHA/MHD files "
                    "and DICOM series (a folder, or one of its files) are converted to NIfTI "
                    "on exactly their grid and copied.")
    add.add_argument("project", type=Path)
    add.add_argument("images", nargs="+", type=Path)
    add.add_argument("--reference", action="store_true", help="do not copy the images")
    add.add_argument("--name", help="volume name (one image only; default: file name)")
    add.add_argument("--tag", action="append", type=_tag, default=[], metavar="KEY=VALUE",
                     help="tag, e.g. dataset=ACDC, subject=p1, frame=ED (repeatable)")
    add.add_argument("--split", choices=("train", "val", "test"))
    add.add_argument("--ground-truth", type=Path, help="dense labels of the image (one image)")
    add.set_defaults(handler=run_add)

    imp = subparsers.add_parser(
        "import", help="import a dataset (ACDC folder, nnU-Net, WSL4MIS .h5, NIfTI folder)",
        description="Import a dataset into a project (created when missing). Formats: acdc "
                    "(images/ labels/ scribbles/ splits.json), nnunet (dataset.json, "
                    "imagesTr/, labelsTr/), wsl4mis (.h5 volumes), folder (NIfTI images with "
                    "NAME_gt/_seg/_label/_mask and NAME_scribble files, or images/ labels/ "
                    "scribbles/ subfolders). Dense labels become ground truth (evaluation "
                    "only). Re-running completes an interrupted import. With --format auto, "
                    "a DICOM series, an NRRD/MHA/MHD file, or a folder of those (and DICOM "
                    "series subfolders; NAME_seg etc. as ground truth) is converted to NIfTI "
                    "and copied.")
    imp.add_argument("project", type=Path)
    imp.add_argument("source", type=Path)
    imp.add_argument("--format", default="auto",
                     choices=("auto", "acdc", "nnunet", "wsl4mis", "folder"))
    copy = imp.add_mutually_exclusive_group()
    copy.add_argument("--copy", action="store_true", default=None,
                      help="copy images into the project (default except for acdc)")
    copy.add_argument("--reference", action="store_true",
                      help="reference images where they are (default for acdc)")
    imp.add_argument("--labels-as", default=None,
                     help="folder: ground_truth|dense; nnunet: auto|ground_truth|KIND")
    imp.add_argument("--scribble-encoding", choices=("wsl4mis", "ours"), default="wsl4mis",
                     help="folder import: encoding of scribble files (default wsl4mis: "
                          "background 0, C = unannotated)")
    imp.add_argument("--spacing", type=float, nargs=3, metavar=("SZ", "SY", "SX"),
                     help="wsl4mis: voxel spacing in mm (the .h5 files have none)")
    imp.add_argument("--tag", action="append", type=_tag, default=[], metavar="KEY=VALUE")
    imp.set_defaults(handler=run_import)

    lst = subparsers.add_parser(
        "list", help="list the volumes of a project",
        description="List volumes with their tags, current annotations and ground truth.")
    lst.add_argument("project", type=Path)
    lst.add_argument("--tag", action="append", type=_tag, default=[], metavar="KEY=VALUE",
                     help="only volumes with this tag (repeatable)")
    lst.add_argument("--split", choices=("train", "val", "test"))
    lst.add_argument("--verify", action="store_true",
                     help="check image checksums and every committed file")
    lst.set_defaults(handler=run_list)

    ann = subparsers.add_parser(
        "annotations", help="list (or restore) annotation versions of a volume",
        description="List every saved version of a volume's annotations; with --restore, "
                    "make an earlier version current again (as a new version).")
    ann.add_argument("project", type=Path)
    ann.add_argument("volume")
    ann.add_argument("--kind", choices=KINDS)
    ann.add_argument("--strategy", default=None)
    ann.add_argument("--restore", type=int, metavar="VERSION")
    ann.add_argument("--author", default=None)
    ann.set_defaults(handler=run_annotations)

    sim = subparsers.add_parser(
        "simulate", help="simulate weak annotations from ground truth",
        description="Simulate annotations of one kind from each volume's ground truth "
                    "(seeded; see napari_weakseg.weak.simulate) and save them as new "
                    "versions, author 'simulate'.")
    sim.add_argument("project", type=Path)
    sim.add_argument("--kind", required=True, choices=KINDS)
    sim.add_argument("--strategy", default="default")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--split", choices=("train", "val", "test"))
    sim.add_argument("--tag", action="append", type=_tag, default=[], metavar="KEY=VALUE")
    sim.add_argument("--radius", type=float, help="coarse_pos/coarse_neg radius in px "
                     "(coarse_pos default: Morpho-MNIST rule; coarse_neg default 3)")
    sim.add_argument("--radius-mm", type=float, help="coarse radius in mm")
    sim.add_argument("--classes", nargs="+", help="partial: classes kept; coarse: classes "
                     "simulated (names or indices)")
    sim.add_argument("--every", type=int, help="sparse: every k-th slice")
    sim.add_argument("--fraction", type=float, help="sparse: fraction of slices")
    sim.add_argument("--slice-classes", type=int,
                     help="sparse: random subset of this many classes per slice")
    sim.set_defaults(handler=run_simulate)

    exp = subparsers.add_parser(
        "export-annotations", help="export annotations as NIfTI",
        description="Write OUT/NAME.nii.gz for every volume with an annotation of the kind, "
                    "on the image grid, in our encoding (0 = unannotated, class + 1; "
                    "coarse_neg bitmask) or the WSL4MIS one (background 0, C = unannotated).")
    exp.add_argument("project", type=Path)
    exp.add_argument("--kind", required=True, choices=KINDS)
    exp.add_argument("--out", type=Path, required=True)
    exp.add_argument("--encoding", choices=("ours", "wsl4mis"), default="ours")
    exp.add_argument("--strategy", default="default")
    exp.add_argument("--version", type=int, default=None)
    exp.add_argument("--volume", action="append", default=None, help="only this volume")
    exp.add_argument("--force", action="store_true",
                     help="replace existing files in --out that weakseg did not write")
    exp.set_defaults(handler=run_export)


def _schema(names, colors):
    from ..schema import LabelSchema

    if not names:
        return LabelSchema.cardiac()
    return LabelSchema.from_names(list(names), colors)


def run_init(args) -> int:
    from ..store import Project

    with Project.create(args.project, _schema(args.classes, args.colors)) as project:
        what = "finished the interrupted project" if project.repaired else "created project"
        print(f"{what} {project.root} with classes {', '.join(project.schema.names)}")
    return 0


def run_add(args) -> int:
    from ..store import ManifestError, Project, ProjectDiskError, ReadOnlyProjectError
    from .volumes import add_any_volume, ground_truth_input

    if (args.name or args.ground_truth) and len(args.images) != 1:
        print("weakseg add: error: --name and --ground-truth need exactly one image")
        return 2
    tags = dict(args.tag)
    if args.split:
        tags["split"] = args.split
    failed = 0
    with Project.open(args.project) as project:
        for image in args.images:
            try:
                record = add_any_volume(project, image, copy=not args.reference,
                                        name=args.name, tags=tags)
            except (ReadOnlyProjectError, ProjectDiskError, ManifestError):
                raise  # the project's situation, not this image's: stop (one line)
            except ValueError as exc:
                print(f"error: {exc}")
                failed += 1
                continue
            print(f"added {record.name}: {' × '.join(map(str, record.shape))} voxels "
                  f"({'copied' if record.copied else 'referenced'})")
            if args.ground_truth:
                truth, truth_geometry = ground_truth_input(args.ground_truth)
                project.set_ground_truth(record, truth, source=str(args.ground_truth),
                                         geometry=truth_geometry)
                print(f"  ground truth from {args.ground_truth}")
    return 1 if failed else 0


def run_import(args) -> int:
    from ..store import Project
    from ..store.importers import detect_format, import_source, schema_for
    from .volumes import other_format_volumes, run_import_volumes

    if args.format == "auto" and (volumes := other_format_volumes(args.source)):
        return run_import_volumes(args, volumes)  # DICOM series, NRRD, MHA/MHD
    fmt = detect_format(args.source) if args.format == "auto" else args.format
    options: dict = {}
    if args.reference:
        options["copy"] = False
    elif args.copy:
        options["copy"] = True
    if args.tag and fmt != "acdc":
        options["tags"] = dict(args.tag)
    if args.labels_as and fmt in ("folder", "nnunet"):
        options["labels_as"] = args.labels_as
    if fmt == "folder":
        options["scribble_encoding"] = args.scribble_encoding
    if fmt == "wsl4mis":
        options.pop("copy", None)
        if args.spacing:
            options["spacing"] = tuple(args.spacing)
    created = not (args.project / "project.sqlite").exists()
    with Project.open_or_create(args.project, schema_for(args.source, fmt)) as project:
        project.check_writable()  # one line now, not one refusal per imported file
        if created:
            print(f"created project {project.root} with classes "
                  f"{', '.join(project.schema.names)}")
        from ._progress import import_progress

        with import_progress(project, f"importing {args.source} ({fmt})"):
            report = import_source(project, args.source, fmt, **options)
        print(f"import ({fmt}) of {args.source}: {report.summary()}")
    return 0 if report.ok else 1


def run_list(args) -> int:
    from ..store import Project

    filters = dict(args.tag)
    if args.split:
        filters["split"] = args.split
    with Project.open(args.project) as project:
        volumes = project.volumes(**filters)
        current: dict[int, list[str]] = {}
        for record in project.annotations():
            label = record.kind + ("" if record.strategy == "default" else f"/{record.strategy}")
            current.setdefault(record.volume_id, []).append(f"{label} v{record.version}")
        print(f"{project.root}: {len(volumes)} volumes, classes "
              f"{', '.join(project.schema.names)}")
        for record in volumes:
            tags = " ".join(f"{k}={v}" for k, v in sorted(record.tags.items()))
            status = ""
            if args.verify:
                problem = project.image_problem(record)
                status = "  IMAGE PROBLEM: " + problem if problem else "  image ok"
            print(f"{record.name}  {'×'.join(map(str, record.shape))}  {tags}  "
                  f"[{', '.join(current.get(record.id, [])) or 'no annotations'}]"
                  f"{'  gt' if project.has_ground_truth(record) else ''}{status}")
        if args.verify:
            report = project.verify()
            print(f"verified {report.checked_files} committed files: "
                  f"{len(report.file_problems)} problems, {len(report.orphans)} orphan files")
            for problem in report.image_problems + report.file_problems:
                print(f"  {problem}")
            return 0 if report.ok else 1
    return 0


def run_annotations(args) -> int:
    from ..store import Project

    with Project.open(args.project) as project:
        if args.restore is not None:
            if not args.kind:
                print("weakseg annotations: error: --restore needs --kind")
                return 2
            record = project.restore_annotation(args.volume, args.kind, args.restore,
                                                strategy=args.strategy or "default",
                                                author=args.author)
            print(f"restored version {args.restore} as version {record.version}")
            return 0
        records = project.annotations(args.volume, kind=args.kind, strategy=args.strategy,
                                      all_versions=True)
        if not records:
            print(f"volume {args.volume!r} has no annotations")
        for r in records:
            declared = ""
            if r.declared_classes is not None:
                declared += f" classes={list(r.declared_classes)}"
            if r.declared_slices is not None:
                declared += f" slices={ {z: list(c) for z, c in r.declared_slices.items()} }"
            restored = f" (restored from v{r.restored_from})" if r.restored_from else ""
            print(f"{r.kind}/{r.strategy} v{r.version}  {r.created_at}  "
                  f"{r.author or '-'}  {r.annotated_voxels} voxels{declared}{restored}")
    return 0


def run_simulate(args) -> int:
    from ..store import Project
    from ..runtime import mix_seed
    from ..weak.simulate import simulate

    filters = dict(args.tag)
    if args.split:
        filters["split"] = args.split
    with Project.open(args.project) as project:
        classes = None
        if args.classes:
            classes = [project.schema.index(c) if not c.isdigit() else int(c)
                       for c in args.classes]
        done = skipped = 0
        for record in project.volumes(**filters):
            gt = project.ground_truth(record)
            if gt is None:
                skipped += 1
                continue
            options: dict = {}
            if args.kind == "scribble":
                options = {"seed": mix_seed(args.seed, record.id), "spacing": record.spacing}
            elif args.kind in ("coarse_pos", "coarse_neg"):
                if args.radius is not None:
                    options["radius"] = args.radius
                if args.radius_mm is not None:
                    options.update(radius_mm=args.radius_mm, spacing=record.spacing)
                if classes is not None:
                    options["classes"] = classes
            elif args.kind == "partial":
                if classes is None:
                    print("weakseg simulate: error: partial needs --classes")
                    return 2
                options["keep"] = classes
            elif args.kind == "sparse":
                options = {"every": args.every, "fraction": args.fraction,
                           "seed": mix_seed(args.seed, record.id),
                           "slice_classes": args.slice_classes}
                if args.every is None and args.fraction is None:
                    options["every"] = 3
            simulated = simulate(args.kind, gt, project.num_classes, **options)
            summary = " ".join(f"{k}={v}" for k, v in options.items()
                               if k not in ("spacing",) and v is not None)
            project.save_annotation(record, args.kind, simulated.data, strategy=args.strategy,
                                    author="simulate",
                                    declared_classes=simulated.declared_classes,
                                    declared_slices=simulated.declared_slices,
                                    note=f"simulated from ground truth: {summary}",
                                    allow_empty=True)
            done += 1
        print(f"simulated {args.kind} for {done} volumes ({skipped} without ground truth "
              "skipped)")
    return 0


def run_export(args) -> int:
    from ..store import Project
    from ..store.importers import export_annotations

    with Project.open(args.project) as project:
        written = export_annotations(project, args.out, args.kind, strategy=args.strategy,
                                     encoding=args.encoding, version=args.version,
                                     volumes=args.volume, force=args.force)
    print(f"wrote {len(written)} {args.kind} annotations ({args.encoding} encoding) to "
          f"{args.out}")
    return 0
