"""An SSH connection to one broker's host, as its cluster file entry describes it."""

from __future__ import annotations

import shlex

from ..cluster_file import BrokerSpec, ClusterFile
from .ssh import CONNECT_TIMEOUT, SshHost

__all__ = ["host_of", "remote_logship"]


def host_of(cluster: ClusterFile, spec: BrokerSpec, timeout: float = CONNECT_TIMEOUT) -> SshHost:
    """An unconnected SshHost for `spec` (use it with `with`), strict about host keys."""
    return SshHost(spec.ssh_host, spec.ssh_port, spec.ssh_user, spec.key_file, cluster.known_hosts,
                   connect_timeout=timeout)


def remote_logship(cluster: ClusterFile) -> list[str]:
    """The cluster file's remote_logship command as argv (it may be `python3 -m logship`)."""
    return shlex.split(cluster.remote_logship)
