"""Roles and local users: who may do what on this station (no Qt here).

    store = UserStore.load(data_dir / "users.json")     # missing file: roles off
    access = Access(store, on_change=audit_callback)
    access.login("anna", "1234")                        # True / False
    access.require("threshold")                         # NotAllowed: one sentence
    access.expire_if_idle(now=time.monotonic())         # back to operator after N minutes

Three roles, each one allowed what the one below may do and more:
  operator       run, stop, mark labels
  engineer       learn, relearn, threshold, region of interest / layout, products
  administrator  settings (camera, storage, ...), users, database, outputs

With roles off (the default, and whenever there is no users file) everyone may do
everything and the app behaves as it did before roles existed. With roles on, nobody is
logged in at start: the station runs as operator until someone logs in, and it returns to
operator after `idle_minutes` without a key press or a click.

Secrets (a PIN or a password) are kept as scrypt hashes (hashlib, per-user random salt) and
compared in constant time (hmac.compare_digest). The users file lives in the data folder,
beside settings.json; it is written atomically. A file that cannot be read does NOT turn
roles off (that would let anyone past them by damaging it): the station stays at operator
and says why; deleting or renaming the file is the one deliberate way back to roles off.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from engine.errors import InspectError

OPERATOR, ENGINEER, ADMINISTRATOR = "operator", "engineer", "administrator"
ROLES = (OPERATOR, ENGINEER, ADMINISTRATOR)          # lowest first
ROLES_OFF = "roles off"                              # the role written when roles are off

# action -> the lowest role that may do it (the one table of who may do what)
ACTIONS = {
    "run": OPERATOR, "stop": OPERATOR, "label": OPERATOR, "switch product": OPERATOR,
    "learn": ENGINEER, "relearn": ENGINEER, "threshold": ENGINEER, "roi": ENGINEER,
    "products": ENGINEER, "model": ENGINEER,
    "settings": ADMINISTRATOR, "camera": ADMINISTRATOR, "users": ADMINISTRATOR,
    "database": ADMINISTRATOR, "outputs": ADMINISTRATOR,
}
# how an action is said in a refusal: "Changing the threshold needs ..."
ACTION_WORDS = {
    "run": "Starting the line", "stop": "Stopping the line", "label": "Marking parts",
    "switch product": "Switching the product",
    "learn": "Learning a model", "relearn": "Relearning", "threshold": "Changing the threshold",
    "roi": "Changing the region of interest or layout", "products": "Adding or changing products",
    "model": "Changing the product's model",
    "settings": "Changing settings", "camera": "Changing camera parameters",
    "users": "Managing users", "database": "Changing the database", "outputs": "Changing outputs",
}
USER_NAME = r"[\w .\-@]{1,64}"
MIN_SECRET = 4                                       # a 4-digit PIN at least
DEFAULT_IDLE_MINUTES = 5.0
FILE_VERSION = 1
# scrypt cost: n=2**14, r=8 takes ~50 ms on the dev PC and 16 MiB: slow to guess, quick to log in.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1


class NotAllowed(InspectError):
    """An action the current role may not do (one sentence, shown as is)."""


def role_rank(role: str) -> int:
    return ROLES.index(role) if role in ROLES else -1


def needed_role(action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")    # a programming error, not the user's
    return ACTIONS[action]


def refusal(action: str, role: str) -> str:
    return (f"{ACTION_WORDS[action]} needs the {needed_role(action)} role (now: {role}); "
            "log in on the toolbar.")


# ---- secrets ------------------------------------------------------------------------------

def hash_secret(secret: str, salt: bytes | None = None) -> dict:
    """{kdf, n, r, p, salt, hash} for the users file; a new random salt per user."""
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R,
                            p=SCRYPT_P, maxmem=64 * 1024 * 1024, dklen=32)
    return {"kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
            "salt": salt.hex(), "hash": digest.hex()}


def check_secret(secret: str, stored: dict) -> bool:
    """Constant-time comparison against the stored hash; an odd entry never matches."""
    try:
        if stored.get("kdf") != "scrypt":
            return False
        n, r, p = int(stored["n"]), int(stored["r"]), int(stored["p"])
        if not (2 <= n <= 2 ** 20 and 1 <= r <= 32 and 1 <= p <= 16):
            return False
        digest = hashlib.scrypt(secret.encode("utf-8"), salt=bytes.fromhex(stored["salt"]),
                                n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)
        return hmac.compare_digest(digest, bytes.fromhex(stored["hash"]))
    except (KeyError, TypeError, ValueError):
        return False


# ---- the users file -------------------------------------------------------------------------

@dataclass(frozen=True)
class User:
    name: str
    role: str
    secret: dict = field(default_factory=dict, repr=False, compare=False)   # hash_secret()


@dataclass(frozen=True)
class UserStore:
    """The users file as one value. Change by the methods (they validate), save with save()."""
    path: Path | None = None
    enabled: bool = False                 # roles on
    idle_minutes: float = DEFAULT_IDLE_MINUTES
    users: tuple[User, ...] = ()
    problem: str = ""                     # why the file could not be read ("" when it could)

    @classmethod
    def load(cls, path: str | Path) -> "UserStore":
        """Missing file: roles off. Unreadable: roles ON, nobody can log in, `problem` says
        why (failing closed: a damaged file must not open the station to everyone)."""
        path = Path(path)
        if not path.exists():
            return cls(path=path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(d, dict) or not isinstance(d.get("users"), list):
                raise ValueError("not a users file")
            if int(d.get("version", 1)) > FILE_VERSION:
                raise ValueError("written by a newer version of the app")
            users = tuple(User(str(u["name"]), str(u["role"]), dict(u["secret"]))
                          for u in d["users"])
            store = cls(path=path, enabled=bool(d.get("enabled", False)),
                        idle_minutes=float(d.get("idle_minutes", DEFAULT_IDLE_MINUTES)),
                        users=users)
            wrong = store.problems()
            if wrong:
                raise ValueError(" ".join(wrong))
            return store
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            why = " ".join(str(e).split())[:200]
            return cls(path=path, enabled=True, problem=(
                f"The users file {path} cannot be used ({why}): the station stays at operator. "
                "Fix the file, or rename it to turn roles off and set them up again."))

    def problems(self) -> list[str]:
        out = []
        names = [u.name.casefold() for u in self.users]
        if len(set(names)) != len(names):
            out.append("Two users have the same name.")
        for u in self.users:
            if not re.fullmatch(USER_NAME, u.name) or not u.name.strip():
                out.append(f"User name {u.name!r} may use letters, digits, spaces and . - @ _ "
                           "(at most 64).")
            if u.role not in ROLES:
                out.append(f"User {u.name!r}: the role must be one of {', '.join(ROLES)}.")
        if not 0.5 <= self.idle_minutes <= 24 * 60:         # also refuses NaN
            out.append(f"The return to operator must come after 0.5 to 1440 minutes, not "
                       f"{self.idle_minutes}.")
        if self.enabled and not any(u.role == ADMINISTRATOR for u in self.users):
            out.append("Roles can only be on with at least one administrator (or nobody could "
                       "manage users).")
        return out

    def validate(self) -> "UserStore":
        wrong = self.problems()
        if wrong:
            raise InspectError(" ".join(wrong))
        return self

    def user(self, name: str) -> User | None:
        key = name.strip().casefold()
        return next((u for u in self.users if u.name.casefold() == key), None)

    def with_user(self, name: str, role: str, secret: str | None) -> "UserStore":
        """Add a user or change one's role and (when given) secret."""
        name = name.strip()
        old = self.user(name)
        if secret is not None and len(secret) < MIN_SECRET:
            raise InspectError(f"A PIN or password needs at least {MIN_SECRET} characters.")
        if old is None and secret is None:
            raise InspectError(f"A new user ({name!r}) needs a PIN or password.")
        hashed = hash_secret(secret) if secret is not None else old.secret
        users = tuple(u for u in self.users if u is not old) + (User(name, role, hashed),)
        return replace(self, users=users).validate()

    def without_user(self, name: str) -> "UserStore":
        old = self.user(name)
        if old is None:
            raise InspectError(f"There is no user {name!r}.")
        return replace(self, users=tuple(u for u in self.users if u is not old)).validate()

    def save(self) -> None:
        """Validate, then write atomically (temp file + rename)."""
        self.validate()
        if self.path is None:
            raise InspectError("This users list has no file to be saved to.")
        d = {"version": FILE_VERSION, "enabled": self.enabled, "idle_minutes": self.idle_minutes,
             "users": [asdict(u) for u in self.users]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(d, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.path)


# ---- who is at the station ------------------------------------------------------------------

@dataclass(frozen=True)
class Actor:
    """Who does something now: written into every audit record."""
    name: str
    role: str


# on_change(kind, target, old, new, detail): the audit trail's callback (engine/audit.py)
ChangeCallback = Callable[[Actor, str, str, object, object, str], None]


class Access:
    """The station's current user and the rules. Thread-safe: workers may call require()."""

    def __init__(self, store: UserStore, default_name: Callable[[], str] = lambda: "operator",
                 on_change: ChangeCallback | None = None, clock=time.monotonic):
        self.store = store
        self.default_name = default_name          # who "operator" is when nobody logged in
        self.on_change = on_change
        self._clock = clock
        self._user: User | None = None
        self._last_activity = clock()
        self._lock = threading.RLock()

    # ---- state -----------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self.store.enabled

    @property
    def role(self) -> str:
        """The role in force: administrator's powers for everyone when roles are off."""
        if not self.enabled:
            return ADMINISTRATOR
        u = self._user
        return u.role if u is not None else OPERATOR

    @property
    def actor(self) -> Actor:
        u = self._user
        if not self.enabled:
            return Actor(self.default_name(), ROLES_OFF)
        return Actor(u.name, u.role) if u is not None else Actor(self.default_name(), OPERATOR)

    @property
    def user_name(self) -> str | None:
        return self._user.name if self._user is not None else None

    def can(self, action: str, actor: Actor | None = None) -> bool:
        return role_rank(self._role_of(actor)) >= role_rank(needed_role(action))

    def require(self, action: str, actor: Actor | None = None) -> None:
        """The engine-side check: NotAllowed (one sentence) when the role may not.
        `actor`: who started the job that makes the change now (captured with `actor`
        when it started); by default whoever is at the station."""
        if not self.can(action, actor):
            raise NotAllowed(refusal(action, self._role_of(actor)))

    def _role_of(self, actor: Actor | None) -> str:
        if actor is None or not self.enabled:
            return self.role
        return ADMINISTRATOR if actor.role == ROLES_OFF else actor.role

    def why_not(self, action: str) -> str:
        """'' when allowed; else the sentence for a disabled button's tooltip."""
        return "" if self.can(action) else refusal(action, self.role)

    # ---- logging in and out ------------------------------------------------------------
    def login(self, name: str, secret: str) -> bool:
        """True and that user is in; False for a wrong name or secret (said alike, so a
        wrong guess does not tell which was wrong). Recorded either way."""
        u = self.store.user(name) if self.enabled and not self.store.problem else None
        ok = u is not None and check_secret(secret, u.secret)
        if u is None:
            check_secret(secret, hash_secret("x", b"0" * 16))    # same time for unknown names
        with self._lock:
            before = self.actor
            if ok:
                self._user = u
                self._last_activity = self._clock()
        self._tell(before if not ok else self.actor, "login", name.strip()[:128], None,
                   "logged in" if ok else "refused", "" if ok else "wrong name or PIN/password")
        return ok

    def logout(self, why: str = "logged out") -> None:
        with self._lock:
            if self._user is None:
                return
            who = self.actor
            self._user = None
        self._tell(who, "login", who.name, who.role, OPERATOR, why)

    def touch(self) -> None:
        """A key press or click: the idle clock starts again."""
        self._last_activity = self._clock()

    def expire_if_idle(self) -> bool:
        """Back to operator after idle_minutes without activity; True when it happened."""
        if self._user is None or not self.enabled:
            return False
        if self._clock() - self._last_activity < 60.0 * self.store.idle_minutes:
            return False
        self.logout(f"no activity for {self.store.idle_minutes:g} minutes: back to operator")
        return True

    # ---- managing users (administrator) --------------------------------------------------
    def change_store(self, new: UserStore) -> None:
        """Save a changed users list (administrator only) and record each difference."""
        self.require("users")
        with self._lock:
            old = self.store
            new.save()
            self.store = new
            if self._user is not None:                # a removed or demoted user
                self._user = new.user(self._user.name)
        who = self.actor
        for kind, target, before, after in store_changes(old, new):
            self._tell(who, kind, target, before, after, "")

    def _tell(self, who: Actor, kind: str, target: str, old, new, detail: str) -> None:
        if self.on_change is not None:
            self.on_change(who, kind, target, old, new, detail)


def store_changes(old: UserStore, new: UserStore) -> list[tuple[str, str, object, object]]:
    """(kind, target, old, new) for each difference; secrets are said as 'changed', never
    written (not even their hashes)."""
    out: list[tuple[str, str, object, object]] = []
    if old.enabled != new.enabled:
        out.append(("user", "roles", "on" if old.enabled else "off", "on" if new.enabled else "off"))
    if old.idle_minutes != new.idle_minutes:
        out.append(("user", "return to operator after (minutes)", old.idle_minutes, new.idle_minutes))
    before = {u.name.casefold(): u for u in old.users}
    after = {u.name.casefold(): u for u in new.users}
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        name = (b or a).name
        if a is None:
            out.append(("user", f"user {name}", None, b.role))
        elif b is None:
            out.append(("user", f"user {name}", a.role, None))
        else:
            if a.role != b.role:
                out.append(("user", f"user {name} role", a.role, b.role))
            if a.secret != b.secret:
                out.append(("user", f"user {name} PIN/password", "(set)", "(changed)"))
    return out
