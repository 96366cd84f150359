"""napari dock widgets: thin faces over the Qt-free core."""
