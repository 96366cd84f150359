"""Inference: whole volumes back on their own grid (see :mod:`.predict`)."""
