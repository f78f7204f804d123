"""Record output formats of the CLI: kcat-style -f tokens, JSON lines both ways, --grep."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logship.cli.output import compile_format, render_json, value_filter
from logship.cli.render import record_as_json, record_from_json
from logship.client.fetched import ConsumedRecord

R1 = ConsumedRecord("web", 0, 5, 1_700_000_000_123, b"k1", b'{"a":1}', (("h", b"v"), ("n", None)))
R2 = ConsumedRecord("web", 2, 6, 1_700_000_000_124, None, b"plain", ())


def test_default_format_is_value_per_line():
    assert compile_format("%v\\n")([R1, R2]) == b'{"a":1}\nplain\n'
    assert compile_format("%s\\n")([R1, R2]) == b'{"a":1}\nplain\n'


def test_every_token_and_escape():
    out = compile_format("%t|%p|%o|%T|%k|%v|%h|100%%\\t\\\\\\n")([R1, R2])
    assert out == (b'web|0|5|1700000000123|k1|{"a":1}|h=v,n=|100%\t\\\n'
                   b"web|2|6|1700000000124||plain||100%\t\\\n")


def test_json_lines_embed_json_values_and_name_the_partition():
    lines = [json.loads(line) for line in render_json([R1, R2]).splitlines()]
    assert lines[0] == {"topic": "web", "partition": 0, "offset": 5, "timestamp": 1_700_000_000_123,
                        "key": "k1", "value": {"a": 1}, "headers": [["h", "v"], ["n", None]]}
    assert lines[1]["value"] == "plain" and lines[1]["key"] is None


def test_non_utf8_is_base64_and_says_so():
    record = ConsumedRecord("t", 0, 0, 0, b"\xff", b"\xfe\x00", (("b", b"\x80"),))
    obj = json.loads(render_json([record]))
    assert obj["key_encoding"] == obj["value_encoding"] == "base64" and obj["headers"][0][2] == "base64"


@given(key=st.none() | st.binary(max_size=20), value=st.none() | st.binary(max_size=50) | st.just(b'{"x":[1,2]}'),
       headers=st.lists(st.tuples(st.text(max_size=5), st.none() | st.binary(max_size=10)), max_size=3))
def test_json_round_trips_every_record(key, value, headers):
    record = ConsumedRecord("t", 1, 2, 3, key, value, tuple(headers))
    back = record_from_json(json.loads(render_json([record])))
    assert (back["key"], back["value"], back["headers"], back["timestamp"], back["partition"]) == (
        key, value, tuple(headers), 3, 1)


@pytest.mark.parametrize("bad", [[], {"key": "k"}, {"value": "v", "headers": [["h"]]}, {"value": "v", "timestamp": "x"}])
def test_bad_json_records_are_refused(bad):
    with pytest.raises(ValueError):
        record_from_json(bad)


def test_grep_keeps_matching_values():
    keep = value_filter("^pl")
    assert keep([R1, R2]) == [R2]
    assert value_filter(None)([R1]) == [R1]
    with pytest.raises(ValueError):
        value_filter("(")
