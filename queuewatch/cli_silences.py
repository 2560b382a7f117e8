"""`queuewatch silences add|list|expire`."""
from __future__ import annotations

import argparse
import sys
import time

from sqlalchemy import Engine

from core.silences import parse_duration_s
from storage.silences import ALERT_TYPES, add_silence, expire_silence, list_silences


def _duration(text: str) -> float:
    try:
        return parse_duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_parsers(commands, add_common) -> None:
    silences = commands.add_parser("silences", help="silence alerts for a while (they are stored, marked silenced)")
    actions = silences.add_subparsers(dest="action", required=True, help="what to do")
    add = actions.add_parser("add", help="silence the alerts matching every given matcher, from now on")
    add.add_argument("--queue", dest="queue_glob", help="queue name or glob pattern (e.g. 'bulk-*'; default any)")
    add.add_argument("--library", choices=("rq", "bullmq", "celery"), help="only this library's queues")
    add.add_argument("--type", dest="alert_type", choices=ALERT_TYPES, help="only this alert type")
    add.add_argument("--severity", choices=("warning", "critical"), help="only this severity")
    add.add_argument("--for", dest="duration_s", type=_duration, required=True,
                     help="how long: 90s, 15m, 2h30m, 1d (the silence then expires by itself)")
    add.add_argument("--comment", required=True, help="why (shown with the silence)")
    add.add_argument("--by", dest="created_by", help="who silences (an email; default the OS user)")
    listing = actions.add_parser("list", help="list silences in force")
    listing.add_argument("--all", dest="include_expired", action="store_true", help="expired ones too")
    expire = actions.add_parser("expire", help="end a silence now")
    expire.add_argument("silence_id", type=int, help="the silence's id (from `silences list`)")
    for leaf in actions.choices.values():
        add_common(leaf, redis=False)


def _line(silence: dict) -> str:
    matchers = ", ".join(f"{name}={silence[name]}" for name in ("queue", "library", "type", "severity")
                         if silence[name] is not None) or "everything"
    state = "active" if silence["active"] else "expired"
    return (f"{silence['id']}\t{state}\t{matchers}\tuntil {silence['endsAt']}\tby {silence['createdBy'] or '-'}"
            f"\t{silence['comment']}")


def run(engine: Engine, args: argparse.Namespace) -> int:
    now_s = time.time()
    if args.action == "add":
        import getpass

        try:
            silence = add_silence(engine, duration_s=args.duration_s, comment=args.comment, now_s=now_s,
                                  queue_glob=args.queue_glob, library=args.library, alert_type=args.alert_type,
                                  severity=args.severity, created_by=args.created_by or getpass.getuser())
        except ValueError as exc:
            print(f"queuewatch: {exc}", file=sys.stderr)
            return 2
        print(f"silence {silence['id']} until {silence['endsAt']}")
        return 0
    if args.action == "list":
        rows = list_silences(engine, now_s, include_expired=args.include_expired)
        print("id\tstate\tmatchers\tends\tcreated by\tcomment")
        for silence in rows:
            print(_line(silence))
        return 0
    silence = expire_silence(engine, args.silence_id, now_s)
    if silence is None:
        print(f"queuewatch: no silence with id {args.silence_id}", file=sys.stderr)
        return 1
    print(f"silence {silence['id']} expired at {silence['endsAt']}")
    return 0
