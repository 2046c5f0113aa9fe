"""Tickets: short-lived, single-use, signed passes that let a client without cookies open a socket.

A ticket is ``signing.dumps({"n": nonce, "u": user_pk, "r": rooms})``: readable
by anyone, forgeable by no one without ``SECRET_KEY``. It carries nothing
secret, because it travels in a query string and query strings end up in
proxy logs. What binds it lives server-side, in the cache ``TICKET_CACHE``
under its nonce until ``TICKET_MAX_AGE``: the user's session auth hash (a
password change refuses it) and the session it was issued from (a logout
refuses it). Redeeming deletes that entry, and only the caller whose delete
removed it gets the user: the ticket works once, across every process that
shares the cache.
"""

from __future__ import annotations

import dataclasses
import secrets
import typing
from collections.abc import Iterable
from importlib import import_module

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.core import signing
from django.core.cache import BaseCache, caches
from django.utils.crypto import constant_time_compare

from .conf import get_config

__all__ = ["Redeemed", "TicketRefused", "issue_ticket", "redeem_ticket"]

SALT = "nexios_compat.tickets"
_CACHE_PREFIX = "nexios_compat.ticket:"


class TicketRefused(Exception):
    """A ticket that does not let its bearer in; ``reason`` says why (for the log, not the client)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Redeemed:
    """Who a valid ticket lets in, and the rooms it is limited to (None: any the policy allows)."""

    user: typing.Any
    rooms: frozenset[str] | None


def ticket_cache() -> BaseCache:
    """The cache that remembers issued tickets (``TICKET_CACHE``)."""
    return caches[get_config()["TICKET_CACHE"]]


def issue_ticket(
    user: typing.Any, *, session_key: str | None = None, rooms: Iterable[str] | None = None
) -> str:
    """Return a ticket for ``user``; with ``session_key`` it dies with that session."""
    if not getattr(user, "is_authenticated", False):
        raise ValueError("Tickets are issued to logged-in users only")
    max_age = get_config()["TICKET_MAX_AGE"]
    nonce = secrets.token_urlsafe(16)
    payload: dict[str, typing.Any] = {"n": nonce, "u": str(user.pk)}
    if rooms is not None:
        payload["r"] = sorted(set(rooms))
    record = {"user": str(user.pk), "hash": user.get_session_auth_hash(), "session": session_key}
    ticket_cache().set(_CACHE_PREFIX + nonce, record, timeout=max_age)
    return signing.dumps(payload, salt=SALT, compress=True)


def redeem_ticket(ticket: str) -> Redeemed:
    """Use ``ticket`` up and return whom it lets in; raise :class:`TicketRefused` if it lets no one in."""
    try:
        # Signature and age first: a forged or stale ticket costs no cache or database trip.
        payload = signing.loads(ticket, salt=SALT, max_age=get_config()["TICKET_MAX_AGE"])
    except signing.SignatureExpired:
        raise TicketRefused("expired") from None
    except signing.BadSignature:
        raise TicketRefused("bad signature") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("n"), str):
        raise TicketRefused("malformed")
    cache = ticket_cache()
    key = _CACHE_PREFIX + payload["n"]
    record = cache.get(key)
    # delete() is the claim: of two sockets presenting one ticket, only one removes the entry.
    if not isinstance(record, dict) or not cache.delete(key):
        raise TicketRefused("unknown or already used")
    if record.get("user") != payload.get("u"):
        raise TicketRefused("not the user it was issued to")
    user = get_user_model()._default_manager.filter(pk=record["user"]).first()
    if user is None:
        raise TicketRefused("no such user")
    if not getattr(user, "is_active", True):
        raise TicketRefused("inactive user")
    if not constant_time_compare(record.get("hash", ""), user.get_session_auth_hash()):
        raise TicketRefused("password changed since it was issued")
    if record.get("session") and not _session_is_live(record["session"], user):
        raise TicketRefused("its session ended (logged out)")
    rooms = payload.get("r")
    return Redeemed(user=user, rooms=frozenset(rooms) if isinstance(rooms, list) else None)


def _session_is_live(session_key: str, user: typing.Any) -> bool:
    """Whether the session still exists and is still ``user``'s, with the same password."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return bool(
        store.get(SESSION_KEY) == str(user.pk)
        and constant_time_compare(store.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash())
    )
