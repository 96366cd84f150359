"""Fine-tuning in the Train panel shows the parent model's width and size (not editable
fields that would be ignored), and the Review tab predicts with the model's post-processing
unless another one is chosen."""

from __future__ import annotations

from napari_weakseg.widgets.main import WeakSegWidget
from napari_weakseg.widgets.workers import SynchronousExecutor


def test_fine_tune_shows_the_parents_width_and_size(make_napari_viewer, tiny_project,
                                                    tiny_model):
    widget = WeakSegWidget(make_napari_viewer(), executor=SynchronousExecutor())
    widget.project_panel.open_project(tiny_project)
    train = widget.train_panel
    train.set_profile("paper")                       # 256², width 16 in the form
    train.set_start_model(tiny_model)                # a width-4, 32² model
    assert train.fields["size"].value() == 32 and train.fields["base_width"].value() == 4
    assert not train.fields["size"].isEnabled() and not train.fields["base_width"].isEnabled()
    train.set_profile("quick-cpu")                   # a profile does not undo it
    assert train.fields["base_width"].value() == 4
    train.set_start_model(None)                      # a new network: editable again
    assert train.fields["size"].isEnabled() and train.fields["base_width"].isEnabled()


def test_review_post_processing_defaults_to_the_models(make_napari_viewer, tiny_project):
    widget = WeakSegWidget(make_napari_viewer(), executor=SynchronousExecutor())
    review = widget.review_panel
    assert review.post_combo.currentData() is None   # "as the model recommends"
    assert [review.post_combo.itemData(i) for i in range(review.post_combo.count())] == \
        [None, "none", "largest", "anatomy"]


def test_export_panel_defaults_to_the_models_post_processing(make_napari_viewer, tiny_model):
    from napari_weakseg.widgets.export import ExportPanel

    panel = ExportPanel(make_napari_viewer())
    assert panel.options().postprocess is None       # the model's recorded choice
    panel.model_edit.setText(str(tiny_model))
    assert panel.post_combo.itemText(0).endswith("(none)")  # it records none
    panel.post_combo.setCurrentIndex(panel.post_combo.findData("anatomy"))
    assert panel.options().postprocess == "anatomy"
    panel.checks["largest_component"].setChecked(True)  # the old box means 'largest'
    options = panel.options()
    assert options.postprocess == "largest" and options.requested_postprocess() == "largest"
