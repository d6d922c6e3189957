"""The review web app: label pairs side by side, browse a run, look at a product's neighbours.

A Starlette application with server-rendered Jinja2 pages (templates/) and a few lines of JavaScript for the
keyboard (static/). It reads runs and products through `review.data`, writes answers through `review.labels`,
asks `review.queue` which pair comes next and `review.thumbs` for pictures. After every `retrain_every` new labels
it runs the optional `retrain` hook (the learned matcher's training, plugged in by the caller) in a background
thread; the hook's cross-validated F1 is shown as a history, and its scores steer the queue.

Safe by default (guard.py): it listens on 127.0.0.1 and then accepts only local Host headers; on any other address
every page asks for a token first. Every state-changing request is a POST with a CSRF token from the same origin.
Errors are pages (pages.py), never tracebacks.
"""

from __future__ import annotations

import getpass
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from prodmatch.config import Settings
from prodmatch.errors import ImageError, ProdmatchError
from prodmatch.review import data, labels, queue
from prodmatch.review.guard import (
    AUTH_COOKIE,
    GuardMiddleware,
    checked_form,
    is_loopback,
    safe_next,
    token_digest,
)
from prodmatch.review.pages import ANSWERS, TEMPLATES, error_page, static_file
from prodmatch.review.thumbs import ThumbnailCache

log = logging.getLogger(__name__)

RetrainHook = Callable[[psycopg.Connection], dict]
T = TypeVar("T")
USER_COOKIE, BLIND_COOKIE = "pm_user", "pm_blind"
RESERVE_SECONDS = 120.0  # how long a pair shown to one person is kept from the others


@dataclass(frozen=True)
class ReviewOptions:
    """How the review app runs: which run, where it listens, who labels, when it retrains."""

    run_id: int | None = None
    source: str | None = None
    target: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # required when host is not a loopback address
    user: str = field(default_factory=lambda: _default_user())
    retrain_every: int = 20  # new labels between two runs of the retrain hook
    allow_private_images: bool = False  # let image URLs point at loopback/private hosts (tests, intranets)
    random_share: float = queue.RANDOM_SHARE
    seed: int = 0

    @property
    def local(self) -> bool:
        return is_loopback(self.host)


def create_app(
    settings: Settings, options: ReviewOptions | None = None, retrain: RetrainHook | None = None
) -> GuardMiddleware:
    """The review application (an ASGI app) for one run; see ReviewOptions.

    `retrain(conn) -> dict` runs in a background thread, on its own connection (committed afterwards), after every
    `options.retrain_every` new labels. What it returns: "f1" (cross-validated F1, shown as a history on the
    label page), "threshold" (the matcher's decision threshold, default 0.5), "score" (a callable taking the run's
    pairs, a list of `data.PairSignals`, and returning one match probability per pair: the queue then asks about
    the pairs nearest the threshold); other plain values are kept in the history. A hook may instead write
    `prodmatch.matches.match_probability`; the app re-reads the run's pairs after each retrain.
    """
    options = options or ReviewOptions()
    if not options.local and not options.token:
        raise ProdmatchError(
            f"listening on {options.host} lets other machines in: give a token (--token or PRODMATCH_REVIEW_TOKEN)"
        )
    state = ReviewState(settings, options, retrain)
    routes = [
        Route("/", lambda request: RedirectResponse("/label", 303)),
        Route("/label", state.label_page, methods=["GET"]),
        Route("/label", state.answer, methods=["POST"]),
        Route("/undo", state.undo, methods=["POST"]),
        Route("/browse", state.browse_page),
        Route("/product/{product_id:int}", state.product_page),
        Route("/thumb/{product_id:int}", state.thumbnail),
        Route("/login", state.login_page, methods=["GET"]),
        Route("/login", state.login, methods=["POST"]),
        Route("/static/{name:str}", static_file),
        Route("/retrain-status", state.retrain_status),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: error_page, ProdmatchError: error_page, Exception: error_page},
    )
    app.state.review = state
    return GuardMiddleware(app, local=options.local, token=options.token)


class ReviewState:
    """What the pages share: the run, the thumbnail cache, the retraining history and the queue's scores."""

    def __init__(self, settings: Settings, options: ReviewOptions, retrain: RetrainHook | None) -> None:
        self.settings = settings
        self.options = options
        self.retrain = retrain
        with data.connect(settings) as conn:
            self.run = data.find_run(conn, options.run_id, options.source, options.target)
            # The learned matcher's columns arrive with a later migration: look once, use them when there.
            self.optional = data.optional_match_columns(conn)
        self.thumbs = ThumbnailCache(allow_private_addresses=options.allow_private_images)
        self._lock = threading.Lock()
        self.new_labels = 0
        self.retraining = False
        self.history: list[dict] = []
        self.probabilities: dict[tuple[int, int], float] = {}
        self.threshold = 0.5
        self._pairs: list[data.PairSignals] | None = (
            None  # the run's pairs, read once (re-read after a retrain)
        )
        self._shown: dict[tuple[int, int], tuple[str, float]] = {}  # pair -> (who sees it, since when)

    # --- pages -------------------------------------------------------------------------------------------------

    async def label_page(self, request: Request) -> Response:
        blind = _blind(request)
        context = await self._db(lambda conn: self._label_context(conn, request))
        context.update(blind=blind, last=ANSWERS.get(request.query_params.get("last", "")))
        response = self.render(request, "label.html", context)
        if "blind" in request.query_params:
            response.set_cookie(BLIND_COOKIE, "1" if blind else "0", samesite="strict", httponly=True)
        return response

    async def answer(self, request: Request) -> Response:
        form = await checked_form(request)
        answer = form.get("label", "")
        if answer not in labels.LABELS:
            raise HTTPException(400, f"unknown answer {answer!r}; use match, non-match or unsure")
        source, target = _int_field(form, "source"), _int_field(form, "target")
        user = _user(request, self.options)

        def record(conn: psycopg.Connection) -> None:
            if data.pair_signals(conn, self.run, self.optional, source, target) is None:
                raise HTTPException(404, f"run {self.run.id} holds no pair {source} → {target}")
            labels.record_label(conn, source, target, answer, user, self.run.id)

        await self._db(record)
        self._count_new_label()
        return RedirectResponse(f"/label?last={quote(answer)}", 303)

    async def undo(self, request: Request) -> Response:
        await checked_form(request)
        user = _user(request, self.options)

        def take_back(conn: psycopg.Connection) -> labels.Undone | None:
            undone = labels.undo_last(conn, user)
            if undone is None:
                return None
            # The person's latest answer may belong to another run's pair; this app can show only its own.
            in_run = data.pair_signals(
                conn, self.run, self.optional, undone.source_product_id, undone.target_product_id
            )
            return undone if in_run else None

        undone = await self._db(take_back)
        if undone is None:
            return RedirectResponse("/label", 303)
        # Show the pair again, so a slip of the finger is answered again at once.
        return RedirectResponse(
            f"/label?source={undone.source_product_id}&target={undone.target_product_id}", 303
        )

    async def browse_page(self, request: Request) -> Response:
        filters = _browse_filters(request)

        def read(conn: psycopg.Connection) -> dict:
            return {
                "page": data.browse(conn, self.run, self.optional, filters),
                "catalogs": data.catalogs(conn),
                "counts": labels.label_counts(conn, self.run.id),
            }

        context = await self._db(read)
        query = {k: v for k, v in request.query_params.items() if v not in ("", None)}
        return self.render(request, "browse.html", {**context, "filters": filters, "query": query})

    async def product_page(self, request: Request) -> Response:
        product_id = request.path_params["product_id"]

        def read(conn: psycopg.Connection) -> dict:
            product = data.products(conn, [product_id]).get(product_id)
            if product is None:
                raise HTTPException(404, f"no product with id {product_id}")
            neighbours = data.neighbours(conn, product_id, self.run.model)
            shown = data.products(conn, [n.product_id for rows in neighbours.values() for n in rows])
            with_image = {i for i, p in shown.items() if p.image}
            in_run = data.browse(conn, self.run, self.optional, data.BrowseFilters(product_id=product_id))
            return {"product": product, "neighbours": neighbours, "with_image": with_image, "in_run": in_run}

        return self.render(request, "product.html", await self._db(read))

    async def thumbnail(self, request: Request) -> Response:
        product_id = request.path_params["product_id"]
        size = _int_param(request, "size", 240, 32, 480)
        # Only a product's own stored reference is ever loaded.
        ref, exists, roots = await self._db(
            lambda conn: (
                data.stored_image(conn, product_id),
                data.product_exists(conn, product_id),
                data.image_roots(conn, self.settings),
            )
        )
        self.thumbs.roots = roots  # the worker's roots now (a catalogue ingested since adds one)
        if not exists:
            raise HTTPException(404, f"no product with id {product_id}")
        if ref is None:
            raise HTTPException(404, f"product {product_id} has no stored image")
        try:
            thumb = await run_in_threadpool(self.thumbs.get, ref, size)
        except ImageError as error:
            return PlainTextResponse(str(error), status_code=404, headers={"Cache-Control": "no-store"})
        return Response(
            thumb.content, media_type=thumb.media_type, headers={"Cache-Control": "private, max-age=600"}
        )

    async def retrain_status(self, request: Request) -> Response:
        return JSONResponse({"retraining": self.retraining, "history": self.history})

    async def login_page(self, request: Request) -> Response:
        return self.render(
            request, "login.html", {"next": safe_next(request.query_params.get("next")), "error": None}
        )

    async def login(self, request: Request) -> Response:
        form = await checked_form(request)
        target = safe_next(form.get("next"))
        if not self.options.token or not hmac.compare_digest(
            form.get("token", "").encode(), self.options.token.encode()
        ):
            context = {"next": target, "error": "That token is not the one this server printed."}
            return self.render(request, "login.html", context, status_code=403)
        response = RedirectResponse(target, 303)
        response.set_cookie(AUTH_COOKIE, token_digest(self.options.token), httponly=True, samesite="strict")
        name = re.sub(r"[^\w .@-]", "", form.get("name", "")).strip()[:64]
        if name:
            response.set_cookie(USER_COOKIE, quote(name), httponly=True, samesite="strict")
        return response

    # --- helpers -----------------------------------------------------------------------------------------------

    async def _db(self, work: Callable[[psycopg.Connection], T]) -> T:
        """Run `work` on a fresh connection in a worker thread, so a slow query never stalls other requests."""

        def run() -> T:
            with data.connect(self.settings) as conn:
                return work(conn)

        return await run_in_threadpool(run)

    def _label_context(self, conn: psycopg.Connection, request: Request) -> dict[str, Any]:
        counts = labels.label_counts(conn, self.run.id)
        pair = self._requested_pair(conn, request) or self._next_pair(
            conn, counts.labelled, _user(request, self.options)
        )
        context: dict[str, Any] = {"counts": counts, "pair": pair}
        if pair is not None:
            found = data.products(conn, [pair.source_product_id, pair.target_product_id])
            context.update(
                source=found.get(pair.source_product_id),
                target=found.get(pair.target_product_id),
                current=labels.current_label(conn, pair.source_product_id, pair.target_product_id),
                probability=self._probability(pair),
            )
        return context

    def render(self, request: Request, template: str, context: dict, status_code: int = 200) -> Response:
        base = {
            "run": self.run,
            "user": _user(request, self.options),
            "csrf": request.scope.get("csrf", ""),
            "history": list(self.history),
            "retraining": self.retraining,
            "retrain_enabled": self.retrain is not None,
            "retrain_every": self.options.retrain_every,
            "path": request.url.path,
        }
        return TEMPLATES.TemplateResponse(request, template, {**base, **context}, status_code=status_code)

    def _requested_pair(self, conn: psycopg.Connection, request: Request) -> data.PairSignals | None:
        if "source" not in request.query_params:
            return None
        source, target = _int_param(request, "source", 0, 0, None), _int_param(request, "target", 0, 0, None)
        pair = data.pair_signals(conn, self.run, self.optional, source, target)
        if pair is None:
            raise HTTPException(404, f"run {self.run.id} holds no pair {source} → {target}")
        return pair

    def _next_pair(
        self, conn: psycopg.Connection, labelled_so_far: int, user: str
    ) -> data.PairSignals | None:
        pairs = self._pairs
        if pairs is None:
            pairs = self._pairs = data.run_pairs(conn, self.run, self.optional)
        by_key = {(p.source_product_id, p.target_product_id): p for p in pairs}
        candidates = [
            queue.Candidate(p.source_product_id, p.target_product_id, p.score, self._probability(p))
            for p in pairs
        ]
        labelled = labels.labelled_pairs(conn)
        with self._lock:
            now = time.monotonic()
            # A pair on someone else's screen is skipped for a while, so two people labelling at once see
            # different pairs (when both do answer one pair, the later answer wins and history keeps both).
            held = {
                k for k, (who, since) in self._shown.items() if who != user and now - since < RESERVE_SECONDS
            }
            chosen = queue.next_pairs(
                candidates,
                labelled | held,
                threshold=self.threshold,
                random_share=self.options.random_share,
                seed=self.options.seed + labelled_so_far,  # a new pair mix after each label, replayable
            )
            if not chosen:  # only pairs others are looking at are left: offer one of those after all
                chosen = queue.next_pairs(
                    candidates, labelled, threshold=self.threshold, seed=self.options.seed
                )
            if not chosen:
                return None
            self._shown = {
                k: v for k, v in self._shown.items() if v[0] != user and now - v[1] < RESERVE_SECONDS
            }
            self._shown[chosen[0].pair] = (user, now)
        return by_key[chosen[0].pair]

    def _probability(self, pair: data.PairSignals) -> float | None:
        found = self.probabilities.get((pair.source_product_id, pair.target_product_id))
        return found if found is not None else pair.match_probability

    def _count_new_label(self) -> None:
        with self._lock:
            self.new_labels += 1
            if self.retrain is None or self.retraining or self.new_labels < self.options.retrain_every:
                return
            self.retraining, self.new_labels = True, 0
        threading.Thread(target=self._retrain, name="prodmatch-retrain", daemon=True).start()

    def _retrain(self) -> None:
        """Run the hook on its own connection; keep its F1 and let its scores steer the queue."""
        started = time.perf_counter()
        entry: dict[str, Any] = {"at": time.strftime("%H:%M:%S")}
        try:
            with data.connect(self.settings) as conn:
                result = dict(self.retrain(conn) or {})
                entry["labels"] = labels.label_counts(conn, self.run.id).labelled
                score = result.pop("score", None)
                if callable(score):
                    pairs = data.run_pairs(conn, self.run, self.optional)
                    values = list(score(pairs)) if pairs else []
                    self.probabilities = {
                        (p.source_product_id, p.target_product_id): float(v)
                        for p, v in zip(pairs, values, strict=True)
                    }
                if result.get("threshold") is not None:
                    self.threshold = float(result["threshold"])
                self._pairs = None  # the hook may have written new probabilities into prodmatch.matches
            entry.update({k: v for k, v in result.items() if isinstance(v, (int, float, str)) or v is None})
        except Exception as error:  # a failing hook must not take the app down; the page shows why
            log.exception("retraining failed")
            entry["error"] = f"{type(error).__name__}: {error}"
        entry["seconds"] = round(time.perf_counter() - started, 2)
        with self._lock:
            self.history.append(entry)
            self.retraining = False


# --- request parsing -----------------------------------------------------------------------------------------


def _browse_filters(request: Request) -> data.BrowseFilters:
    q = request.query_params
    status = q.get("status", "all")
    sort = q.get("sort", "score")
    return data.BrowseFilters(
        status=status if status in ("all", "accepted", "candidates") else "all",
        min_score=_float_param(request, "min"),
        max_score=_float_param(request, "max"),
        catalog=q.get("catalog") or None,
        brand=q.get("brand") or None,
        category=q.get("category") or None,
        min_price_gap=_percent_param(request, "gap"),
        min_disagreement=_float_param(request, "disagree"),
        sort=sort if sort in data.SORTS else "score",
        descending=q.get("order", "desc") != "asc",
        page=_int_param(request, "page", 1, 1, None),
        per_page=_int_param(request, "per_page", 50, 5, 200),
    )


def _float_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be a number, got {raw!r}") from None


def _percent_param(request: Request, name: str) -> float | None:
    value = _float_param(request, name)
    return None if value is None else value / 100


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise HTTPException(400, f"{name} must be a whole number, got {raw!r}")
    value = max(low, int(raw))
    return min(value, high) if high is not None else value


def _int_field(form: dict[str, str], name: str) -> int:
    raw = form.get(name, "")
    if not raw.isdigit():
        raise HTTPException(400, f"the form field {name} must be a product id, got {raw!r}")
    return int(raw)


def _blind(request: Request) -> bool:
    asked = request.query_params.get("blind")
    if asked is not None:
        return asked == "1"
    return request.cookies.get(BLIND_COOKIE) == "1"


def _user(request: Request, options: ReviewOptions) -> str:
    name = unquote(request.cookies.get(USER_COOKIE, "")).strip()
    return name or options.user


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in a container: still a usable label author
        return "reviewer"
