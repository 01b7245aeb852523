"""Who may talk to the viewer: loopback by default, a token for every request.

The viewer always requires a token: on loopback one is generated for each run and
printed in the address (a web page from another site can open a WebSocket to
127.0.0.1, so loopback alone keeps nobody out); another address needs
`--allow-remote` and a token chosen by the operator. The token is checked twice:
an aiohttp middleware refuses every HTTP request and WebSocket upgrade that carries
neither `?secret=TOKEN` nor the session cookie set from it, and wslink refuses a
WebSocket client whose hello message lacks it (trame's client reads `secret` from
the address and removes it from the address bar).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from ..errors import ParameterError

TOKEN_QUERY = "secret"
TOKEN_COOKIE = "medseglens_viewer"
MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_access(host: str, allow_remote: bool, token: str | None) -> str:
    """Check the bind policy and return the token every request must carry."""
    if token is not None and (
        len(token) < MIN_TOKEN_LENGTH or not token.isprintable() or any(c.isspace() for c in token)
    ):
        raise ParameterError(
            f"--token must be at least {MIN_TOKEN_LENGTH} printable characters without spaces; "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )
    if is_loopback(host):
        return token or secrets.token_urlsafe(24)
    if not allow_remote:
        raise ParameterError(
            f"--host {host} is not a loopback address; add --allow-remote and --token TOKEN to listen on it"
        )
    if token is None:
        raise ParameterError(f"--host {host} with --allow-remote needs --token TOKEN (or $MEDSEGLENS_VIEWER_TOKEN)")
    return token


def token_matches(supplied: str | None, token: str) -> bool:
    return bool(supplied) and hmac.compare_digest(supplied.encode(), token.encode())


def token_middleware(token: str):
    """An aiohttp middleware: no token, no response; a foreign Origin, no WebSocket."""
    from aiohttp import web

    @web.middleware
    async def guard(request: web.Request, handler):
        from_query = request.query.get(TOKEN_QUERY)
        if not (token_matches(from_query, token) or token_matches(request.cookies.get(TOKEN_COOKIE), token)):
            return web.Response(
                status=403,
                text=(
                    "MedSegLens viewer: open the address printed by `medseglens serve` (it carries the access token)\n"
                ),
            )
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            return web.Response(status=403, text="MedSegLens viewer: cross-origin request refused\n")
        response = await handler(request)
        if from_query and not response.prepared:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
        return response

    return guard
