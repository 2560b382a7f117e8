"""Token use noted in memory by requests and written by a background thread, so API reads never write."""
from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine

from storage.engine import StorageError
from storage.token_use import note_tokens_used

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 60.0
"""How often the last-use times are written (and so how stale `queuewatch tokens list` may be)."""


class TokenUseRecorder:
    """Keeps each token's newest use in memory; `flush` writes them in one short transaction."""

    def __init__(self, engine: Engine, every_s: float = FLUSH_EVERY_S) -> None:
        self.engine = engine
        self.every_s = every_s
        self._pending: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, token_id: int, at_s: float | None = None) -> None:
        """Remember a use; never touches the database."""
        at_s = time.time() if at_s is None else at_s
        with self._lock:
            if at_s > self._pending.get(token_id, 0.0):
                self._pending[token_id] = at_s

    def flush(self) -> bool:
        """Write the pending uses; on a database error keep them for the next try. True when written."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return True
        try:
            note_tokens_used(self.engine, pending)
        except StorageError as exc:
            log.warning("token use not recorded yet (retried in %.0f s): %s", self.every_s, exc)
            with self._lock:
                for token_id, at_s in pending.items():
                    self._pending[token_id] = max(at_s, self._pending.get(token_id, 0.0))
            return False
        return True

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="token-use", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write what is pending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.flush()
