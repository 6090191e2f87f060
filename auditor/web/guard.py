"""Who may reach ``audit serve``, and what every answer carries.

A web view of an audit trail is read-only and, by default, for the person at
the machine: it binds to loopback, where no login is asked (as Jupyter's and
TensorBoard's local servers do).  Loopback alone is not enough in a browser:
a page from anywhere can make the browser send requests to 127.0.0.1, and a
DNS-rebinding name can even read the answers.  So:

* only GET and HEAD are served (a read-only view; 405 otherwise);
* on loopback, the ``Host`` header must name loopback (``127.0.0.1``,
  ``localhost``, ``[::1]``): a rebinding name is refused (the defence the
  Chromium and Kubernetes dashboards' local proxies use);
* binding beyond loopback needs an explicit ``--allow-remote`` *and* a token,
  and then every request must carry it: ``Authorization: Bearer``, the
  ``token`` query parameter (the first page load), or the cookie that the
  first page load sets (``HttpOnly; SameSite=Strict``), compared in constant
  time (``hmac.compare_digest``);
* every answer forbids scripts, styles and frames from anywhere but the
  server itself (Content-Security-Policy ``default-src 'self'``, no inline
  script): even a record that slipped past the page's escaping could not
  run.  The page itself never puts record text into HTML (``textContent``).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "nic_sandbox_audit_token"
#: Shortest token accepted: 128 bits as hex (``secrets.token_hex(16)``).
MIN_TOKEN = 32
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
        b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class BindRefused(ValueError):
    """A bind address this server will not use as asked (one line)."""


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address (a name is resolved)."""
    text = host.strip("[]")
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(text, None)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


#: The flags ``audit serve`` names in its refusals (``fuzz --serve`` passes its own).
FLAGS = ("--host", "--allow-remote", "--token-file")


def check_bind(host: str, allow_remote: bool, token: str | None, flags: tuple[str, str, str] = FLAGS) -> None:
    """Raise ``BindRefused`` unless binding ``host`` is allowed: loopback, or ``allow_remote`` with a token.

    ``flags``: the host, allow-remote and token-file flags as the command names them (``fuzz --serve-host``)."""
    host_flag, remote_flag, token_flag = flags
    if is_loopback(host):
        return
    if not allow_remote:
        raise BindRefused(
            f"{host_flag} {host}: not a loopback address; serving beyond this machine needs {remote_flag} and a token"
        )
    if token is None:
        raise BindRefused(f"{host_flag} {host}: {remote_flag} needs a token ({token_flag}, or the environment)")
    check_token(token)


def check_token(token: str) -> None:
    """A token long enough to guess at no rate, of characters a cookie and a URL carry as they are."""
    if not re.fullmatch(r"[A-Za-z0-9._~-]+", token):
        raise BindRefused("token: letters, digits and ._~- only")
    if len(token) < MIN_TOKEN:
        raise BindRefused(
            f"token: at least {MIN_TOKEN} characters (python -c 'import secrets; print(secrets.token_hex(16))')"
        )


def _host_part(value: str) -> str:
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """ASGI middleware: method, Host and token checks, and the security headers on every answer."""

    def __init__(self, app: ASGIApp, token: str | None = None, loopback: bool = True) -> None:
        self.app = app
        self.token = token
        self.loopback = loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if scope["method"] not in ("GET", "HEAD"):
            await _refuse(send, 405, "read-only: only GET and HEAD are served", [(b"allow", b"GET, HEAD")])
            return
        if self.loopback and _host_part(headers.get("host", "")).lower() not in LOOPBACK_NAMES:
            await _refuse(send, 403, "Host header is not a loopback name (this server only answers 127.0.0.1)")
            return
        set_cookie = False
        if self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            from_query = (query.get("token") or [""])[0]
            auth = headers.get("authorization", "")
            cookie = SimpleCookie()
            try:
                cookie.load(headers.get("cookie", ""))
            except Exception:
                cookie = SimpleCookie()
            given = [
                auth[7:] if auth.lower().startswith("bearer ") else "",
                cookie[COOKIE].value if COOKIE in cookie else "",
                from_query,
            ]
            if not any(g and hmac.compare_digest(g.encode(), self.token.encode()) for g in given):
                await _refuse(send, 401, "a token is needed: ?token=..., or Authorization: Bearer ...")
                return
            set_cookie = bool(from_query)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(HEADERS)
                if set_cookie and self.token is not None:
                    extra.append(
                        (b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode("latin-1"))
                    )
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _refuse(send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = ('{"error":"' + text.replace('"', "'") + '"}').encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})
