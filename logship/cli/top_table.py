"""The tables of `logship top`: its views, their sort keys, and a snapshot
(client/traffic.py) as rows; shared by the curses screen and the one-shot print."""

from __future__ import annotations

from .units import size_text

VIEWS = ("topics", "partitions", "groups")
#: per view, the sort keys offered (key letter -> (label, sort function, descending))
SORTS = {
    "topics": {"n": ("name", lambda r: r.name, False), "i": ("in", lambda r: r.records_in, True),
               "o": ("out", lambda r: r.records_out, True), "s": ("size", lambda r: r.size_bytes or 0, True)},
    "partitions": {"n": ("name", lambda r: (r.topic, r.partition), False),
                   "i": ("in", lambda r: r.records_in, True), "s": ("size", lambda r: r.size_bytes or 0, True)},
    "groups": {"n": ("name", lambda r: r.group, False), "l": ("lag", lambda r: r.lag, True),
               "o": ("out", lambda r: r.records_out, True)},
}
BARS = "▁▂▃▄▅▆▇█"
ASCII_BARS = " .:-=+*#"


def sparkline(values: list[float], width: int = 20, bars: str = BARS) -> str:
    """The last `width` values as bar characters, scaled to their largest."""
    values = values[-width:]
    top = max(values, default=0)
    if top <= 0:
        return bars[0] * len(values)
    return "".join(bars[min(int(v / top * (len(bars) - 1) + 0.5), len(bars) - 1)] for v in values)


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _mb(value: float) -> str:
    return f"{value / 1e6:.2f}"


def rows(snapshot, view: str, sort: str, bars: str = BARS) -> tuple[list[str], list[list]]:
    """(headers, rows) of `view`, sorted by `sort` (a key of SORTS[view])."""
    _, key, descending = SORTS[view].get(sort) or SORTS[view]["n"]
    if view == "topics":
        items = sorted(snapshot.topics, key=key, reverse=descending)
        return (["topic", "parts", "in rec/s", "in MB/s", "out rec/s", "out MB/s", "size", "last minute (in)"],
                [[t.name, t.partitions, _rate(t.records_in), _mb(t.bytes_in), _rate(t.records_out),
                  _mb(t.bytes_out), size_text(t.size_bytes), sparkline(t.history, bars=bars)] for t in items])
    if view == "partitions":
        items = sorted(snapshot.partitions, key=key, reverse=descending)
        return (["topic", "partition", "leader", "log end", "size", "in rec/s", "in MB/s"],
                [[p.topic, p.partition, p.leader, p.log_end_offset, size_text(p.size_bytes), _rate(p.records_in),
                  _mb(p.bytes_in)] for p in items])
    items = sorted(snapshot.groups, key=key, reverse=descending)
    return (["group", "state", "members", "topics", "lag", "out rec/s"],
            [[g.group, g.state, g.members, ",".join(g.topics), g.lag, _rate(g.records_out)] for g in items])
