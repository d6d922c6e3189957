"""Whether LISTEN/NOTIFY reaches this connection: false behind a transaction-mode pooler such as PgBouncer.

`embed --watch` and `link --watch` wake up on NOTIFY. A pooler in transaction mode (PgBouncer's
`pool_mode = transaction`) gives a client a server backend only for the length of a transaction, so a LISTEN
stays behind on a backend the client no longer holds and its notifications never arrive. There is no portable way
to ask a pooler its mode through the pooler (`SHOW pool_mode` is for PgBouncer's admin console), and comparing
`pg_backend_pid()` across transactions misses a pooler that happens to hand the same backend back. So the check is
the behaviour itself: LISTEN on a private channel, NOTIFY it from a second connection, and see whether it arrives.
Used by `embed.worker` and `match.watch` when they start listening.
"""

from __future__ import annotations

import secrets

import psycopg
from psycopg import sql

from prodmatch.config import Settings
from prodmatch.errors import ConfigError
from prodmatch.store.server import connect, mask_url

# How long a probe NOTIFY may take to arrive. A direct connection or a session-mode pool delivers it in
# milliseconds; the wait is only spent in full when notifications are lost.
PROBE_SECONDS = 2.0


def require_notifications(listener: psycopg.Connection, settings: Settings, purpose: str) -> None:
    """Raise ConfigError (one line: the cause and the fix) unless a NOTIFY from another connection reaches
    `listener`, an autocommit connection."""
    channel = f"prodmatch_probe_{secrets.token_hex(8)}"
    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    with connect(settings, autocommit=True) as sender:
        sender.execute("SELECT pg_notify(%s, '')", (channel,))
    arrived = any(True for _ in listener.notifies(timeout=PROBE_SECONDS, stop_after=1))
    if not arrived:
        where = mask_url(settings.database_url) if settings.database_url else "the database"
        raise ConfigError(
            f"{purpose} needs LISTEN/NOTIFY, but a notification sent through {where} did not arrive: a pooler in "
            "transaction mode (PgBouncer pool_mode = transaction) does not carry them; point it at a "
            "session-mode pool or a direct connection to the server (see docs/reliability.md, Behind PgBouncer)"
        )
    listener.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
