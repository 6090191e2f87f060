"""``nic-sandbox audit serve``: the audit log as a local, read-only web page (auditor/web/).

The command line's part: flags, the bind policy (loopback unless
``--allow-remote`` and a token, auditor/web/guard.py), the listening socket
(bound here, so a port in use or a bad address is one line and exit 2, and
``--port 0`` prints the port the system chose), and uvicorn serving the
Starlette application until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from sandbox.argtypes import bounded_number
from sandbox.errors import UsageError
from verifier.audit.log import AuditError

P = TypeVar("P", bound=argparse.ArgumentParser)
#: Where the token is read from when --token-file is not given (never written anywhere, never printed).
TOKEN_ENV = "NIC_SANDBOX_AUDIT_TOKEN"
DEFAULT_PORT = 8015
EXTRA = "pip install 'nic-sandbox[audit]'"

EXAMPLES = (
    "examples:\n"
    "  nic-sandbox audit serve out/audit.jsonl                      http://127.0.0.1:8015/\n"
    "  nic-sandbox audit serve out/audit.jsonl --port 0             a free port, printed\n"
    "  nic-sandbox audit serve out/campaign/ --port 9000            every worker's log of a campaign\n"
    "  python -c 'import secrets; print(secrets.token_hex(16))' > token\n"
    "  nic-sandbox audit serve out/audit.jsonl --host 0.0.0.0 --allow-remote --token-file token\n"
    "                                                               open http://HOST:8015/?token=..."
)


def add_parser(actions: argparse._SubParsersAction[P]) -> None:
    """Add ``serve`` to the ``audit`` actions."""
    serve = actions.add_parser(
        "serve",
        help="a local read-only web view: chain status, chart, filterable table, records, live",
        description=(
            "Serve a read-only web page of the logs: the chain's verdict (as 'audit verify'), refusals over "
            "time by reason, tenant, queue or kind, a filterable, paginated table (newest first), each record "
            "in full with its descriptor decoded and its neighbours.  New records appear as the log grows.  "
            "Binds to loopback (no login there); any other address needs --allow-remote and a token, which "
            "every request must then carry.  Ctrl-C stops."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "logs", nargs="+", metavar="LOG", help="audit log file(s) with their rotated siblings, or a directory of them"
    )
    add_bind_flags(serve, "", DEFAULT_PORT)
    serve.set_defaults(func=cmd_serve)


def bind_flags(prefix: str) -> tuple[str, str, str, str]:
    """The four flags of a web view's bind (``--host``, ``--port``, ``--allow-remote``, ``--token-file``), prefixed."""
    return (f"--{prefix}host", f"--{prefix}port", f"--{prefix}allow-remote", f"--{prefix}token-file")


def add_bind_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, prefix: str, default_port: int) -> None:
    """Where a web view listens and who may ask it: the same four flags, named with ``prefix``, in every command
    that serves one (``audit serve``; ``fuzz --serve`` with prefix ``serve-``)."""
    host, port, remote, token = bind_flags(prefix)
    parser.add_argument(host, default="127.0.0.1", metavar="HOST", help="address to listen on (default: loopback)")
    parser.add_argument(
        port,
        type=bounded_number(int, port, 0, 65535),
        default=default_port,
        metavar="N",
        help=f"TCP port (default {default_port}; 0: a free port, printed)",
    )
    parser.add_argument(remote, action="store_true", help=f"allow a non-loopback {host} (needs a token as well)")
    parser.add_argument(
        token,
        metavar="FILE",
        help=f"the token every request must carry (default: ${TOKEN_ENV}, if set); 32+ characters",
    )


def read_token(token_file: str | None, flag: str = "--token-file") -> str | None:
    """The token from ``token_file``, else from ``$NIC_SANDBOX_AUDIT_TOKEN``, else None (one line on a bad file)."""
    if token_file is not None:
        try:
            text = Path(token_file).read_text(encoding="ascii", errors="strict").strip()
        except (OSError, UnicodeError) as e:
            raise UsageError(f"{flag} {token_file}: {getattr(e, 'strerror', None) or e}") from None
        if not text:
            raise UsageError(f"{flag} {token_file}: the token file is empty")
        return text
    return os.environ.get(TOKEN_ENV) or None


def _progress(text: str) -> None:
    """Indexing progress, on stderr (stdout's first line is the address, for scripts)."""
    print(f"audit serve: {text}", file=sys.stderr, flush=True)


def listen(host: str, port: int, flags: tuple[str, str] = ("--host", "--port")) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: a free port), or one line naming the flags and the problem."""
    host_flag, port_flag = flags
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise UsageError(f"{host_flag} {host}: {getattr(e, 'strerror', None) or e}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise UsageError(f"{host_flag} {host} {port_flag} {port}: cannot listen: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


@dataclass
class Binding:
    """Where a web view listens and who may ask it: the socket, the token (None on loopback without one)."""

    sock: socket.socket
    token: str | None
    loopback: bool
    url: str  # as printed: http://HOST:PORT/ and, with a token, ?token=<your token>


def bind(
    host: str,
    port: int,
    allow_remote: bool,
    token_file: str | None,
    flags: tuple[str, str, str, str] = ("--host", "--port", "--allow-remote", "--token-file"),
) -> Binding:
    """The bind policy of every web view (auditor/web/guard.py): loopback, or ``allow_remote`` and a token; then
    the socket.  Raises ``UsageError`` (one line, exit 2) naming the command's own ``flags``."""
    from auditor.web.guard import BindRefused, check_bind, check_token, is_loopback

    host_flag, port_flag, remote_flag, token_flag = flags
    token = read_token(token_file, token_flag)
    try:
        check_bind(host, allow_remote, token, (host_flag, remote_flag, token_flag))
        if token is not None:
            check_token(token)
    except BindRefused as e:
        raise UsageError(str(e)) from None
    sock = listen(host, port, (host_flag, port_flag))
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    login = "" if token is None else "?token=<your token>"
    return Binding(sock, token, is_loopback(host), f"http://{shown}:{sock.getsockname()[1]}/{login}")


def needs_extra(command: str) -> None:
    """One line (exit 2) when the web view's packages are missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        if (e.name or "").split(".")[0] in ("starlette", "uvicorn", "anyio"):
            raise UsageError(f"{command} needs {e.name}, which is not installed ({EXTRA})") from None
        raise


def server(app: Any) -> Any:
    """A uvicorn server for ``app``: quiet, no server header, a short graceful stop (the page polls: no long
    requests to wait for)."""
    import uvicorn

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", server_header=False, timeout_graceful_shutdown=2
    )
    return uvicorn.Server(config)


def cmd_serve(args: argparse.Namespace, out: Console) -> int:
    needs_extra("audit serve")
    from auditor.web.app import make_app

    binding = bind(args.host, args.port, args.allow_remote, args.token_file)
    try:
        try:
            app = make_app(args.logs, token=binding.token, loopback=binding.loopback, progress=_progress)
        except FileNotFoundError as e:
            raise UsageError(str(e)) from None
        except AuditError as e:
            raise UsageError(str(e)) from None
        except OSError as e:
            raise UsageError(f"{e.filename or 'audit serve'}: {e.strerror or e}") from None
        print(f"serving {binding.url} (read-only; Ctrl-C stops)", flush=True)
        server(app).run(sockets=[binding.sock])
    finally:
        binding.sock.close()
    sys.stdout.flush()
    return 0
