"""The operator's own TURN servers for browsers, with coturn's `use-auth-secret`
credentials (the TURN REST API). Nobody else's STUN or TURN is ever given out."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from ..config import Settings

TURN_CREDENTIAL_LIFETIME = 12 * 3600
"""Seconds a TURN credential handed out in `welcome` stays valid."""


def turn_credentials(secret: str, now: float) -> tuple[str, str]:
    """A TURN user name and password in coturn's `use-auth-secret` scheme (the TURN
    REST API): the name is the expiry time, the password base64(HMAC-SHA1(secret,
    name)), so coturn checks them with the shared secret and no user database."""
    username = f"{int(now) + TURN_CREDENTIAL_LIFETIME}:confide"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(settings: Settings, now: float) -> list[dict[str, Any]]:
    """The operator's own TURN servers for RTCPeerConnection, or none: browsers are
    never pointed at anyone else's STUN or TURN server."""
    if not settings.turn_urls or settings.turn_secret is None:
        return []
    username, credential = turn_credentials(settings.turn_secret, now)
    return [{"urls": list(settings.turn_urls), "username": username, "credential": credential}]
