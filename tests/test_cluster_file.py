"""The cluster file: parsing, defaults, and one-line errors for every kind of mistake."""

from __future__ import annotations

import pytest

from logship.cluster_file import load, parse, secret_path
from logship.errors import ConfigError

GOOD = """
[cluster]
name = "logs"
ssh_key = "/keys/id"

[[broker]]
id = 1
ssh = "root@10.0.0.1"
listen = "10.0.0.1:9092"
data_dir = "/var/lib/logship"

[[broker]]
id = 2
ssh = "ops@10.0.0.2:2222"
key_file = "/keys/other"
listen = "0.0.0.0:9092"
advertise = "10.0.0.2:9092"
data_dir = "/srv/logship"
"""


def test_good_file_and_defaults(tmp_path):
    path = tmp_path / "prod.toml"
    path.write_text(GOOD)
    cluster = load(path)
    assert cluster.name == "logs"
    assert cluster.replication_factor == 2  # min(3, brokers)
    assert cluster.ids == (1, 2)
    one, two = cluster.brokers
    assert (one.ssh_user, one.ssh_host, one.ssh_port, one.key_file) == ("root", "10.0.0.1", 22, "/keys/id")
    assert (two.ssh_user, two.ssh_port, two.key_file) == ("ops", 2222, "/keys/other")
    assert two.listen == ("0.0.0.0", 9092) and two.address == "10.0.0.2:9092"
    assert cluster.bootstrap == "10.0.0.1:9092,10.0.0.2:9092"
    assert cluster.broker(2) is two
    assert secret_path(path).name == "prod.toml.secret"
    with pytest.raises(ConfigError, match="no broker 7"):
        cluster.broker(7)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace('id = 2', 'id = 1'), "broker id 1 appears twice"),
    (lambda t: t.replace('advertise = "10.0.0.2:9092"', 'advertise = "10.0.0.1:9092"'), "both advertise"),
    (lambda t: t.replace('advertise = "10.0.0.2:9092"\n', ''), "give it an advertise address"),
    (lambda t: t.replace('name = "logs"', 'name = "logs"\nreplication_factor = 3'), "replication_factor must be"),
    (lambda t: t.replace('name = "logs"', 'nmae = "logs"'), "unknown key 'nmae'"),
    (lambda t: t.replace('data_dir = "/srv/logship"', ''), "has no data_dir"),
    (lambda t: t.replace('id = 2', 'id = -2'), "id in .* must be a whole number"),
    (lambda t: t.replace('listen = "10.0.0.1:9092"', 'listen = "10.0.0.1:99999"'), "out of range"),
    (lambda t: t.replace('ssh = "root@10.0.0.1"', 'ssh = "root@"'), "must name a host"),
    (lambda t: t + "\n[extra]\n", "unknown section 'extra'"),
    (lambda t: t.replace('[cluster]', '[cluster'), "not valid TOML"),
    (lambda t: t.split("[[broker]]")[0], "no brokers"),
])
def test_mistakes_are_one_line_errors(change, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse(change(GOOD))
    assert "\n" not in str(info.value)


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the cluster file"):
        load(tmp_path / "missing.toml")
