"""Which `Host` a server answers to: the guard against DNS rebinding.

A page on `evil.example` can point that name at 127.0.0.1 after it has loaded; the browser then sends
the page's requests to the local server as same-origin, with `Host: evil.example`. Checking Origin
against Host cannot see that; answering only to the names this server is known by can. The studio
and serve both take the names from where they are bound (`names_for_bind`), plus any the user adds
(`--allow-host`, `*` for any). Starlette's TrustedHostMiddleware does the same check but answers
in plain text ("Invalid host header"); this one answers in the API's JSON and names the fix.
"""

from __future__ import annotations

import socket
from collections.abc import Collection, Iterable

from starlette.responses import JSONResponse

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ANY_HOST = "*"
WILDCARD_BINDS = {"0.0.0.0", "::", ""}


def names_for_bind(bind: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names a server bound to `bind` answers to: loopback's, the bound address itself, and
    for a wildcard bind (0.0.0.0, ::) this machine's name and addresses; then `extra`."""
    names = set(LOOPBACK_NAMES) | {bind.strip("[]").lower()}
    if bind in WILDCARD_BINDS:
        hostname = socket.gethostname()
        names |= {hostname.lower(), socket.getfqdn().lower()}
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(hostname, None)}
        except OSError:  # a machine whose own name does not resolve: its name alone, then
            pass
    return frozenset(names - WILDCARD_BINDS) | {name.strip("[]").lower() for name in extra}


def host_name(header: str) -> str:
    """A Host header's name, without its port (`[::1]:8000` -> `::1`)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class AllowedHosts:
    """ASGI middleware: a request whose Host is not one of `names` gets a 400 naming it and the
    names allowed, and reaches nothing else."""

    def __init__(self, app, names: Collection[str] = LOOPBACK_NAMES):
        self.app, self.names = app, frozenset(names)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or ANY_HOST in self.names:
            return await self.app(scope, receive, send)
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if host_name(host) not in self.names:
            allowed = ", ".join(sorted(self.names))
            message = f"Host {host!r} is not a name this server answers to ({allowed}); add it with --allow-host"
            return await JSONResponse({"error": message}, status_code=400)(scope, receive, send)
        return await self.app(scope, receive, send)
