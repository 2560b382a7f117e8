"""The `queuewatch` command: collect, dashboard, export, api, users, tokens, silences, demo."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from queuewatch import cli_accounts, cli_silences
from config.settings import (SettingsError, check_redis_urls, interval_s_value, load_settings, port_value,
                                 redacted, retention_days_value)

log = logging.getLogger("queuewatch")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG_PATH = Path(__file__).resolve().parent / "demo" / "alerts.toml"


REDIS_COMMANDS = frozenset({"collect", "api", "demo"})


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (exit status 2), without the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _flag_type(check, name: str):
    """An argparse type that applies a settings check and names the setting in its error."""
    def parse(raw: str):
        try:
            return check(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
    parse.__name__ = name
    return parse


_interval = _flag_type(interval_s_value, "interval")
_retention_days = _flag_type(retention_days_value, "retention days")
_port = _flag_type(port_value, "port")


def _add_common(parser: argparse.ArgumentParser, *, redis: bool = True) -> None:
    parser.add_argument("--db", dest="db_url", help="SQLAlchemy URL of the history database (env QUEUEWATCH_DB_URL; "
                                                     "default sqlite:///$XDG_DATA_HOME/queuewatch/queuewatch.db)")
    parser.add_argument("--config", dest="config_path", help="TOML file with thresholds (env QUEUEWATCH_CONFIG)")
    if redis:
        parser.add_argument("--redis", dest="redis_url",
                            help="Redis URL (env QUEUEWATCH_REDIS_URL; default redis://localhost:6379/0)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="queuewatch", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    collect = commands.add_parser("collect", help="read queue state from Redis every interval and store it")
    _add_common(collect)
    collect.add_argument("--interval", dest="interval_s", type=_interval,
                         help="seconds between cycles, 0.1 to 86400 (env QUEUEWATCH_INTERVAL_S; default 10)")
    collect.add_argument("--retention-days", dest="retention_days", type=_retention_days,
                         help="days of history kept, above 0 (env QUEUEWATCH_RETENTION_DAYS; default 7)")
    collect.add_argument("--once", action="store_true", help="run one cycle and exit (status 1 if it failed)")

    dashboard = commands.add_parser("dashboard", help="serve the Streamlit dashboard")
    _add_common(dashboard, redis=False)
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dashboard.add_argument("--port", type=_port, default=8501, help="port to listen on (default 8501)")

    export = commands.add_parser("export", help="write stored snapshots as CSV")
    _add_common(export, redis=False)
    export.add_argument("--queue", dest="queues", action="append", default=[],
                        help="queue to export (repeat for several; default all)")
    export.add_argument("--since", type=_parse_iso, help="start, ISO 8601 (default: 24 hours ago)")
    export.add_argument("--until", type=_parse_iso, help="end, ISO 8601 (default: now)")
    export.add_argument("--kind", choices=("snapshots", "workers", "alerts"), default="snapshots",
                        help="what to export (default snapshots)")
    export.add_argument("--out", type=Path, required=True, help="CSV file to write ('-' for stdout)")

    api = commands.add_parser("api", help="serve the admin JSON API")
    _add_common(api)
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    api.add_argument("--port", type=_port, default=8000, help="port to listen on (default 8000)")
    api.add_argument("--workers", type=int, default=1, help="server processes (they share the rate limits)")

    cli_accounts.add_parsers(commands, _add_common)
    cli_silences.add_parsers(commands, _add_common)

    demo = commands.add_parser("demo", help="run Redis, RQ, BullMQ and Celery workers with a demo workload, "
                                            "the collector and the dashboard")
    _add_common(demo)
    demo.add_argument("--port", type=_port, default=8501, help="dashboard port (default 8501)")
    demo.add_argument("--duration", dest="duration_s", type=float, help="stop after this many seconds")
    return parser


def _parse_iso(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {k: getattr(args, k, None) for k in ("redis_url", "db_url", "interval_s", "retention_days",
                                                      "config_path")}
    try:
        settings = load_settings(**overrides)
        if args.command in REDIS_COMMANDS:
            check_redis_urls(settings.redis_url)
    except SettingsError as exc:
        print(f"queuewatch: {exc}", file=sys.stderr)
        return 2
    handler = {"collect": _collect, "dashboard": _dashboard, "export": _export, "demo": _demo, "api": _api,
               "users": _accounts(cli_accounts.run_users), "tokens": _accounts(cli_accounts.run_tokens),
               "silences": _accounts(cli_silences.run)}[args.command]
    try:
        return handler(settings, args)
    except Exception as exc:  # noqa: BLE001 - the CLI's last line: a clear message instead of a traceback
        from accounts.accounts import AccountError
        from storage.engine import StorageError

        if isinstance(exc, (StorageError, SettingsError, AccountError, OSError)):
            print(f"queuewatch: {exc}", file=sys.stderr)
            return 1
        raise


def _collect(settings, args) -> int:
    from collector.loop import Collector
    from collector.alerting import redis_source
    from collector.readers import build_readers, close_readers, redis_client
    from collector.sharing import CollectorRefused, Coordinator, collector_member, sqlite_lock
    from storage.engine import make_engine

    try:
        readers = build_readers(settings)
    except SettingsError as exc:
        print(f"queuewatch: {exc}", file=sys.stderr)
        return 2
    unresolved = [f"channel {c.name}: {c.unresolved}" for c in settings.channels if c.unresolved]
    if unresolved and not args.once:  # only the notifying collector needs the channels' secrets
        close_readers(readers)
        print(f"queuewatch: {settings.config_path}: {'; '.join(unresolved)}", file=sys.stderr)
        return 2
    engine = make_engine(settings.db_url)
    try:
        lock = sqlite_lock(settings.db_url)  # held until this process ends
    except CollectorRefused as exc:
        close_readers(readers)
        print(f"queuewatch: {exc}", file=sys.stderr)
        return 1
    targets = sorted({redis_source(getattr(reader, "client", None)) for reader in readers})
    coordinator = Coordinator(engine, collector_member(settings.collector_id), targets, settings.interval_s,
                              steal=lock is not None)
    collector = Collector(settings, engine, readers, agents_client=redis_client(settings.redis_urls[0]),
                          agents_prefix=settings.agent_prefix, coordinator=coordinator)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("collector %s: collecting from %s into %s every %.1f s", coordinator.member.collector_id,
             redacted(settings.redis_url), redacted(settings.db_url), settings.interval_s)
    if settings.channels and not args.once:
        from collector.notifier import start_notifiers

        start_notifiers(engine, settings.channels, stop)
        log.info("notifying alerts on %s", ", ".join(f"{c.name} ({c.type})" for c in settings.channels))
    try:
        return collector.run(stop, once=args.once)
    finally:
        close_readers(readers)



def dashboard_command(settings, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The streamlit command line and environment that serve app.py with these settings."""
    app = REPO_ROOT / "app.py"
    if not app.exists():
        raise OSError(f"app.py not found at {app}: install queuewatch from its source tree (pip install -e .)")
    env = {**os.environ, "QUEUEWATCH_DB_URL": settings.db_url, "QUEUEWATCH_REDIS_URL": settings.redis_url}
    if settings.config_path:
        env["QUEUEWATCH_CONFIG"] = settings.config_path
    command = [sys.executable, "-m", "dashboard.serve", "run", str(app), "--server.address", host,
               "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    return command, env


def _dashboard(settings, args) -> int:
    from storage.engine import make_engine

    make_engine(settings.db_url).dispose()  # fail here, clearly, on a bad database URL
    command, env = dashboard_command(settings, args.host, args.port)
    os.chdir(REPO_ROOT)  # Streamlit finds .streamlit/ and pages/ here; settings.db_url is already absolute
    os.execve(command[0], command, env)  # streamlit takes this process's place: signals reach it directly


def _export(settings, args) -> int:
    import time

    from storage.engine import make_engine
    from storage.queries_export import write_csv

    from storage.queries_latest import queue_exists

    engine = make_engine(settings.db_url)
    unknown = [name for name in args.queues if not queue_exists(engine, name)]
    if unknown:
        print(f"queuewatch: unknown queue(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    until_s = args.until if args.until is not None else time.time()
    since_s = args.since if args.since is not None else until_s - 86400
    if since_s >= until_s:
        print("queuewatch: --since must be before --until", file=sys.stderr)
        return 2
    out = sys.stdout if str(args.out) == "-" else args.out
    rows = write_csv(engine, out, kind=args.kind, queues=args.queues or None, since_s=since_s, until_s=until_s)
    if out is not sys.stdout:
        print(f"wrote {rows} rows to {args.out}", file=sys.stderr)
    return 0


def _api(settings, args) -> int:
    import uvicorn

    from storage.engine import make_engine

    make_engine(settings.db_url).dispose()  # fail here, clearly, on a bad database URL
    os.environ.update({"QUEUEWATCH_DB_URL": settings.db_url, "QUEUEWATCH_REDIS_URL": settings.redis_url})
    if settings.config_path:
        os.environ["QUEUEWATCH_CONFIG"] = settings.config_path
    # X-Forwarded-For is honoured by the app itself, only from QUEUEWATCH_TRUSTED_PROXIES (uvicorn would
    # trust 127.0.0.1 by default); the server header is left out.
    uvicorn.run("api.server:app", host=args.host, port=args.port, workers=args.workers, log_level="info",
                proxy_headers=False, server_header=False)
    return 0


def _accounts(run):
    def handler(settings, args) -> int:
        from storage.engine import make_engine

        return run(make_engine(settings.db_url), args)
    return handler


def _demo(settings, args) -> int:
    from queuewatch.demo.runner import run_demo

    if not settings.config_path:  # the demo pages like a site should: the README's recommended alert timing
        settings = dataclasses.replace(settings, config_path=str(DEMO_CONFIG_PATH))
    os.environ["QUEUEWATCH_CONFIG"] = settings.config_path
    return run_demo(settings, dashboard_port=args.port, duration_s=args.duration_s,
                    redis_url_given=bool(args.redis_url or os.environ.get("QUEUEWATCH_REDIS_URL")))


if __name__ == "__main__":
    sys.exit(main())
