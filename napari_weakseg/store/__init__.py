"""The project store: an SQLite manifest plus NIfTI files, versioned annotations.

See ``docs/store.md`` (layout, manifest schema, atomicity) and ``docs/annotations.md``
(the encoding of every annotation kind). No Qt, napari or torch here.
"""

from .manifest import SCHEMA_VERSION, ManifestError
from .project import (CorruptFileError, ImageChangedError, ImageMissingError, Project,
                      VerifyReport, sha256_file)
from .records import (SPLITS, Annotation, AnnotationRecord, GroundTruthRecord, ModelRecord,
                      NotFoundError, RunRecord, StoreError, VolumeRecord)

__all__ = [
    "SCHEMA_VERSION", "SPLITS", "Annotation", "AnnotationRecord", "CorruptFileError",
    "GroundTruthRecord", "ImageChangedError", "ImageMissingError", "ManifestError",
    "ModelRecord", "NotFoundError", "Project", "RunRecord", "StoreError", "VerifyReport",
    "VolumeRecord", "sha256_file",
]
