"""evaluation stage of napari_weakseg (see docs/architecture.md).

:mod:`.metrics`: per-class 3D Dice, HD95 and ASSD in mm (medpy definitions, numpy/scipy only),
summaries (mean ± std) and JSON/CSV writers.
"""

from .metrics import (METRICS, asd, assd, dice, evaluate_volume, hd95, summarise,
                      surface_distances, write_csv, write_json)

__all__ = ["METRICS", "asd", "assd", "dice", "evaluate_volume", "hd95", "summarise",
           "surface_distances", "write_csv", "write_json"]
