"""Pure formatting helpers for the dashboard: durations, ages, UTC times, status labels."""
from __future__ import annotations

import html
import math
import re
from datetime import datetime, timezone

STATUS_COLOURS = {"healthy": "#2ca02c", "warning": "#e67e00", "critical": "#d62728", "stale": "#7f7f7f",
                  "gone": "#7f7f7f"}
SEVERITY_MARKDOWN = {"warning": ":orange[:material/warning: **warning**]",
                     "critical": ":red[:material/error: **critical**]"}
EMPTY_STATE = ("No snapshots yet — start the collector with `queuewatch collect` (it reads Redis every "
               "10 s and writes to the same database as this dashboard); the pages fill in after its first "
               "cycle.")
_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character


def markdown_text(value: object) -> str:
    """Text made safe to put inside markdown: every ASCII punctuation character backslash-escaped, so no
    emphasis, link, image, HTML, colour, icon or maths is made from it, and line breaks folded into spaces.

    Markdown still turns bare URLs and email addresses into links (GFM autolinks survive escaping), so names
    read from Redis or the database are shown with st.text, and this is for figures and labels around them.
    """
    text = " ".join(str(value).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def plotly_text(value: object) -> str:
    """Text for Plotly names, labels and hover templates: its HTML-like tags (<a>, <b>, <br>) and template
    placeholders (%{...}) shown as they are."""
    return html.escape(str(value), quote=False).replace("%{", "%&#123;")


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_ms(value_ms: float | None) -> str:
    """A duration in ms as "234 ms", "1.85 s" or "3.2 min"; "–" when unknown."""
    if _missing(value_ms):
        return "–"
    if value_ms < 1000:
        return f"{value_ms:.0f} ms"
    if value_ms < 60_000:
        return f"{value_ms / 1000:.2f} s"
    return f"{value_ms / 60_000:.1f} min"


def fmt_age(seconds: float | None) -> str:
    """How long ago: "12 s ago", "5 min ago", "3.2 h ago", "2.0 d ago"."""
    if _missing(seconds):
        return "never"
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} d ago"


def fmt_utc(at_s: float | None) -> str:
    """Epoch seconds as "2025-10-19 12:00:00 UTC"."""
    if _missing(at_s):
        return "–"
    return datetime.fromtimestamp(float(at_s), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_iso(text: str | None) -> str:
    """An ISO 8601 UTC string ("2025-10-19T12:00:00.000Z") as "2025-10-19 12:00:00 UTC"."""
    if not text:
        return "–"
    return fmt_utc(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def fmt_count(value: float | None) -> str:
    """A count with thousands separators."""
    return "–" if _missing(value) else f"{value:,.0f}"


def fmt_figure(value: float | None) -> str:
    """A measured figure: whole numbers without decimals, others with two ("1,850", "2.35")."""
    if _missing(value):
        return "–"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def fmt_rate(value: float | None, unit: str = "") -> str:
    """A rate with one decimal ("1.2%", "287.0")."""
    return "–" if _missing(value) else f"{value:,.1f}{unit}"


def status_style(status: object) -> str:
    """CSS for a status cell: its colour, bold."""
    colour = STATUS_COLOURS.get(str(status))
    return f"color: {colour}; font-weight: 600" if colour else ""


def severity_markdown(severity: str) -> str:
    """A severity as coloured markdown with its icon."""
    return SEVERITY_MARKDOWN.get(severity, f"**{markdown_text(severity)}**")
