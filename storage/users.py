"""Users and API tokens: rows only (hashing lives in accounts.accounts)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from storage.schema import api_tokens, users


class DuplicateUser(ValueError):
    """A user with this email already exists."""


def insert_user(engine: Engine, email: str, role: str, password_hash: str, now_s: float) -> int:
    try:
        with engine.begin() as conn:
            return conn.execute(insert(users).values(email=email, role=role, password_hash=password_hash,
                                                     created_at_s=now_s, disabled=False)).inserted_primary_key[0]
    except IntegrityError as exc:
        raise DuplicateUser(f"a user with email {email} already exists") from exc


def update_user(engine: Engine, email: str, **values: Any) -> bool:
    with engine.begin() as conn:
        return conn.execute(update(users).where(users.c.email == email).values(**values)).rowcount == 1


def user_by_email(engine: Engine, email: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.email == email)).mappings().first()
    return dict(row) if row else None


def list_users(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(users).order_by(users.c.email)).mappings()]


def insert_token(engine: Engine, user_id: int, digest: str, prefix: str, name: str | None, now_s: float) -> int:
    with engine.begin() as conn:
        return conn.execute(insert(api_tokens).values(user_id=user_id, token_digest=digest, token_prefix=prefix,
                                                      name=name, created_at_s=now_s)).inserted_primary_key[0]


def user_for_token_digest(engine: Engine, digest: str) -> dict[str, Any] | None:
    """The active user owning a live token with this digest, with `token_id`; a pure read (token use is
    recorded apart, by storage.token_use)."""
    with engine.connect() as conn:
        row = conn.execute(
            select(users, api_tokens.c.id.label("token_id"), api_tokens.c.last_used_at_s)
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(and_(api_tokens.c.token_digest == digest, api_tokens.c.revoked_at_s.is_(None),
                        users.c.disabled.is_(False)))).mappings().first()
    return dict(row) if row else None


def list_tokens(engine: Engine, email: str | None = None) -> list[dict[str, Any]]:
    query = (select(api_tokens.c.id, api_tokens.c.token_prefix, api_tokens.c.name, api_tokens.c.created_at_s,
                    api_tokens.c.last_used_at_s, api_tokens.c.revoked_at_s, users.c.email)
             .join(users, users.c.id == api_tokens.c.user_id).order_by(api_tokens.c.id))
    if email:
        query = query.where(users.c.email == email)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def revoke_tokens(engine: Engine, now_s: float, *, token_id: int | None = None, prefix: str | None = None,
                  email: str | None = None) -> int:
    """Revoke one token (by id or prefix) or all of a user's tokens; returns how many were revoked."""
    condition = api_tokens.c.revoked_at_s.is_(None)
    if token_id is not None:
        condition = and_(condition, api_tokens.c.id == token_id)
    elif prefix:
        condition = and_(condition, api_tokens.c.token_prefix == prefix)
    elif email:
        condition = and_(condition, api_tokens.c.user_id.in_(select(users.c.id).where(users.c.email == email)))
    else:
        raise ValueError("give a token id, a token prefix or an email")
    with engine.begin() as conn:
        return conn.execute(update(api_tokens).where(condition).values(revoked_at_s=now_s)).rowcount
