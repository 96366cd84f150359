"""What a batch export is asked (:class:`ExportOptions`), what it reports while it runs
(:class:`ExportProgress`, statuses :class:`~napari_weakseg.states.ExportStatus`) and what
it returns (:class:`ExportReport`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import OptionError
from ...postprocess import POSTPROCESSORS


@dataclass(frozen=True)
class ExportOptions:
    """What to write and how. ``shard``: ``(i, n)`` 0-based (``None``: the whole cohort,
    or the ``torchrun`` rank's part); ``prefetch``: volumes read ahead by a background
    thread (0: read inline); ``threads``: torch CPU threads (``None``: torch's default).
    ``postprocess``: ``none``, ``largest`` or ``anatomy`` (``None``: the model's recorded
    post-processing); ``largest_component`` is the old spelling of ``postprocess="largest"``.
    ``qc_report``: write ``OUT/qc/index.html`` (:mod:`.qc`) with a PNG of every flagged
    volume and of the ``qc_lowest`` volumes of highest mean uncertainty."""

    probabilities: bool = False
    uncertainty: bool = False
    largest_component: bool = False
    fill_holes: bool = False
    flip_tta: bool = False
    device: str = "auto"
    force: bool = False
    shard: tuple[int, int] | None = None
    prefetch: int = 1
    threads: int | None = None
    batch_slices: int = 16
    postprocess: str | None = None
    qc_report: bool = True
    qc_lowest: int = 10

    def __post_init__(self):
        if isinstance(self.qc_lowest, bool) or not isinstance(self.qc_lowest, int) \
                or self.qc_lowest < 0:
            raise OptionError(f"--qc-lowest: expected a count >= 0, got {self.qc_lowest!r}")
        if self.postprocess is not None and self.postprocess not in POSTPROCESSORS:
            raise OptionError(f"--postprocess: {self.postprocess!r} is not one of "
                              f"{', '.join(POSTPROCESSORS)}")
        if self.postprocess not in (None, "largest") and self.largest_component:
            raise OptionError(f"--largest-component contradicts --postprocess "
                              f"{self.postprocess}")

    def requested_postprocess(self) -> str | None:
        """The explicit choice (``largest_component`` means ``largest``), else ``None``."""
        return self.postprocess or ("largest" if self.largest_component else None)

    def label_options(self, recorded: str = "none") -> dict:
        """The options that change the labels (a change redoes the volume); ``recorded``:
        the model's post-processing, used unless one is requested."""
        return {"flip_tta": self.flip_tta,
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
