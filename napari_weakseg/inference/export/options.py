"""What a batch export is asked (:class:`ExportOptions`), what it reports while it runs
(:class:`ExportProgress`, statuses :class:`~napari_weakseg.states.ExportStatus`) and what
it returns (:class:`ExportReport`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import OptionError
from ...fields import check_values, option_field
from ...postprocess import POSTPROCESSORS
from ...tta import TTA_MODES


def _shard(text: str) -> tuple[int, int]:
    """``--shard i/n`` (:func:`.cohort.parse_shard`)."""
    from .cohort import parse_shard

    return parse_shard(text)


@dataclass(frozen=True)
class ExportOptions:
    """What to write and how. ``shard``: ``(i, n)`` 0-based (``None``: the whole cohort,
    or the ``torchrun`` rank's part); ``prefetch``: volumes read ahead by a background
    thread (0: read inline); ``threads``: torch CPU threads (``None``: torch's default).
    ``postprocess``: ``none``, ``largest`` or ``anatomy`` (``None``: the model's recorded
    post-processing); ``largest_component`` is the old spelling of ``postprocess="largest"``.
    ``tta``: test-time augmentation, ``none`` or ``mirror`` (``None``: the model's
    recorded one); ``flip_tta`` is the old spelling of ``tta="mirror"``.
    ``qc_report``: write ``OUT/qc/index.html`` (:mod:`.qc`) with a PNG of every flagged
    volume and of the ``qc_lowest`` volumes of highest mean uncertainty.

    The user-facing fields carry their declaration (:func:`~napari_weakseg.fields.option_field`):
    ``weakseg export``'s flags and the Export panel's widgets are generated from it."""

    probabilities: bool = option_field(False, "Probability maps", "also write the softmax "
                                       "probabilities (float32, X×Y×Z×C)")
    uncertainty: bool = option_field(False, "Uncertainty (entropy) maps", "also write the "
                                     "voxel entropy (float32, nats)")
    largest_component: bool = option_field(
        False, "Keep largest component per class (= post-processing 'largest')",
        "old spelling of --postprocess largest")
    fill_holes: bool = option_field(False, "Fill holes", "fill background holes enclosed by "
                                    "one class (per slice)")
    flip_tta: bool = option_field(False, "Flip test-time augmentation",
                                  "old spelling of --tta mirror")
    tta: str | None = option_field(
        None, "Test-time augmentation", "test-time augmentation (default: the one the model "
        "records): mirror = average the image and its 3 flips (4 passes), none = one pass",
        choices=TTA_MODES, choice_labels=("none (one pass)", "mirror (4 flipped passes)"),
        none_text="As the model recommends")
    device: str = option_field("auto", "Device", "auto, cpu, cuda, cuda:N, mps",
                               suggestions=("auto", "cpu", "cuda", "mps"))
    force: bool = option_field(False, "Redo volumes already exported",
                               "redo volumes already exported")
    shard: tuple[int, int] | None = option_field(
        None, "Shard", "export shard i (0-based) of n; under torchrun each rank takes its part "
        "of it", parse=_shard, metavar="i/n")
    prefetch: int = option_field(1, "Read ahead", "volumes read ahead while predicting "
                                 "(default 1; 0: off)")
    threads: int | None = option_field(None, "CPU threads", "torch CPU threads")
    batch_slices: int = 16
    postprocess: str | None = option_field(
        None, "Post-processing", "post-processing of the labels (default: the one the model "
        "records); recorded in the manifest", choices=tuple(POSTPROCESSORS),
        choice_labels=("none (raw network output)", "largest component per class",
                       "anatomy (organ's largest component + schema rules)"),
        none_text="As the model recommends")
    qc_report: bool = option_field(True, "QC report", "write the QC report qc/index.html "
                                   "(--no-qc-report: do not)")
    qc_lowest: int = option_field(10, "QC: least confident volumes", "the QC report also "
                                  "pictures the N volumes of highest mean uncertainty "
                                  "(default 10; flagged volumes are always shown)",
                                  minimum=0, metavar="N")

    def __post_init__(self):
        check_values(self, ("qc_lowest", "postprocess", "tta"), by_flag=True)
        if self.tta == "none" and self.flip_tta:
            raise OptionError("--flip-tta contradicts --tta none")
        if self.postprocess not in (None, "largest") and self.largest_component:
            raise OptionError(f"--largest-component contradicts --postprocess "
                              f"{self.postprocess}")

    def requested_postprocess(self) -> str | None:
        """The explicit choice (``largest_component`` means ``largest``), else ``None``."""
        return self.postprocess or ("largest" if self.largest_component else None)

    def requested_tta(self) -> str | None:
        """The explicit choice (``flip_tta`` means ``mirror``), else ``None``."""
        return self.tta or ("mirror" if self.flip_tta else None)

    def label_options(self, recorded: str = "none", recorded_tta: str = "none") -> dict:
        """The options that change the labels (a change redoes the volume); ``recorded``
        / ``recorded_tta``: the model's post-processing and test-time augmentation, used
        unless one is requested."""
        return {"tta": self.requested_tta() or recorded_tta,
                "postprocess": self.requested_postprocess() or recorded,
                "fill_holes": self.fill_holes}

    def maps(self) -> list[str]:
        return ["labels"] + [m for m in ("probabilities", "uncertainty") if getattr(self, m)]


@dataclass(frozen=True)
class ExportProgress:
    """One step of a run. ``status``: ``started`` (``total`` known), ``exported``,
    ``skipped``, ``failed`` (``message`` is the error), ``finished`` or ``cancelled``;
    ``done`` counts volumes of this shard handled so far; ``seconds`` the volume's time."""

    status: str  # an ExportStatus
    done: int
    total: int
    name: str | None = None
    message: str = ""
    seconds: float = 0.0


@dataclass
class ExportReport:
    """Outcome of :func:`export_cohort` for this shard; ``exit_code`` 0 all done, 1 a
    volume failed, 130 cancelled (without failures)."""

    out_dir: Path
    cohort: int
    shard: tuple[int, int]
    total: int = 0
    exported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_done: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    cancelled: bool = False
    csv_path: Path | None = None
    qc_path: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.cancelled

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else (130 if self.cancelled else 0)

    def summary(self) -> str:
        text = (f"{len(self.exported)} exported, {len(self.skipped)} already done, "
                f"{len(self.failed)} failed of {self.total} volumes")
        if self.shard[1] > 1:
            text += f" (shard {self.shard[0]}/{self.shard[1]} of a {self.cohort}-volume cohort)"
        if self.cancelled:
            text += f"; cancelled, {len(self.not_done)} not done"
        return text + f" in {self.seconds:.1f} s"


__all__ = ["ExportOptions", "ExportProgress", "ExportReport"]
