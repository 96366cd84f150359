"""The project store: an SQLite manifest plus NIfTI files, versioned annotations.

See ``docs/store.md`` (layout, manifest schema, atomicity) and ``docs/annotations.md``
(the encoding of every annotation kind). No Qt, napari or torch here.
"""

from .manifest import SCHEMA_VERSION, CorruptManifestError, ManifestError
from .project import (CorruptFileError, ImageChangedError, ImageMissingError, Project,
                      VerifyReport, sha256_file)
from .records import (SPLITS, Annotation, AnnotationRecord, GroundTruthRecord, ModelRecord,
                      NotFoundError, ProjectDiskError, ProjectExistsError, ReadOnlyProjectError,
                      RunRecord, StoreError, VolumeRecord)

__all__ = [
    "SCHEMA_VERSION", "SPLITS", "Annotation", "AnnotationRecord", "CorruptFileError",
    "CorruptManifestError", "GroundTruthRecord", "ImageChangedError", "ImageMissingError",
    "ManifestError", "ModelRecord", "NotFoundError", "Project", "ProjectDiskError",
    "ProjectExistsError", "ReadOnlyProjectError", "RunRecord", "StoreError", "VerifyReport",
    "VolumeRecord", "sha256_file",
]
