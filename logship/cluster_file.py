"""The cluster file: which brokers make up a logship cluster, and how to reach each one.

One TOML file, read by `logship cluster up/status/down/remove` on the operator's machine and,
copied into each broker's data directory by `cluster up`, by `logship serve --cluster FILE
--broker-id N` on every host. Format:

    [cluster]
    name = "logs"                      # optional; default: the file's stem
    replication_factor = 3             # default for new topics; default min(3, brokers)
    ssh_key = "~/.ssh/logship_ed25519" # default key file of every [[broker]]
    known_hosts = "~/.config/logship/known_hosts"   # owned by logship; `cluster trust` fills it
    remote_logship = "logship"         # the command that runs logship on the hosts

    [[broker]]
    id = 1                             # 0 <= id <= 2**31 - 1, unique
    ssh = "root@10.10.0.1:22"          # [user@]host[:port]; user defaults to the local user
    key_file = "..."                   # optional; overrides [cluster] ssh_key
    listen = "10.10.0.1:9092"          # what `serve --listen` binds
    advertise = "10.10.0.1:9092"       # optional; what clients and peers dial (default: listen)
    data_dir = "/var/lib/logship"      # the broker's data directory on its host

Invariants checked by `load`: at least one broker; ids and advertised addresses unique;
1 <= replication_factor <= number of brokers; an advertised host is never 0.0.0.0 or `::`
(peers could not dial it). Unknown keys are refused, so a typo never silently falls back to
a default. The cluster's shared secret is never in this file: it lives beside the file on the
operator's machine (`secret_path`) and in each data directory (`SECRET_FILE_NAME`), mode 0600.
"""

from __future__ import annotations

import getpass
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .addresses import format_hostport, parse_hostport
from .errors import ConfigError

__all__ = ["BrokerSpec", "ClusterFile", "load", "parse", "secret_path", "SECRET_FILE_NAME",
           "CLUSTER_FILE_NAME", "FENCE_FILE_NAME", "DEFAULT_KNOWN_HOSTS"]

SECRET_FILE_NAME = "cluster.secret"
FENCE_FILE_NAME = "fenced"  # in a removed broker's data directory (cluster/fence.py)
CLUSTER_FILE_NAME = "cluster.toml"
DEFAULT_KNOWN_HOSTS = "~/.config/logship/known_hosts"
INT32_MAX = 2**31 - 1
_CLUSTER_KEYS = {"name", "replication_factor", "ssh_key", "known_hosts", "remote_logship"}
_BROKER_KEYS = {"id", "ssh", "key_file", "listen", "advertise", "data_dir"}


@dataclass(frozen=True)
class BrokerSpec:
    """One `[[broker]]` entry; `listen` and `advertise` are (host, port)."""

    id: int
    ssh_user: str
    ssh_host: str
    ssh_port: int
    key_file: str | None
    listen: tuple[str, int]
    advertise: tuple[str, int]
    data_dir: str

    @property
    def ssh_target(self) -> str:
        """`user@host:port` as written for people (and as known_hosts keys it, without the user)."""
        return f"{self.ssh_user}@{format_hostport(self.ssh_host, self.ssh_port)}"

    @property
    def address(self) -> str:
        """The advertised `host:port` that clients and peers dial."""
        return format_hostport(*self.advertise)


@dataclass(frozen=True)
class ClusterFile:
    name: str
    replication_factor: int
    known_hosts: str
    remote_logship: str
    brokers: tuple[BrokerSpec, ...]
    path: Path | None = field(default=None, compare=False)

    def broker(self, broker_id: int) -> BrokerSpec:
        for spec in self.brokers:
            if spec.id == broker_id:
                return spec
        known = ", ".join(str(b.id) for b in self.brokers)
        raise ConfigError(f"the cluster file has no broker {broker_id} (it has {known})")

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(spec.id for spec in self.brokers)

    @property
    def bootstrap(self) -> str:
        """Every advertised address, comma-separated (a `--brokers` value)."""
        return ",".join(spec.address for spec in self.brokers)


def secret_path(cluster_file: str | os.PathLike) -> Path:
    """Where the operator's copy of the cluster's secret lives: `FILE.secret` beside the file."""
    path = Path(cluster_file)
    return path.with_name(path.name + ".secret")


def load(path: str | os.PathLike) -> ClusterFile:
    """Read and check a cluster file; ConfigError (one line, naming the file) if it is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the cluster file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the cluster file {path} is not UTF-8 text") from None
    return parse(text, path)


def parse(text: str, path: Path | None = None) -> ClusterFile:
    where = f"the cluster file {path}" if path else "the cluster file"
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None

    def fail(message: str) -> ConfigError:
        return ConfigError(f"{where}: {message}")

    unknown = set(doc) - {"cluster", "broker"}
    if unknown:
        raise fail(f"unknown section {sorted(unknown)[0]!r} (known: [cluster], [[broker]])")
    head = doc.get("cluster", {})
    if not isinstance(head, dict):
        raise fail("[cluster] must be a table")
    if set(head) - _CLUSTER_KEYS:
        raise fail(f"unknown key {sorted(set(head) - _CLUSTER_KEYS)[0]!r} in [cluster] "
                   f"(known: {', '.join(sorted(_CLUSTER_KEYS))})")
    entries = doc.get("broker", [])
    if not isinstance(entries, list) or not entries:
        raise fail("no brokers: add at least one [[broker]] table")
    default_key = _string(head, "ssh_key", None, fail, "[cluster]")
    brokers = tuple(_broker(entry, default_key, fail, n) for n, entry in enumerate(entries, 1))
    _unique(brokers, fail)
    rf_default = min(3, len(brokers))
    rf = head.get("replication_factor", rf_default)
    if not isinstance(rf, int) or isinstance(rf, bool) or not 1 <= rf <= len(brokers):
        raise fail(f"replication_factor must be a whole number from 1 to {len(brokers)} "
                   f"(the number of brokers), not {rf!r}")
    name = _string(head, "name", path.stem if path else "logship", fail, "[cluster]")
    return ClusterFile(
        name=name, replication_factor=rf,
        known_hosts=_string(head, "known_hosts", DEFAULT_KNOWN_HOSTS, fail, "[cluster]"),
        remote_logship=_string(head, "remote_logship", "logship", fail, "[cluster]"),
        brokers=brokers, path=path)


def _string(table: dict, key: str, default, fail, where: str):
    value = table.get(key, default)
    if value is not default and (not isinstance(value, str) or not value.strip()):
        raise fail(f"{key} in {where} must be a non-empty string, not {value!r}")
    return value


def _broker(entry, default_key, fail, n: int) -> BrokerSpec:
    where = f"[[broker]] number {n}"
    if not isinstance(entry, dict):
        raise fail(f"{where} must be a table")
    if set(entry) - _BROKER_KEYS:
        raise fail(f"unknown key {sorted(set(entry) - _BROKER_KEYS)[0]!r} in {where} "
                   f"(known: {', '.join(sorted(_BROKER_KEYS))})")
    for key in ("id", "ssh", "listen", "data_dir"):
        if key not in entry:
            raise fail(f"{where} has no {key}")
    broker_id = entry["id"]
    if not isinstance(broker_id, int) or isinstance(broker_id, bool) or not 0 <= broker_id <= INT32_MAX:
        raise fail(f"id in {where} must be a whole number from 0 to {INT32_MAX}, not {broker_id!r}")
    where = f"broker {broker_id}"
    ssh = _string(entry, "ssh", None, fail, where)
    user, _, hostport = ssh.rpartition("@")
    try:
        ssh_host, ssh_port = parse_hostport(hostport, 22)
        listen = parse_hostport(_string(entry, "listen", None, fail, where))
        advertise = parse_hostport(_string(entry, "advertise", None, fail, where)) if "advertise" in entry else listen
    except ValueError as exc:
        raise fail(f"{where}: {exc}") from None
    if not hostport.strip() or ssh_host in ("", "0.0.0.0", "::"):
        raise fail(f"ssh in {where} must name a host: [user@]host[:port], not {ssh!r}")
    if advertise[0] in ("0.0.0.0", "::", ""):
        raise fail(f"{where} listens on {format_hostport(*listen)}: give it an advertise address "
                   f"that other hosts can dial")
    if advertise[1] == 0:
        raise fail(f"{where} needs a fixed port (not 0) in listen or advertise")
    data_dir = _string(entry, "data_dir", None, fail, where)
    return BrokerSpec(id=broker_id, ssh_user=user or getpass.getuser(), ssh_host=ssh_host, ssh_port=ssh_port,
                      key_file=_string(entry, "key_file", None, fail, where) or default_key,
                      listen=listen, advertise=advertise, data_dir=data_dir)


def _unique(brokers: tuple[BrokerSpec, ...], fail) -> None:
    seen_ids: set[int] = set()
    seen_addresses: dict[tuple[str, int], int] = {}
    for spec in brokers:
        if spec.id in seen_ids:
            raise fail(f"broker id {spec.id} appears twice")
        seen_ids.add(spec.id)
        if spec.advertise in seen_addresses:
            raise fail(f"brokers {seen_addresses[spec.advertise]} and {spec.id} both advertise {spec.address}")
        seen_addresses[spec.advertise] = spec.id
