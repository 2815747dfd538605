"""Who may see the node's page: users from a file (scrypt-hashed passwords) or a one-off access token, sessions
kept on the server that expire, a CSRF token per session, and a brake on password guessing.

Sessions live in the node's memory on purpose: a restart signs everyone out, and a stolen cookie is worth
nothing once its session has expired or its user signed out (a signed cookie would stay valid until it expires).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # OWASP's minimum for scrypt (16 MiB, ~50 ms a check)
USER_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (hex): what a users file holds for a password."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        mine = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                              dklen=len(digest) // 2)
    except ValueError:
        return False
    return hmac.compare_digest(mine.hex(), digest)


_DUMMY_HASH = hash_password("not a password", salt=b"\0" * 16)  # an unknown user costs as much as a wrong password


def read_users(path: Path) -> dict[str, str]:
    """``name:hash`` lines (``#`` comments, blank lines ignored). A malformed line is an error, not skipped."""
    users: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, stored = line.partition(":")
        if not sep or not name or not set(name) <= USER_NAME_CHARS or not stored.startswith("scrypt$"):
            raise ValueError(f"{path}:{number}: not a 'name:scrypt$...' line (write it with collat-client web-user)")
        users[name] = stored
    if not users:
        raise ValueError(f"{path}: no users")
    return users


def write_user(path: Path, name: str, password: str) -> None:
    """Add or replace one user in a users file, written aside and renamed in, readable by its owner only."""
    if not name or not set(name) <= USER_NAME_CHARS:
        raise ValueError(f"{name!r}: a user name is letters, digits and . _ - @")
    path = Path(path)
    lines = [ln for ln in (path.read_text().splitlines() if path.exists() else [])
             if ln.partition(":")[0].strip() != name]
    lines.append(f"{name}:{hash_password(password)}")
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(partial, path)


@dataclass
class Credentials:
    """Users from a file, or (no file) one access token made at start-up and shown on the node's console."""

    users: dict[str, str] = field(default_factory=dict)
    token: str | None = None

    def check(self, name: str, password: str) -> bool:
        if self.token is not None:  # token mode: any name (it is what the audit log records), the token as password
            return bool(name) and set(name) <= USER_NAME_CHARS and hmac.compare_digest(password, self.token)
        return check_password(password, self.users.get(name, _DUMMY_HASH)) and name in self.users


@dataclass
class Session:
    csrf: str
    created: float
    seen: float
    user: str | None = None


class Sessions:
    """Server-side sessions: an id in an HttpOnly cookie; idle and absolute expiry; a fresh id at sign-in."""

    def __init__(self, idle_seconds: float = 900.0, max_seconds: float = 12 * 3600.0) -> None:
        self.idle_seconds, self.max_seconds = idle_seconds, max_seconds
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, sid: str | None, now: float | None = None) -> Session | None:
        now = time.time() if now is None else now
        with self._lock:
            session = self._sessions.get(sid or "")
            if session is None:
                return None
            if now - session.seen > self.idle_seconds or now - session.created > self.max_seconds:
                del self._sessions[sid]
                return None
            session.seen = now
            return session

    def new(self, user: str | None = None) -> tuple[str, Session]:
        now = time.time()
        sid, session = secrets.token_urlsafe(32), Session(csrf=secrets.token_urlsafe(32), created=now, seen=now,
                                                          user=user)
        with self._lock:
            self._sessions = {k: v for k, v in self._sessions.items()  # forget expired ones as new ones come
                              if now - v.seen <= self.idle_seconds and now - v.created <= self.max_seconds}
            self._sessions[sid] = session
        return sid, session

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)


def csrf_ok(session: Session | None, sent: str | None) -> bool:
    return session is not None and bool(sent) and hmac.compare_digest(session.csrf, str(sent))


class LoginThrottle:
    """At most ``attempts`` failed sign-ins per client address in ``window`` seconds (then refused until it ends)."""

    def __init__(self, attempts: int = 5, window: float = 300.0) -> None:
        self.attempts, self.window = attempts, window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, address: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            recent = [t for t in self._failures.get(address, []) if now - t < self.window]
            self._failures[address] = recent
            return len(recent) >= self.attempts

    def failed(self, address: str, now: float | None = None) -> None:
        with self._lock:
            self._failures.setdefault(address, []).append(time.time() if now is None else now)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)
