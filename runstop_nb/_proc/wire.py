"""The messages between the kernel, the warden and the guards.

Kernel -> guard, on the guard's lifeline (a Unix stream socket the kernel holds the other
end of): once, the spec, as a 10-digit length and that many bytes of JSON; then lines:

* ``stop GRACE``: run the ladder now (repeats are answered with the same verdict).

Guard -> kernel, lines of ``KIND JSON``:

* ``hello {guard, guard_start}``: the guard runs (sent before it reads the spec);
* ``started {pid, start, guard, guard_start, containment, cgroup}``: the agent runs;
* ``error {errno, stage, message}``: it could not be started (nothing is left behind);
* ``exited {returncode}``: the agent's root exited (its tree may live on);
* ``verdict {..., cause}``: the tree is settled (or gave up); the guard exits next.

Kernel -> warden, on its control socket (SOCK_SEQPACKET, one message each):
``spawn JSON`` with the guard's end of a lifeline attached (SCM_RIGHTS).
Warden -> kernel: ``orphans JSON``: a guard died before its tree was dead; the warden,
its subreaper, stopped what was left and says how.

JSON keeps lone surrogates (from undecodable environment bytes) as escapes, so argv and
environment round-trip exactly.
"""

from __future__ import annotations

import json
import socket
from typing import Any

LENGTH_DIGITS = 10


def encode_spec(spec: dict[str, Any]) -> bytes:
    payload = json.dumps(spec).encode("ascii")
    return b"%0*d" % (LENGTH_DIGITS, len(payload)) + payload


def read_spec(sock: socket.socket) -> dict[str, Any]:
    size = int(_recv_exact(sock, LENGTH_DIGITS))
    data: dict[str, Any] = json.loads(_recv_exact(sock, size))
    return data


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("the lifeline closed before the spec arrived")
        buf += chunk
    return buf


def line(kind: str, body: object) -> bytes:
    return kind.encode() + b" " + json.dumps(body).encode("ascii") + b"\n"


def parse(raw: bytes) -> tuple[str, Any]:
    """One message line -> (kind, body); a malformed line gives ("", None)."""
    kind, _, rest = raw.decode("utf-8", "replace").partition(" ")
    try:
        return kind, json.loads(rest) if rest else None
    except ValueError:
        return "", None


class Lines:
    """Splits a byte stream into message lines."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[str, Any]]:
        self._buf += data
        *complete, self._buf = self._buf.split(b"\n")
        return [parse(raw) for raw in complete if raw]
