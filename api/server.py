"""ASGI entry point for `queuewatch api`: settings from the environment, read once per process."""
from __future__ import annotations

from api.app import create_app
from config.settings import load_settings

app = create_app(load_settings())
