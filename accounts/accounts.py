"""Accounts: users with roles and Argon2-hashed passwords, API tokens shown once and stored as digests."""
from __future__ import annotations

import functools
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from enum import Enum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine

from storage import users as user_rows

TOKEN_PREFIX = "qw_"
MIN_PASSWORD_CHARS = 8
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_hasher = PasswordHasher()


class Role(str, Enum):
    ADMIN = "ADMIN"
    VIEWER = "VIEWER"


class AccountError(ValueError):
    """A user or token request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class User:
    id: int
    email: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


def _user(row: dict) -> User:
    return User(row["id"], row["email"], Role(row["role"]))


def token_digest(token: str) -> str:
    """SHA-256 of a token: tokens are 256-bit random, so a fast digest is enough (unlike passwords)."""
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(engine: Engine, email: str, role: str, password: str) -> User:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise AccountError(f"not an email address: {email!r}")
    try:
        role_value = Role(role.upper())
    except ValueError as exc:
        raise AccountError(f"unknown role {role!r}; roles: {', '.join(r.value for r in Role)}") from exc
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"password must have at least {MIN_PASSWORD_CHARS} characters")
    try:
        user_id = user_rows.insert_user(engine, email, role_value.value, _hasher.hash(password), time.time())
    except user_rows.DuplicateUser as exc:
        raise AccountError(str(exc)) from exc
    return User(user_id, email, role_value)


def authenticate(engine: Engine, email: str, password: str) -> User | None:
    """The user if email and password match an enabled account, else None (same cost either way)."""
    row = user_rows.user_by_email(engine, email.strip().lower())
    stored = row["password_hash"] if row and not row["disabled"] else _dummy_hash()
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row["disabled"]:
        return None
    if _hasher.check_needs_rehash(stored):
        user_rows.update_user(engine, row["email"], password_hash=_hasher.hash(password))
    return _user(row)


def issue_token(engine: Engine, email: str, name: str | None = None) -> tuple[str, int]:
    """A new API token for the user (returned once, only its digest is stored) and its id."""
    row = user_rows.user_by_email(engine, email.strip().lower())
    if row is None:
        raise AccountError(f"no user with email {email}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = user_rows.insert_token(engine, row["id"], token_digest(token), token[:10], name, time.time())
    return token, token_id


def token_owner(engine: Engine, token: str) -> tuple[User, int] | None:
    """(user, token id) of a live token of an enabled user, else None; reads only."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = user_rows.user_for_token_digest(engine, token_digest(token))
    return (_user(row), row["token_id"]) if row else None


def user_for_token(engine: Engine, token: str) -> User | None:
    found = token_owner(engine, token)
    return found[0] if found else None


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against for unknown emails, so that they cost as much as wrong passwords."""
    return _hasher.hash(secrets.token_hex(16))
