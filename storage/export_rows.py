"""The snapshot CSV export as plain rows: stored integers read straight from the driver and written as text.

A DataFrame per chunk, then csv.writer over object arrays, cost most of an export's time. Here each row is
read as the driver gives it (no SQLAlchemy row objects) and written by one format string; the cells are the
ones storage.queries_export writes from its DataFrames (the same text, tested byte for byte):

- whole numbers as integers;
- figures stored as integer thousandths or microseconds as the shortest decimal of value / 1000 (what
  Python's repr of the float gives), each distinct value formatted once;
- times as ISO 8601 UTC with milliseconds;
- unmeasured figures empty, or 0.0 where the spec types them as numbers, and empty again where the row's
  `unavailable` lists them;
- the queue name, the library and `unavailable` as CSV cells (spreadsheet-safe, quoted when needed).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import IO, Callable, Sequence

from sqlalchemy import Connection, and_, select

from storage.schema import (
    DELTA_COLUMNS,
    DEPTH_COLUMNS,
    MICRO_COLUMNS,
    MILLI_COLUMNS,
    STATUS_NAMES,
    micro_name,
    queue_samples,
)

MEMO_LIMIT = 1_000_000
"""Distinct values whose text is kept (then the memo starts again), so memory stays bounded."""
_FRACTIONS = [("." + f"{r:03d}".rstrip("0")) if r else ".0" for r in range(1000)]


class _Thousandths(dict):
    """Text of an integer count of thousandths, as repr(value / 1000) writes it; None as `missing`."""

    def __init__(self, missing: str) -> None:
        super().__init__()
        self.missing = missing

    def __missing__(self, value: int | None) -> str:
        if len(self) >= MEMO_LIMIT:
            self.clear()
        if value is None:
            text = self.missing
        else:
            whole, rest = divmod(abs(int(value)), 1000)
            text = f"{'-' if value < 0 else ''}{whole}{_FRACTIONS[rest]}"
        self[value] = text
        return text


class _Times(dict):
    """ISO 8601 UTC text of epoch milliseconds."""

    def __missing__(self, at_ms: int) -> str:
        if len(self) >= MEMO_LIMIT:
            self.clear()
        text = datetime.fromtimestamp(at_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        self[at_ms] = text
        return text


def _stored(column: str) -> tuple[str, str]:
    """(stored column, kind) of an export column: kind "int", "milli", "time" or, for the status and the
    text columns, the column's own name."""
    if column in DEPTH_COLUMNS or column in DELTA_COLUMNS:
        return column, "int"
    if column in MILLI_COLUMNS:
        return f"{column}_m", "milli"
    if column in MICRO_COLUMNS:
        return micro_name(column), "milli"
    if column == "interval_s":
        return "interval_ms", "milli"
    if column == "sampled_at_s":
        return "sampled_at_ms", "time"
    if column in ("status", "unavailable", "queue_name", "library"):
        return column, column
    raise ValueError(f"no stored column for export column {column!r}")


class RowFormat:
    """How the export's (name, column) fields become one CSV line from a stored row."""

    def __init__(self, fields: Sequence[tuple[str, str]], blanked: frozenset[str],
                 zero_when_unknown: frozenset[str], cell: Callable[[object], str]) -> None:
        self.fields = list(fields)
        self.kinds = [_stored(column) for _, column in self.fields]
        stored = list(dict.fromkeys(["series_id"] + [name for name, kind in self.kinds
                                                    if kind not in ("queue_name", "library")]))
        self.columns = [queue_samples.c[name] for name in stored]
        self._slot = {name: index for index, name in enumerate(stored)}
        self.blanked, self.cell = blanked, cell
        self._number = _Thousandths("")
        self._zero = _Thousandths("0.0")
        self.zero_when_unknown = zero_when_unknown
        self._times = _Times()
        self._unavailable: dict[object, tuple[str, frozenset[int]]] = {}

    def _unavailable_of(self, raw: object) -> tuple[str, frozenset[int]]:
        """(cell, positions of the fields it blanks) of a stored `unavailable`."""
        known = self._unavailable.get(raw)
        if known is None:
            listed = {part.strip() for part in str(raw).split(",")} if raw else set()
            blank = frozenset(i for i, (name, _) in enumerate(self.fields)
                              if name in listed and name in self.blanked)
            known = self._unavailable[raw] = (self.cell(raw), blank)
        return known

    def fast_line(self) -> Callable[[tuple, tuple[str, str]], str]:
        """line() as one format string, made from the fields once per export (the per-cell branches of line()
        cost more than the reading); a row whose `unavailable` blanks a field still takes line()."""
        parts = []
        for (name, _), (column, kind) in zip(self.fields, self.kinds):
            value = f"row[{self._slot.get(column, -1)}]"
            parts.append({"queue_name": "{names[0]}", "library": "{names[1]}", "int": f"{{{value}}}",
                          "milli": f"{{{'zero' if name in self.zero_when_unknown else 'number'}[{value}]}}",
                          "time": f"{{times[{value}]}}", "status": f"{{status.get({value}, 'healthy')}}",
                          "unavailable": f"{{unavailable({value})[0]}}"}[kind])
        check = ""
        if "unavailable" in self._slot:  # a row whose `unavailable` blanks a field takes line()
            at = self._slot["unavailable"]
            check = (f"    if row[{at}] is not None and unavailable(row[{at}])[1]:\n"
                     "        return general(row, names)\n")
        source = f"def line(row, names):\n{check}    return f\"{','.join(parts)}\"\n"
        scope = {"number": self._number, "zero": self._zero, "times": self._times, "status": STATUS_NAMES,
                 "unavailable": self._unavailable_of, "general": self.line}
        exec(compile(source, "<export row format>", "exec"), scope)  # noqa: S102 (fields are this module's)
        return scope["line"]

    def line(self, row: tuple, names: tuple[str, str]) -> str:
        """The CSV line of a stored row; `names` the (queue name, library) cells of its series."""
        cells = []
        for (name, _), (column, kind) in zip(self.fields, self.kinds):
            if kind == "queue_name":
                cells.append(names[0])
            elif kind == "library":
                cells.append(names[1])
            else:
                value = row[self._slot[column]]
                if kind == "int":
                    cells.append("" if value is None else str(value))
                elif kind == "milli":
                    memo = self._zero if name in self.zero_when_unknown else self._number
                    cells.append(memo[value])
                elif kind == "time":
                    cells.append(self._times[value])
                elif kind == "status":
                    cells.append(STATUS_NAMES.get(value, "healthy"))
                else:
                    cells.append(self._unavailable_of(value)[0])
        raw = row[self._slot["unavailable"]] if "unavailable" in self._slot else None
        if raw is not None:
            for position in self._unavailable_of(raw)[1]:
                cells[position] = ""
        return ",".join(cells)


def write_rows(conn: Connection, stream: IO[str], form: RowFormat, ids: list[int],
               names: dict[int, tuple[str, str]], start_ms: int, stop_ms: int, *, chunk_rows: int,
               first_window_ms: int, line_end: str) -> int:
    """Write the rows of the series `ids` sampled in [start_ms, stop_ms), in time order then queue name then
    library, read in consecutive time windows of about `chunk_rows` rows (memory stays flat); `names` maps
    series ids to (library, queue name). Returns the rows written."""
    t = queue_samples
    by_name = sorted(ids, key=lambda sid: (names[sid][1], names[sid][0]))
    order = {sid: rank for rank, sid in enumerate(by_name)}
    cells = {sid: (form.cell(names[sid][1]), form.cell(names[sid][0])) for sid in ids}
    at = form._slot["sampled_at_ms"]
    line = form.fast_line()
    written, window_ms = 0, first_window_ms
    while start_ms < stop_ms:
        upper_ms = min(stop_ms, start_ms + window_ms)
        result = conn.execute(select(*form.columns).where(and_(
            t.c.series_id.in_(ids), t.c.sampled_at_ms >= start_ms, t.c.sampled_at_ms < upper_ms)))
        try:
            rows = result.cursor.fetchall()  # the driver's tuples: no row objects built for each row
        finally:
            result.close()
        rows.sort(key=lambda row: (row[at], order[row[0]]))
        if rows:
            stream.write(line_end.join([line(row, cells[row[0]]) for row in rows]) + line_end)
        written += len(rows)
        scale = chunk_rows / max(len(rows), 1)
        window_ms = int(min(max(window_ms * min(scale, 8.0), 1000), 30 * 86_400_000))
        start_ms = upper_ms
    return written
