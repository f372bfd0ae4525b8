"""Who may talk to the dashboard: Host/Origin checks (DNS rebinding), token, security headers."""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "DEFAULT_ALLOWED_HOSTS",
    "TOKEN_COOKIE",
    "HostGuard",
    "SecurityHeaders",
    "TokenGate",
    "is_loopback",
    "normalize_host",
]

TOKEN_COOKIE: Final = "atlas_events_token"
"""The cookie that carries the access token after the first visit."""

DEFAULT_ALLOWED_HOSTS: Final = ("localhost", "127.0.0.1", "::1")
"""Host names a loopback dashboard answers to (besides the address it is bound to)."""

_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
_SECURITY_HEADERS: Final = (
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_STREAMING_PATHS: Final = frozenset({"/events"})


def normalize_host(host: str) -> str:
    """A host name or address as compared here: lower case, no brackets, no trailing dot."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(normalize_host(host).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only.

    ``localhost`` (and names under ``.localhost``, RFC 6761), every address
    of 127.0.0.0/8, ``::1`` and IPv4-mapped loopback addresses.
    """
    name = normalize_host(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    addr = _address(name)
    return addr is not None and addr.is_loopback


def _is_remote_address(host: str | None) -> bool:
    """An IP address that other machines can reach (the wildcard counts as remote)."""
    if host is None:
        return False
    addr = _address(host)
    return addr is not None and not addr.is_loopback


# RFC 9110 7.2 / RFC 3986 3.2.2: ``uri-host [":" port]``; a bracketed IPv6
# literal (zone allowed), or a registered name / IPv4 address with at most one
# trailing dot. No userinfo, path, backslash or space: browsers never send them.
_HOST_HEADER: Final = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*(?:%25[\w.~-]+|%[\w.~-]+)?)\]"
    r"|(?P<name>[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?))"
    r"(?::(?P<port>[0-9]{0,5}))?"
)


def _host_name(netloc: str) -> str:
    """The host part of a ``Host`` header or URL netloc, normalized (port dropped).

    ``""`` for anything that is not ``host[:port]`` (userinfo, a path, a port
    over 65535...), which no allow-list entry matches.
    """
    found = _HOST_HEADER.fullmatch(netloc.strip())
    if found is None or (found["port"] and int(found["port"]) > 65535):
        return ""
    return normalize_host(found["v6"] or found["name"])


def _refuse(status: int, message: str, **extra: object) -> Response:
    body = json.dumps({"error": message, "status": status, **extra})
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


class HostGuard:
    """Refuses foreign ``Host`` and ``Origin`` headers, and unprotected remote access.

    The rules, per request, by the local address the connection arrived on
    (ASGI ``scope["server"]``):

    * **Host.** On a loopback address, or when ``allowed_hosts`` is given,
      the ``Host`` header must name an allowed host or the address itself;
      others get ``400`` (a page whose domain was rebound to 127.0.0.1 sends
      its own domain). ``"*"`` in ``allowed_hosts`` turns the check off.
    * **Origin.** On ``/events`` (streaming) and any non-GET request, an
      ``Origin`` header must be same-origin with the ``Host`` or name an
      allowed host; others (and ``Origin: null``) get ``403``.
    * **Token.** On an address other machines can reach, a dashboard
      without a token answers ``403``: remote access always needs one.

    Args:
        app: The wrapped ASGI app.
        allowed_hosts: Extra host names, or ``None`` for the defaults only.
        has_token: Whether requests are checked for an access token.
    """

    def __init__(
        self, app: ASGIApp, *, allowed_hosts: Iterable[str] | None, has_token: bool
    ) -> None:
        self.app = app
        extra = frozenset(normalize_host(h) for h in (allowed_hosts or ()))
        self.any_host = "*" in extra
        self.explicit = allowed_hosts is not None
        self.allowed = frozenset(DEFAULT_ALLOWED_HOSTS) | extra
        self.has_token = has_token

    def _allowed(self, name: str, bound: str | None) -> bool:
        return self.any_host or name in self.allowed or (bound is not None and name == bound)

    def check(self, scope: Scope) -> Response | None:
        """The refusal for this request, or ``None`` to let it through."""
        server = scope.get("server")
        bound = normalize_host(str(server[0])) if server else None
        remote = _is_remote_address(bound)
        if remote and not self.has_token:
            return _refuse(
                403,
                f"this dashboard listens on {bound}, which other machines can reach, and has no "
                "access token: give it one (token=..., --token or $ATLAS_EVENTS_TOKEN)",
            )
        request = Request(scope)
        host_header = request.headers.get("host", "")
        if not remote or self.explicit:
            name = _host_name(host_header)
            if not self._allowed(name, bound):
                allowed = sorted(self.allowed | ({bound} if bound else set()))
                return _refuse(
                    400,
                    f"Host {host_header[:100]!r} is not one of this dashboard's names "
                    f"({', '.join(allowed)}); to reach it by another name add that name "
                    "to allowed_hosts (--allow-host)",
                    allowed_hosts=allowed,
                )
        origin = request.headers.get("origin")
        if origin is not None and (
            scope["method"] not in _SAFE_METHODS or scope["path"] in _STREAMING_PATHS
        ):
            netloc = urlsplit(origin).netloc if origin != "null" else ""
            same = netloc != "" and netloc.lower() == host_header.lower()
            if not same and (not netloc or not self._allowed(_host_name(netloc), bound)):
                return _refuse(403, f"cross-origin request from {origin[:100]!r} refused")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.check(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Adds CSP, ``nosniff``, ``no-referrer`` and ``DENY`` framing to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Token:
    """The access token, compared in constant time."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None) -> None:
        self._value = None if value is None else value.encode()

    @property
    def required(self) -> bool:
        return self._value is not None

    @property
    def value(self) -> str | None:
        return None if self._value is None else self._value.decode()

    def check(self, candidate: str | None) -> bool:
        """Constant-time comparison of ``candidate`` with the token (true if none is set)."""
        if self._value is None:
            return True
        if not candidate:
            return False
        return hmac.compare_digest(candidate.encode(), self._value)


class TokenGate:
    """Lets a request through only with the access token.

    The token may come as the ``token`` query parameter (what ``EventSource``
    can send), the :data:`TOKEN_COOKIE` cookie (set when the page is first
    opened with ``?token=``) or an ``Authorization: Bearer`` header. Each
    candidate is compared in constant time.
    """

    def __init__(self, app: ASGIApp, token: Token) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        auth = request.headers.get("authorization", "")
        candidates = (
            request.query_params.get("token"),
            request.cookies.get(TOKEN_COOKIE),
            auth[7:] if auth[:7].lower() == "bearer " else None,
        )
        ok = False
        for candidate in candidates:  # no short-circuit: same work either way
            ok = self.token.check(candidate) | ok
        if ok:
            await self.app(scope, receive, send)
            return
        response = _refuse(
            401,
            "this dashboard needs its access token: open the URL that "
            "'atlas-events serve' printed (it ends in ?token=...)",
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="atlas-events"'
        await response(scope, receive, send)
