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
from pathlib import Path
from typing import TypeVar

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
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback)")
    serve.add_argument(
        "--port",
        type=bounded_number(int, "--port", 0, 65535),
        default=DEFAULT_PORT,
        metavar="N",
        help=f"TCP port (default {DEFAULT_PORT}; 0: a free port, printed)",
    )
    serve.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback --host (needs a token as well)"
    )
    serve.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"the token every request must carry (default: ${TOKEN_ENV}, if set); 32+ characters",
    )
    serve.set_defaults(func=cmd_serve)


def _token(token_file: str | None) -> str | None:
    if token_file is not None:
        try:
            text = Path(token_file).read_text(encoding="ascii", errors="strict").strip()
        except (OSError, UnicodeError) as e:
            raise UsageError(f"--token-file {token_file}: {getattr(e, 'strerror', None) or e}") from None
        if not text:
            raise UsageError(f"--token-file {token_file}: the token file is empty")
        return text
    return os.environ.get(TOKEN_ENV) or None


def _progress(text: str) -> None:
    """Indexing progress, on stderr (stdout's first line is the address, for scripts)."""
    print(f"audit serve: {text}", file=sys.stderr, flush=True)


def _listen(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise UsageError(f"--host {host}: {getattr(e, 'strerror', None) or e}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise UsageError(f"--host {host} --port {port}: cannot listen: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def cmd_serve(args: argparse.Namespace, out: Console) -> int:
    try:
        import uvicorn

        from auditor.web.app import make_app
        from auditor.web.guard import BindRefused, check_bind, check_token, is_loopback
    except ImportError as e:
        if (e.name or "").split(".")[0] in ("starlette", "uvicorn", "anyio"):
            raise UsageError(f"audit serve needs {e.name}, which is not installed ({EXTRA})") from None
        raise
    token = _token(args.token_file)
    try:
        check_bind(args.host, args.allow_remote, token)
        if token is not None:
            check_token(token)
    except BindRefused as e:
        raise UsageError(str(e)) from None
    try:
        app = make_app(args.logs, token=token, loopback=is_loopback(args.host), progress=_progress)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    except AuditError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"{e.filename or 'audit serve'}: {e.strerror or e}") from None
    sock = _listen(args.host, args.port)
    port = sock.getsockname()[1]
    shown = f"[{args.host.strip('[]')}]" if ":" in args.host else args.host
    login = "" if token is None else "?token=<your token>"
    print(f"serving http://{shown}:{port}/{login} (read-only; Ctrl-C stops)", flush=True)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", server_header=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    sys.stdout.flush()
    return 0
