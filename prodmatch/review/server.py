"""Serving the review app with uvicorn: in the foreground for `prodmatch review`, or in a thread for tests.

On a loopback address no token is needed; on any other address a token is required (the one given, or a fresh
random one that is printed), because anyone who can reach the port could otherwise label and read the catalogue.
"""

from __future__ import annotations

import secrets
import threading
import time
import webbrowser
from collections.abc import Callable

import uvicorn

from prodmatch.config import Settings
from prodmatch.errors import ProdmatchError
from prodmatch.review.app import RetrainHook, ReviewOptions, create_app


def serve(
    settings: Settings,
    options: ReviewOptions | None = None,
    *,
    open_browser: bool = False,
    retrain: RetrainHook | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Run the review app until interrupted; prints the address (and the token on a non-local address)."""
    options = options or ReviewOptions()
    if not options.local and not options.token:
        options = _with_token(options, secrets.token_urlsafe(18))
        announce(f"token (asked for by the page): {options.token}")
    app = create_app(settings, options, retrain)
    url = f"http://{_url_host(options.host)}:{options.port}/label"
    announce(f"prodmatch review: {url} (Ctrl+C to stop)")
    if open_browser:
        threading.Timer(0.8, webbrowser.open, args=(url,)).start()
    config = uvicorn.Config(app, host=options.host, port=options.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run()
    except OSError as error:  # e.g. the port is taken
        raise ProdmatchError(
            f"cannot listen on {options.host}:{options.port}: {error.strerror or error}"
        ) from None
    if not server.started:
        raise ProdmatchError(
            f"cannot listen on {options.host}:{options.port} (is the port in use? try --port)"
        )


class BackgroundServer:
    """Serve an ASGI app on 127.0.0.1 in a daemon thread (tests, notebooks); stops when the block ends.

    with BackgroundServer(app) as server:
        requests.get(server.url + "/label")
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0) -> None:
        self._config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(self._config)
        self._thread = threading.Thread(target=self._server.run, name="prodmatch-review", daemon=True)
        self.url = ""

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ProdmatchError("the review server did not start")
            time.sleep(0.02)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{_url_host(host)}:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def _with_token(options: ReviewOptions, token: str) -> ReviewOptions:
    from dataclasses import replace

    return replace(options, token=token)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
