"""When API tokens were last used: one short write for many uses, made apart from the requests."""
from __future__ import annotations

from typing import Mapping

from sqlalchemy import Engine, bindparam, or_, update
from sqlalchemy.exc import SQLAlchemyError

from storage.engine import StorageError, error_text
from storage.schema import api_tokens


def note_tokens_used(engine: Engine, last_used_at_s: Mapping[int, float]) -> None:
    """Record each token's last use (a time never moves back), all in one transaction."""
    if not last_used_at_s:
        return
    statement = (update(api_tokens)
                 .where(api_tokens.c.id == bindparam("token_id"))
                 .where(or_(api_tokens.c.last_used_at_s.is_(None), api_tokens.c.last_used_at_s < bindparam("at_s")))
                 .values(last_used_at_s=bindparam("at_s")))
    try:
        with engine.begin() as conn:
            conn.execute(statement, [{"token_id": token_id, "at_s": at_s}
                                     for token_id, at_s in sorted(last_used_at_s.items())])
    except SQLAlchemyError as exc:
        raise StorageError(f"could not record token use: {error_text(exc)}") from exc
