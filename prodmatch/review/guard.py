"""The review app's guards: who may use it and which requests may change anything.

On a loopback address only local Host headers are answered (a page elsewhere that points its own name at
127.0.0.1, DNS rebinding, gets nothing). On any other address every page but the login form needs the token,
proved by a cookie holding its digest. Every POST must come from the same origin (Origin, else Referer) and carry
the CSRF token of the double-submit cookie set here. Every response gets a strict Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from prodmatch.review.pages import error_response

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
CSRF_COOKIE, AUTH_COOKIE = "pm_csrf", "pm_auth"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class GuardMiddleware:
    """Host and token checks, the CSRF cookie, and security headers on every response (pure ASGI)."""

    OPEN_PATHS = ("/login", "/static/")

    def __init__(self, app, *, local: bool, token: str | None) -> None:
        self.app = app
        self.local = local
        self.token = token

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
        if self.local and host not in LOCAL_HOSTS:
            # A page on another site that resolves its own name to 127.0.0.1 (DNS rebinding) stops here.
            return error_response(
                421, "Wrong host", f"This server answers only to 127.0.0.1 or localhost, not {host!r}."
            )
        if self.local or request.url.path.startswith(self.OPEN_PATHS):
            return None
        given = cookies.get(AUTH_COOKIE, "")
        if self.token and hmac.compare_digest(given.encode(), token_digest(self.token).encode()):
            return None
        if request.method == "GET":
            return RedirectResponse("/login?next=" + quote(safe_next(str(request.url.path)), safe="/"), 303)
        return error_response(
            401, "Token needed", "Log in with the token the server printed when it started."
        )


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


def token_digest(token: str) -> str:
    """What the auth cookie holds: a digest, so the cookie jar never holds the token itself."""
    return hashlib.sha256(b"prodmatch-review:" + token.encode()).hexdigest()


def safe_next(target: str | None) -> str:
    """Only a path on this server (no //host, no scheme) is a place to go back to after logging in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/label"
    return target
