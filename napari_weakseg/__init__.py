"""napari-weakseg: train segmentation models from cheap annotations, inside napari.

Importing the package is cheap: torch, Qt and napari are imported only where needed.
"""

__version__ = "0.1.0"
