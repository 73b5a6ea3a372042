"""Who may read the dashboard and who may act through it.

Reading: on loopback, anyone who can reach 127.0.0.1 (the same trust as `fleetctl status`),
but only under a loopback Host name, so a web page whose DNS name rebinds to 127.0.0.1 is
refused. Anywhere else, every request carries the access token (from a 0600 file, never argv):
`Authorization: Bearer TOKEN`, or HTTP basic auth with the token as the password so a browser
asks once.

Acting (only with `--actions`): a POST must carry the per-run token (generated at start, put
in the page, never stored) in `X-Fleetctl-Token` and in a SameSite=Strict cookie, and must not
come from another site (`Sec-Fetch-Site`, `Origin`). A page on another origin can neither read
the token nor send the cookie, so it cannot forge an action.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from fleetctl.common.errors import FleetError

CSRF_COOKIE = "fleetctl_action"
CSRF_HEADER = "x-fleetctl-token"
MIN_TOKEN_LEN = 16
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def new_action_token() -> str:
    return secrets.token_urlsafe(32)


def is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def read_token_file(path: Path) -> str:
    """The access token; the file must be the user's own, mode 0600 (or stricter)."""
    try:
        st = path.stat()
        text = path.read_text()
    except FileNotFoundError:
        raise FleetError(
            f"{path}: no such token file; create it: (umask 077; openssl rand -hex 32 > {path})"
        ) from None
    except OSError as e:
        raise FleetError(f"{path}: cannot read the token file ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise FleetError(f"{path}: the token file is not a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise FleetError(f"{path}: the token file is readable by others; run: chmod 600 {path}")
    if st.st_uid != os.geteuid():
        raise FleetError(f"{path}: the token file belongs to another user; use a file of your own")
    token = text.strip()
    if len(token) < MIN_TOKEN_LEN or any(c.isspace() for c in token):
        raise FleetError(
            f"{path}: the token must be one word of at least {MIN_TOKEN_LEN} characters; "
            f"e.g. (umask 077; openssl rand -hex 32 > {path})"
        )
    return token


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The access token a request carries, as Bearer or as the basic-auth password."""
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return None
    return None


def host_allowed(host_header: str, bind: str) -> bool:
    """On loopback: only loopback names (or the bound address itself) as the Host."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host in LOOPBACK_NAMES or host == bind.lower()


def action_refusal(
    headers: Mapping[str, str], cookies: Mapping[str, str], token: str, origin: str
) -> str | None:
    """Why a POST may not act (None: it may). `origin` is this server's own scheme://host."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {site})"
    sent_origin = headers.get("origin")
    if sent_origin is not None and sent_origin != origin:
        return "request from another origin refused"
    if not _same(headers.get(CSRF_HEADER), token):
        return "missing or wrong action token (reload the page: the token changes at each start)"
    if not _same(cookies.get(CSRF_COOKIE), token):
        return "missing or wrong action cookie (reload the page: the token changes at each start)"
    return None
