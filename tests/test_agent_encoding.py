"""Scenario 18 of reference/agents.md with real processes: a UTF-16 file with a byte-order
mark and CRLF line endings, tailed by a real `logship agent` into a real `logship serve`,
stopped (SIGTERM) in the middle of the file, appended to, restarted; every line read back
with confluent-kafka arrives once, as UTF-8, without its "\\r", at its offset in the file.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from agent_processes import AgentProcess, acknowledged_bytes, consume, write_config
from conftest import wait_until

pytestmark = pytest.mark.integration


def text_line(i: int) -> str:
    # non-ASCII in the BMP, a surrogate pair, and U+0A00 then U+0100 ("\n\0" at an odd position in LE)
    return f"{i:07d} grüße 日本語 😀 \u0a00\u0100 " + "x" * 40


@pytest.mark.parametrize("encoding,codec,bom", [("utf-16le", "utf-16-le", b"\xff\xfe"),
                                                ("utf-16", "utf-16-be", b"\xfe\xff")],
                         ids=["utf-16le", "utf-16-be-bom"])
def test_a_utf16_crlf_file_resumed_mid_file_arrives_once_as_utf8(tmp_path, start_broker, encoding, codec, bom):
    broker = start_broker()
    first, total = 150_000, 160_000
    encoded = [(text_line(i) + "\r\n").encode(codec) for i in range(total)]
    offsets = [len(bom)]
    for line in encoded:
        offsets.append(offsets[-1] + len(line))
    # Setup, retried: the agent must be stopped in the middle of the file, which a fast run
    # can miss (it reads all of it first); each try has a directory and a topic of its own.
    for attempt in range(3):
        work, topic = tmp_path / f"try{attempt}", f"logs{attempt}"
        (work / "logs").mkdir(parents=True)
        path = work / "logs" / "app.log"
        path.write_bytes(bom + b"".join(encoded[:first]))
        # small queue and reads, so that the stop lands in the middle of the file
        cfg = write_config(work, broker, [str(path)], topic=topic, queue_bytes="1M", read_bytes="64K",
                           input={"encoding": encoding, "line_terminator": "auto"})
        agent = AgentProcess(cfg)
        assert wait_until(lambda: acknowledged_bytes(work) > 0, timeout=30), agent.log()
        assert agent.stop() == 0
        checkpointed = acknowledged_bytes(work)
        if checkpointed < offsets[first]:
            break
    assert 0 < checkpointed < offsets[first], "the agent read the whole file before it was stopped, 3 times"
    assert checkpointed in offsets, f"checkpoint {checkpointed} is not at the start of a line"
    with open(path, "ab") as f:
        f.write(b"".join(encoded[first:]))
    agent = AgentProcess(cfg)
    assert agent.wait_for(rf"resuming at offset {checkpointed} "), agent.log()
    assert wait_until(lambda: acknowledged_bytes(work) == offsets[-1], timeout=60), agent.log()
    records = consume(broker.address, topic, total, timeout=60, idle=2.0)
    assert agent.stop() == 0
    assert "Traceback" not in agent.log()

    values = [value for value, _ in records]
    assert not [v for v in values if b"\r" in v], "a line was shipped with its \\r"
    expected = {text_line(i).encode("utf-8"): i for i in range(total)}
    unknown = [v for v in values if v not in expected]
    assert not unknown, f"{len(unknown)} records are not lines of the file, first: {unknown[0]!r}"
    counts = Counter(values)
    missing = [i for line, i in expected.items() if counts[line] == 0]
    twice = [expected[line] for line, n in counts.items() if n > 1]
    assert not missing and not twice, f"{len(missing)} lines missing (first {missing[:3]}), {len(twice)} twice"
    # each record's offset header is where its line begins in the file, in source bytes
    assert all(headers["offset"] == b"%d" % offsets[expected[value]] for value, headers in records)
    state = json.loads((work / "state" / "checkpoints.json").read_text())["files"]
    assert [entry["offset"] for entry in state] == [path.stat().st_size]
