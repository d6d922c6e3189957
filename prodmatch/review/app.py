"""The review web app: label pairs side by side, browse a run, look at a product's neighbours.

A Starlette application with server-rendered Jinja2 pages (templates/) and a few lines of JavaScript for the
keyboard (static/). It reads runs and products through `review.data`, writes answers through `review.labels`,
asks `review.queue` which pair comes next and `review.thumbs` for pictures. After every `retrain_every` new labels
it runs the optional `retrain` hook (the learned matcher's training, plugged in by the caller) in a background
thread; the hook's cross-validated F1 is shown as a history, and its scores steer the queue.

Safe by default: it listens on 127.0.0.1 and then accepts only local Host headers (no DNS rebinding); on any other
address every page asks for a token first (login form, cookie). Every state-changing request is a POST that must
carry the page's CSRF token (double-submit cookie) and come from the same origin (Origin or Referer). Errors are
pages, never tracebacks.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import html
import ipaddress
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import psycopg
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from prodmatch.config import Settings
from prodmatch.errors import ImageError, ProdmatchError
from prodmatch.review import data, labels, queue
from prodmatch.review.thumbs import ThumbnailCache

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
RetrainHook = Callable[[psycopg.Connection], dict]
T = TypeVar("T")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
CSRF_COOKIE, AUTH_COOKIE, USER_COOKIE, BLIND_COOKIE = "pm_csrf", "pm_auth", "pm_user", "pm_blind"
ANSWERS = {"match": "same", "non-match": "different", "unsure": "unsure"}
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


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
    return GuardMiddleware(app, options)


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
        ref, exists = await self._db(
            lambda conn: (data.stored_image(conn, product_id), data.product_exists(conn, product_id))
        )
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
        from starlette.responses import JSONResponse

        return JSONResponse({"retraining": self.retraining, "history": self.history})

    async def login_page(self, request: Request) -> Response:
        return self.render(
            request, "login.html", {"next": _safe_next(request.query_params.get("next")), "error": None}
        )

    async def login(self, request: Request) -> Response:
        form = await checked_form(request)
        target = _safe_next(form.get("next"))
        if not self.options.token or not hmac.compare_digest(
            form.get("token", "").encode(), self.options.token.encode()
        ):
            context = {"next": target, "error": "That token is not the one this server printed."}
            return self.render(request, "login.html", context, status_code=403)
        response = RedirectResponse(target, 303)
        response.set_cookie(AUTH_COOKIE, _token_digest(self.options.token), httponly=True, samesite="strict")
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


# --- security ------------------------------------------------------------------------------------------------


class GuardMiddleware:
    """Host and token checks, the CSRF cookie, and security headers on every response (pure ASGI)."""

    OPEN_PATHS = ("/login", "/static/")

    def __init__(self, app: Starlette, options: ReviewOptions) -> None:
        self.app = app
        self.options = options

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        cookies = request.cookies
        token = cookies.get(CSRF_COOKIE, "")
        fresh = not re.fullmatch(r"[A-Za-z0-9_-]{32,64}", token)
        if fresh:
            token = secrets.token_urlsafe(32)
        scope["csrf"] = token
        denial = self._deny(request, cookies)
        send = _with_headers(send, token if fresh else None)
        if denial is not None:
            await denial(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _deny(self, request: Request, cookies: dict) -> Response | None:
        host = (request.url.hostname or "").strip("[]")
        if self.options.local and host not in LOCAL_HOSTS:
            # A page on another site that resolves its own name to 127.0.0.1 (DNS rebinding) stops here.
            return _page(
                421, "Wrong host", f"This server answers only to 127.0.0.1 or localhost, not {host!r}."
            )
        if self.options.local or request.url.path.startswith(self.OPEN_PATHS):
            return None
        given = cookies.get(AUTH_COOKIE, "")
        if self.options.token and hmac.compare_digest(
            given.encode(), _token_digest(self.options.token).encode()
        ):
            return None
        if request.method == "GET":
            return RedirectResponse("/login?next=" + quote(_safe_next(str(request.url.path)), safe="/"), 303)
        return _page(401, "Token needed", "Log in with the token the server printed when it started.")


async def checked_form(request: Request) -> dict[str, str]:
    """The posted form, once it has proved it comes from our own page: same origin and the CSRF token."""
    origin = request.headers.get("origin")
    referer = request.headers.get("referer")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin != "null":
        same = origin == own
    elif referer:
        same = referer == own or referer.startswith(own + "/")
    else:
        same = False
    if not same:
        raise HTTPException(403, "This form was not sent from this review app (Origin/Referer check).")
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(values.get("csrf", "").encode(), cookie.encode()):
        raise HTTPException(
            403, "The form's security token is missing or stale: reload the page and try again."
        )
    return values


def _with_headers(send, csrf_token: str | None):
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (
            b"content-security-policy",
            b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self';"
            b" frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    ]
    if csrf_token:
        headers.append(
            (b"set-cookie", f"{CSRF_COOKIE}={csrf_token}; Path=/; SameSite=Strict; HttpOnly".encode())
        )

    async def wrapped(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)

    return wrapped


def _token_digest(token: str) -> str:
    """What the auth cookie holds: a digest, so the cookie jar never holds the token itself."""
    return hashlib.sha256(b"prodmatch-review:" + token.encode()).hexdigest()


def _safe_next(target: str | None) -> str:
    """Only a path on this server (no //host, no scheme) is a place to go back to after logging in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/label"
    return target


# --- errors and static files ---------------------------------------------------------------------------------


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
    return _page(status, titles.get(status, "Error" if status < 500 else "Server error"), message)


def _page(status: int, title: str, message: str) -> Response:
    from starlette.responses import HTMLResponse

    body = TEMPLATES.get_template("error.html").render(status=status, title=title, message=message)
    return HTMLResponse(body, status_code=status)


STATIC = {"review.css": "text/css", "review.js": "text/javascript"}


async def static_file(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC:  # a fixed list: nothing else on disk is reachable
        raise HTTPException(404, f"no static file {name!r}")
    return Response(
        (HERE / "static" / name).read_bytes(),
        media_type=STATIC[name],
        headers={"Cache-Control": "max-age=300"},
    )


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
    from urllib.parse import unquote

    name = unquote(request.cookies.get(USER_COOKIE, "")).strip()
    return name or options.user


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in a container: still a usable label author
        return "reviewer"


# --- templates -----------------------------------------------------------------------------------------------


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
    from urllib.parse import urlencode

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
