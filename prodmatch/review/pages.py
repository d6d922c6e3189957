"""How the review app's pages look: the Jinja2 templates and their filters, error pages, the static files.

`app.py` fills the templates with what it read; `export.py` renders the static page with the same templates and
stylesheet; `guard.py` answers refused requests with the same error page.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.templating import Jinja2Templates

from prodmatch.errors import ProdmatchError

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
ANSWERS = {"match": "same", "non-match": "different", "unsure": "unsure"}
STATIC = {"review.css": "text/css", "review.js": "text/javascript"}


async def error_page(request: Request, error: Exception) -> Response:
    """Every error as a page: the message for errors the user can fix, a plain apology for bugs (logged)."""
    if isinstance(error, HTTPException):
        status, message = error.status_code, str(error.detail)
    elif isinstance(error, ProdmatchError):
        status, message = 400, str(error)
    else:
        log.error("review app error on %s", request.url.path, exc_info=error)
        status, message = 500, "Something went wrong on the server; the details are in its log."
    titles = {400: "Bad request", 403: "Forbidden", 404: "Not found", 405: "Method not allowed"}
    return error_response(status, titles.get(status, "Error" if status < 500 else "Server error"), message)


def error_response(status: int, title: str, message: str) -> Response:
    """The error page: status, a title and one message, nothing else."""
    body = TEMPLATES.get_template("error.html").render(status=status, title=title, message=message)
    return HTMLResponse(body, status_code=status)


async def static_file(request: Request) -> Response:
    """The stylesheet and the keyboard script, from a fixed list."""
    name = request.path_params["name"]
    if name not in STATIC:  # a fixed list: nothing else on disk is reachable
        raise HTTPException(404, f"no static file {name!r}")
    return Response(
        (HERE / "static" / name).read_bytes(),
        media_type=STATIC[name],
        headers={"Cache-Control": "max-age=300"},
    )


# --- template filters ----------------------------------------------------------------------------------------


def _fmt_sim(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _fmt_price(value: float | None, currency: str | None = None) -> str:
    if value is None:
        return "–"
    amount = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    return amount + (f" {currency}" if currency else "")


def _bar(value: float | None) -> int:
    """Width in percent of a similarity bar: cosine similarities in [-1, 1] map onto 0..100."""
    if value is None:
        return 0
    return max(0, min(100, round((value + 1) * 50 if value < 0 else value * 100)))


def _sparkline(history: Sequence[dict], width: int = 260, height: int = 56) -> Markup:
    """An inline SVG line of the F1 history, scaled to its own range (no chart library, no network)."""
    points = [h["f1"] for h in history if isinstance(h.get("f1"), (int, float))]
    if len(points) < 2:
        return Markup("")
    low, high = min(points), max(points)
    span = max(high - low, 0.1)  # a flat history still reads as flat, not as noise blown up
    low = max(0.0, (low + high - span) / 2 - 0.02)
    span += 0.04
    step = (width - 12) / (len(points) - 1)
    xy = [(6 + i * step, height - 6 - (p - low) / span * (height - 12)) for i, p in enumerate(points)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5"/>' for x, y in xy)
    return Markup(
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img"'
        f' aria-label="cross-validated F1 from {points[0]:.3f} to {points[-1]:.3f}">'
        f'<polyline fill="none" stroke="currentColor" stroke-width="2" points="{html.escape(line)}"/>'
        f'<g fill="currentColor">{dots}</g></svg>'
    )


def _query(query: dict, **changes: object) -> str:
    """The current query string with some parameters changed (for sort links and the pager)."""
    merged = {**query, **{k: v for k, v in changes.items()}}
    return "?" + urlencode({k: v for k, v in merged.items() if v not in (None, "")})


def _host_of(ref: str | None) -> str:
    if not ref:
        return ""
    parts = urlsplit(ref)
    return parts.hostname or "local file"


TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
TEMPLATES.env.filters.update(sim=_fmt_sim, price=_fmt_price, bar=_bar, host_of=_host_of)
TEMPLATES.env.globals.update(sparkline=_sparkline, with_query=_query, answers=ANSWERS)
