"""training stage of napari_weakseg (see docs/architecture.md)."""
