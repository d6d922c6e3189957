"""Static export: one self-contained HTML page of a run's borderline pairs, to share with people without the app.

The page inlines the stylesheet and embeds every thumbnail as a `data:` URI, so it opens from a file or an email
attachment with no server and no network. Borderline means closest to the decision point: to the matcher's
threshold (0.5) when the run has match probabilities, else to the run's similarity threshold, else to the median
similarity of its pairs.
"""

from __future__ import annotations

import base64
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from prodmatch.errors import ConfigError, ImageError
from prodmatch.review import data, labels
from prodmatch.review.pages import HERE, TEMPLATES
from prodmatch.review.thumbs import make_thumbnail

EXPORT_FILE = "index.html"


@dataclass(frozen=True)
class ExportResult:
    """What `export_run` wrote."""

    path: str
    run_id: int
    pairs: int
    images: int

    def to_dict(self) -> dict:
        return {"path": self.path, "run_id": self.run_id, "pairs": self.pairs, "images": self.images}


def export_run(
    conn: psycopg.Connection,
    folder: Path,
    *,
    run_id: int | None = None,
    source: str | None = None,
    target: str | None = None,
    limit: int = 50,
    thumbnail_size: int = 240,
    allow_private_images: bool = False,
    image_roots: tuple = (),
) -> ExportResult:
    """Write FOLDER/index.html with the `limit` pairs of a run closest to its decision point.

    The run is `run_id`, else the newest link run from `source` to `target`, else the newest run.
    """
    run = data.find_run(conn, run_id, source, target)
    optional = data.optional_match_columns(conn)
    pairs = data.run_pairs(conn, run, optional)
    by_probability = any(p.match_probability is not None for p in pairs)
    threshold = _decision_point(pairs, run, by_probability)
    chosen = sorted(pairs, key=lambda p: (abs(_value(p, by_probability) - threshold), p.source_product_id))[
        :limit
    ]
    products = data.products(conn, [i for p in chosen for i in (p.source_product_id, p.target_product_id)])
    from prodmatch.embed.queue import image_roots as ingest_roots

    roots = (*image_roots, *ingest_roots(conn))  # only where the worker may read local images
    thumbnails = {
        pid: _data_uri(product, thumbnail_size, allow_private_images, roots)
        for pid, product in products.items()
    }
    items = [
        {
            "pair": p,
            "label": labels.current_label(conn, p.source_product_id, p.target_product_id),
            "source": {
                "product": products[p.source_product_id],
                "thumbnail": thumbnails[p.source_product_id],
            },
            "target": {
                "product": products[p.target_product_id],
                "thumbnail": thumbnails[p.target_product_id],
            },
        }
        for p in chosen
    ]
    page = TEMPLATES.get_template("export.html").render(
        run=run,
        pairs=items,
        threshold=threshold,
        by_probability=by_probability,
        css=(HERE / "static" / "review.css").read_text(encoding="utf-8"),
        exported_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / EXPORT_FILE
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{folder}: cannot write the export ({error.strerror or error})") from None
    return ExportResult(
        path=str(path), run_id=run.id, pairs=len(items), images=sum(1 for t in thumbnails.values() if t)
    )


def _decision_point(pairs: list[data.PairSignals], run: data.Run, by_probability: bool) -> float:
    if by_probability:
        return 0.5
    if run.threshold is not None:
        return run.threshold
    scores = [p.score for p in pairs if p.score is not None]
    return statistics.median(scores) if scores else 0.0


def _value(pair: data.PairSignals, by_probability: bool) -> float:
    value = pair.match_probability if by_probability else pair.score
    return value if value is not None else float("inf")  # unscored pairs go last


def _data_uri(product: data.Product, size: int, allow_private_images: bool, roots: tuple) -> str | None:
    if not product.image:
        return None
    try:
        thumb = make_thumbnail(product.image, size, allow_private_images, roots)
    except ImageError:  # the page shows "no image"; one broken picture must not stop the export
        return None
    return f"data:{thumb.media_type};base64," + base64.b64encode(thumb.content).decode("ascii")
