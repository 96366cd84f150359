"""napari dock widgets: thin faces over the Qt-free core.

* ``main.WeakSegWidget`` — the dock widget ("WeakSeg"): Project, Annotate, Train and Review
  tabs over one shared ``signals.Session``; ``add_panel`` adds a tab.
* ``project.ProjectPanel``, ``annotation.AnnotationPanel`` (also usable alone: "Weak
  annotations"), ``train.TrainPanel``, ``review.ReviewPanel`` — the panels.
* ``signals`` — the shared session (psygnal signals) and typed messages; ``workers`` — the
  injectable task executor (napari thread workers, or synchronous for tests);
  ``logic`` — everything that is not Qt (importable without napari).
"""
