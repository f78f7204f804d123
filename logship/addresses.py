"""`HOST:PORT` addresses as users write them (options, cluster files, `LOGSHIP_BROKERS`)."""

from __future__ import annotations

import re

__all__ = ["parse_hostport", "format_hostport", "parse_metrics_address", "DEFAULT_METRICS_PORT"]

DEFAULT_METRICS_PORT = 9309


def parse_hostport(text: str, default_port: int = 9092) -> tuple[str, int]:
    """(host, port) from `HOST:PORT`, `HOST`, `:PORT` or `[V6]:PORT`; ValueError otherwise."""
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:]*)(?::(\d+))?", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not HOST:PORT")
    host = match.group(1) or match.group(3) or "127.0.0.1"
    port = match.group(2) or match.group(4)
    port_number = int(port) if port else default_port
    if not 0 <= port_number <= 65535:
        raise ValueError(f"port {port_number} is out of range")
    return host, port_number


def format_hostport(host: str, port: int) -> str:
    """`host:port`, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_metrics_address(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `HOST` (port 9309) or `PORT` alone (on 127.0.0.1), for --metrics; ValueError
    otherwise."""
    text = text.strip()
    if text.isdigit():
        text = f":{text}"
    return parse_hostport(text, DEFAULT_METRICS_PORT)
