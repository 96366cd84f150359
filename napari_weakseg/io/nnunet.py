"""The nnU-Net raw dataset layout, read and written (v2, with v1 ``dataset.json`` read too).

::

    DatasetNNN_Name/
      dataset.json          channel_names {"0": "MRI"}, labels {"background": 0, "RV": 1, …},
                            numTraining, file_ending ".nii.gz" (v1: modality, labels
                            {"0": "background", …}, training [{image, label}])
      imagesTr/CASE_0000.nii.gz     one file per channel (_0000, _0001, …)
      labelsTr/CASE.nii.gz          dense labels, or sparse ones using the "ignore" label
      imagesTs/CASE_0000.nii.gz

nnU-Net v2 marks unannotated voxels of sparse labels with a label named ``ignore`` (the
highest value); :attr:`NnUNetDataset.ignore_value` exposes it. Region-based labels (lists
of values) are refused. Files are read/written with :mod:`.nifti` (geometry contract).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import VolumeError
from .atomic import atomic_path

DATASET_JSON = "dataset.json"
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class NnUNetCase:
    """One case: its channel files (index = channel) and label file, if any."""

    case_id: str
    images: tuple[Path, ...]
    label: Path | None = None
    subset: str = "Tr"  # "Tr" (training) or "Ts" (test)


@dataclass
class NnUNetDataset:
    """A parsed nnU-Net raw dataset folder."""

    root: Path
    name: str
    channel_names: dict[int, str]
    labels: dict[str, int]
    file_ending: str = ".nii.gz"
    cases: list[NnUNetCase] = field(default_factory=list)

    @property
    def ignore_value(self) -> int | None:
        return self.labels.get("ignore")

    @property
    def class_names(self) -> list[str]:
        """Class names ordered by value, without ``ignore``; values must be 0 … C − 1."""
        items = sorted((v, k) for k, v in self.labels.items() if k != "ignore")
        return [k for _, k in items]


def read_nnunet_dataset(folder: str | os.PathLike) -> NnUNetDataset:
    """Parse ``dataset.json`` and list the cases of ``imagesTr``/``labelsTr``/``imagesTs``.

    Raises :class:`VolumeError` naming the file for a missing/invalid ``dataset.json``,
    region-based or non-contiguous labels, a case missing a channel, or a label file
    without an image.
    """
    root = Path(folder)
    meta_path = root / DATASET_JSON
    if not meta_path.exists():
        raise VolumeError(meta_path, "missing: not an nnU-Net raw dataset folder")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VolumeError(meta_path, f"not valid JSON ({exc})") from exc
    channels_raw = meta.get("channel_names", meta.get("modality"))
    if not isinstance(channels_raw, dict) or not channels_raw:
        raise VolumeError(meta_path, "no 'channel_names' (v2) or 'modality' (v1) mapping")
    channel_names = {int(k): str(v) for k, v in channels_raw.items()}
    labels_raw = meta.get("labels")
    if not isinstance(labels_raw, dict) or not labels_raw:
        raise VolumeError(meta_path, "no 'labels' mapping")
    labels: dict[str, int] = {}
    for key, value in labels_raw.items():
        if isinstance(value, (list, tuple)):
            raise VolumeError(meta_path, f"label {key!r} is region-based ({value}); only plain "
                                         "integer labels are supported")
        if str(key).lstrip("-").isdigit() and not str(value).lstrip("-").isdigit():
            labels[str(value)] = int(key)  # v1: {"0": "background"}
        else:
            labels[str(key)] = int(value)
    values = sorted(v for k, v in labels.items() if k != "ignore")
    if values != list(range(len(values))):
        raise VolumeError(meta_path, f"label values {values} are not 0 … N − 1")
    ending = meta.get("file_ending", ".nii.gz")
    dataset = NnUNetDataset(root, str(meta.get("name", root.name)), channel_names, labels,
                            ending)
    n_channels = len(channel_names)
    for subset in ("Tr", "Ts"):
        image_dir = root / f"images{subset}"
        if not image_dir.is_dir():
            continue
        found: dict[str, dict[int, Path]] = {}
        for path in sorted(image_dir.iterdir()):
            if not path.name.endswith(ending) or path.name.startswith("."):
                continue
            match = _CHANNEL.match(path.name[: -len(ending)])
            if not match:
                raise VolumeError(path, "image name lacks the _0000 channel suffix")
            found.setdefault(match["case"], {})[int(match["channel"])] = path
        label_dir = root / f"labels{subset}"
        for case_id, per_channel in sorted(found.items()):
            missing = [c for c in range(n_channels) if c not in per_channel]
            if missing:
                raise VolumeError(image_dir / f"{case_id}_{missing[0]:04d}{ending}",
                                  f"missing: case {case_id!r} lacks channel(s) {missing}")
            label = label_dir / f"{case_id}{ending}"
            dataset.cases.append(NnUNetCase(
                case_id, tuple(per_channel[c] for c in range(n_channels)),
                label if label.exists() else None, subset))
        if label_dir.is_dir():
            for path in sorted(label_dir.glob(f"*{ending}")):
                if not path.name.startswith(".") and path.name[: -len(ending)] not in found:
                    raise VolumeError(path, f"label without an image in images{subset}/")
    if not dataset.cases:
        raise VolumeError(root, "no cases found in imagesTr/ or imagesTs/")
    return dataset


def image_path(root: str | os.PathLike, case_id: str, channel: int = 0, subset: str = "Tr",
               file_ending: str = ".nii.gz") -> Path:
    """``ROOT/imagesTr/CASE_0000.nii.gz``."""
    return Path(root) / f"images{subset}" / f"{case_id}_{channel:04d}{file_ending}"


def label_path(root: str | os.PathLike, case_id: str, subset: str = "Tr",
               file_ending: str = ".nii.gz") -> Path:
    """``ROOT/labelsTr/CASE.nii.gz``."""
    return Path(root) / f"labels{subset}" / f"{case_id}{file_ending}"


def write_dataset_json(root: str | os.PathLike, *, name: str, channel_names: dict[int, str],
                       labels: dict[str, int], num_training: int,
                       file_ending: str = ".nii.gz", **extra) -> Path:
    """Write a v2 ``dataset.json`` atomically."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    meta = {"name": name, "channel_names": {str(k): v for k, v in channel_names.items()},
            "labels": dict(labels), "numTraining": int(num_training),
            "file_ending": file_ending, **extra}
    path = root / DATASET_JSON
    with atomic_path(path, suffix=".json.tmp") as tmp:
        tmp.write_text(json.dumps(meta, indent=2))
    return path
