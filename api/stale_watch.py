"""The stale-data watch: a background thread of the API process that raises and resolves the stale-data
alert (no stored cycle for 3 collection intervals), so that a stopped collector is noticed. Requests never
write; only this thread does, and only when there is something to change."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from sqlalchemy import Engine, and_, select

from core import alert_rules as rules
from core.system_alerts import COLLECTOR_SCOPE, SystemAlertType, stale_breach
from storage.engine import StorageError
from storage.schema import alert_rule_states, alerts
from storage.status import newest_cycle_at_s
from storage.writer import write_alerts

log = logging.getLogger(__name__)
STALE = SystemAlertType.STALE_DATA.value


class StaleWatch:
    """Checks every `every_s` whether the stored data is stale and plans the stale-data alert."""

    def __init__(self, engine: Engine, interval_s: float, timing: rules.AlertTiming, every_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine, self.interval_s, self.timing, self.every_s, self.clock = engine, interval_s, timing, every_s, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _tracked(self) -> bool:
        """Whether a stale-data alert is open or pending (then a fresh check has something to clear)."""
        with self.engine.connect() as conn:
            for table in (alerts, alert_rule_states):
                where = and_(table.c.queue_name == COLLECTOR_SCOPE, table.c.alert_type == STALE)
                if table is alerts:
                    where = and_(where, alerts.c.resolved_at_s.is_(None))
                if conn.execute(select(table.c.alert_type).where(where).limit(1)).first() is not None:
                    return True
        return False

    def check(self) -> list:
        """One check; returns the alert changes written (nothing is written when nothing is to change)."""
        now_s = self.clock()
        breach = stale_breach(newest_cycle_at_s(self.engine), now_s, self.interval_s)
        if breach is None and not self._tracked():
            return []

        def plan(open_rows: list, states: list) -> rules.Plan:
            return rules.plan_cycle([a for a in open_rows if a.alert_type == STALE],
                                    {COLLECTOR_SCOPE: [breach] if breach else []}, now_s,
                                    states=[s for s in states if s.alert_type == STALE],
                                    timings=rules.AlertTimings(self.timing), resolve_unseen=False,
                                    scopes={COLLECTOR_SCOPE})

        return write_alerts(self.engine, now_s, plan)

    def start(self) -> None:
        if self.every_s <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="stale-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                for change in self.check():
                    if change.kind != "updated":
                        log.info("alert %s %s", change.alert_id, change.kind)
            except StorageError as exc:
                log.warning("stale-data check not stored (retried in %.0f s): %s", self.every_s, exc)
            except Exception:  # noqa: BLE001 - the watch must outlive one bad check
                log.exception("stale-data check failed")
