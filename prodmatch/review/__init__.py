"""Review: people look at candidate pairs in the browser, label them, and the labels become data.

`prodmatch review` serves a small web app (app.py; guard.py keeps it safe, pages.py draws it) that shows a run's
pairs side by side with pictures and signals, asks which pair to label next by active learning (queue.py), stores
answers in `prodmatch.labels` (labels.py), makes thumbnails through the worker's safe image loader (thumbs.py)
and writes a static page of borderline pairs to share (export.py). It reads stored runs and products (data.py,
its only link to the rest of prodmatch) and writes only labels, which evaluation and matcher training read back
as gold pairs.
"""

from prodmatch.review.app import ReviewOptions, create_app
from prodmatch.review.export import ExportResult, export_run
from prodmatch.review.guard import is_loopback
from prodmatch.review.labels import (
    ImportResult,
    LabelCounts,
    export_labels,
    gold_rows,
    import_labels,
    label_counts,
    record_label,
    undo_last,
)
from prodmatch.review.queue import Candidate, next_pairs
from prodmatch.review.server import serve

__all__ = [
    "Candidate",
    "ExportResult",
    "ImportResult",
    "LabelCounts",
    "ReviewOptions",
    "create_app",
    "export_labels",
    "export_run",
    "gold_rows",
    "import_labels",
    "is_loopback",
    "label_counts",
    "next_pairs",
    "record_label",
    "serve",
    "undo_last",
]
