"""The demo's admin login, so the dashboard can be opened right away."""
from __future__ import annotations

from accounts.accounts import add_user
from storage.engine import make_engine
from storage.users import user_by_email

DEMO_ADMIN_EMAIL = "admin@example.com"
DEMO_ADMIN_PASSWORD = "queuewatch-demo"


def ensure_demo_admin(db_url: str) -> None:
    """The demo's admin login (created once; an existing account is left as it is)."""
    engine = make_engine(db_url)
    try:
        if user_by_email(engine, DEMO_ADMIN_EMAIL) is None:
            add_user(engine, DEMO_ADMIN_EMAIL, "ADMIN", DEMO_ADMIN_PASSWORD)
    finally:
        engine.dispose()
