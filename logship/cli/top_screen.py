"""The curses screen of `logship top`: a header line, the table of the current view, a line
of keys; redrawn after every sample and every key.

Keys: t, p, g switch to topics, partitions, groups (Tab cycles); n, i, o, l, s sort by name,
in, out, lag, size where the view has that column; q (or Ctrl-C) quits. Lines are cut to the
terminal's width and the table to its height, so a small terminal never makes curses fail.
A sample that fails keeps the last table on screen and shows the error in the header.
"""

from __future__ import annotations

import curses
import locale
import time

from tabulate import tabulate

from ..errors import LogshipError
from .top_table import ASCII_BARS, BARS, SORTS, VIEWS, rows

_KEYS = "t/p/g views  n/i/o/l/s sort  q quit"


def run(traffic, interval: float, view: str, brokers: str) -> None:
    locale.setlocale(locale.LC_ALL, "")
    bars = BARS if "UTF-8" in (locale.getpreferredencoding(False) or "").upper() else ASCII_BARS
    try:
        curses.wrapper(_loop, traffic, interval, view, brokers, bars)
    except KeyboardInterrupt:
        pass


def _loop(screen, traffic, interval: float, view: str, brokers: str, bars: str) -> None:
    curses.curs_set(0)
    screen.timeout(100)
    sort, snapshot, error = "n", None, None
    next_sample = 0.0
    while True:
        now = time.monotonic()
        if now >= next_sample:
            try:
                snapshot, error = traffic.sample(), None
            except LogshipError as exc:
                error = str(exc)
            next_sample = time.monotonic() + interval  # from the end: a slow sample leaves time for keys
            _draw(screen, snapshot, view, sort, brokers, error, bars)
        key = screen.getch()
        if key == -1:
            continue
        char = chr(key) if 0 <= key < 256 else ""
        if char in ("q", "Q"):
            return
        if char == "\t":
            view = VIEWS[(VIEWS.index(view) + 1) % len(VIEWS)]
        elif char in ("t", "p", "g"):
            view = {"t": "topics", "p": "partitions", "g": "groups"}[char]
        elif char in SORTS[view]:
            sort = char
        elif key != curses.KEY_RESIZE:
            continue
        _draw(screen, snapshot, view, sort, brokers, error, bars)


def _draw(screen, snapshot, view: str, sort: str, brokers: str, error: str | None, bars: str) -> None:
    height, width = screen.getmaxyx()
    screen.erase()
    sorted_by = (SORTS[view].get(sort) or SORTS[view]["n"])[0]
    header = f"logship top  {brokers}  {time.strftime('%H:%M:%S')}  {view} by {sorted_by}"
    if error:
        header += f"  ERROR: {error}"
    lines = [header, ""]
    if snapshot is not None:
        headers, table = rows(snapshot, view, sort, bars)
        lines += tabulate(table, headers=headers).splitlines() if table else [f"(no {view})"]
        if snapshot.errors:
            lines += ["", *(f"! {e}" for e in snapshot.errors)]
    for y, line in enumerate(lines[:max(height - 1, 0)]):
        _put(screen, y, line, width, curses.A_BOLD if y == 0 else curses.A_NORMAL)
    _put(screen, height - 1, _KEYS, width, curses.A_REVERSE)
    screen.refresh()


def _put(screen, y: int, text: str, width: int, attr: int) -> None:
    try:
        screen.addnstr(y, 0, text, max(width - 1, 0), attr)
    except curses.error:  # the bottom-right cell, or a terminal shrunk meanwhile
        pass
