"""The errors a user meets first: each ends in exactly one line on stderr, never a traceback
or a bare "Kafka error code N", with the exit status of DESIGN.md (1 failure, 2 usage,
3 broker unreachable, 4 topic/group not found, 130 interrupted); a closed pipe is exit 0.

Every case runs `python -m logship` as a real subprocess, against a real `logship serve`
where a broker is needed, a tiny HTTP server and a silent TCP server for the two kinds of
wrong peer.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, wait_until
from logship.errors import KAFKA_ERRORS, LogshipError, error_for_code, explain_codes
from test_cli_produce import logship

pytestmark = pytest.mark.integration

FAILURE, USAGE, UNREACHABLE, NOT_FOUND, INTERRUPTED = 1, 2, 3, 4, 130
NOWHERE = ("-b", "127.0.0.1:9")  # never contacted: each usage error is found before connecting


def one_line(result: subprocess.CompletedProcess, status: int, *needles: str) -> str:
    """Assert the exit status and a single stderr line (no traceback, no bare code); returns it."""
    err = result.stderr.decode(errors="replace")
    assert result.returncode == status, (result.returncode, err)
    assert "Traceback" not in err and not re.search(r"Kafka error code -?\d", err), err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def shell_env(broker_address: str) -> dict:
    """For bash pipelines: `logship` is bin/logship, run by this interpreter's python3."""
    path = os.pathsep.join([str(ROOT / "bin"), os.path.dirname(sys.executable), os.environ["PATH"]])
    return dict(os.environ, PATH=path, LOGSHIP_BROKERS=broker_address)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the table of Kafka error codes ---------------------------------------------------------------


def test_every_kafka_error_code_has_a_name_and_a_meaning():
    assert set(range(-1, 129)) <= set(KAFKA_ERRORS)
    for code, (name, meaning) in KAFKA_ERRORS.items():
        assert re.fullmatch(r"[A-Z_]+", name) and meaning, code
        text = str(error_for_code(code, f"doing something: Kafka error code {code}"))
        assert text == f"doing something: {name}: {meaning}", text
        assert isinstance(error_for_code(code), LogshipError)
    assert str(error_for_code(17, "creating topic 'x'")).startswith("creating topic 'x': INVALID_TOPIC_EXCEPTION: ")
    assert "UNKNOWN_TOPIC_OR_PARTITION" in explain_codes("refused (Kafka error code 3)")
    assert "Kafka error code" not in str(error_for_code(4321, "x"))
    assert error_for_code(69).exit_status == NOT_FOUND


# --- serve ----------------------------------------------------------------------------------------


def test_serve_on_a_port_in_use(broker, tmp_path):
    one_line(logship("serve", "--data-dir", tmp_path / "other", "--listen", broker.address),
             FAILURE, broker.address, "in use")


def test_serve_on_an_address_of_another_host(tmp_path):
    # 10.255.255.1 is not this host's: bind fails locally (EADDRNOTAVAIL); nothing is sent there.
    one_line(logship("serve", "--data-dir", tmp_path / "d", "--listen", "10.255.255.1:0"),
             FAILURE, "10.255.255.1:0", "not one of this host's")


def test_serve_with_a_data_directory_it_cannot_create_or_write(tmp_path):
    (tmp_path / "a-file").write_text("")
    one_line(logship("serve", "--data-dir", tmp_path / "a-file" / "data", "--listen", "127.0.0.1:0"),
             FAILURE, "cannot use data directory", "not a directory")
    one_line(logship("serve", "--data-dir", "/proc/no-such-dir", "--listen", "127.0.0.1:0"),
             FAILURE, "cannot use data directory /proc/no-such-dir")
    one_line(logship("serve", "--data-dir", "/proc/1", "--listen", "127.0.0.1:0"),  # exists, not writable
             FAILURE, "cannot use data directory /proc/1")
    one_line(logship("serve", "--data-dir", tmp_path / "a-file", "--listen", "127.0.0.1:0"), USAGE, "--data-dir")


def test_serve_on_a_data_directory_another_broker_holds(broker, tmp_path):
    one_line(logship("serve", "--data-dir", tmp_path / "data", "--listen", "127.0.0.1:0"),
             FAILURE, "in use by another logship", "pid")


def test_serve_max_message_bytes_out_of_range(tmp_path):
    one_line(logship("serve", "--data-dir", tmp_path / "d", "--max-message-bytes", "1G"), USAGE,
             "--max-message-bytes")


# --- files, topics, names, sizes ------------------------------------------------------------------


def test_produce_from_a_missing_file(broker):
    one_line(logship("produce", "t", "/no/such/file", "-b", broker.address), FAILURE, "/no/such/file",
             "no such file")


def test_delete_of_a_missing_topic(broker):
    one_line(logship("topics", "delete", "no-such-topic", "-b", broker.address), NOT_FOUND,
             "no-such-topic", "UNKNOWN_TOPIC_OR_PARTITION", "does not exist")


@pytest.mark.parametrize("args", [
    ("produce", "bad name!"), ("consume", "bad name!", "-e"), ("tail", ".."), ("topics", "create", "a/b"),
    ("replay", "t", "--from", "0", "--into", "x" * 250), ("agent", "-t", "bad name!", "/nonexistent/*.log"),
])
def test_an_invalid_topic_name_is_a_usage_error_before_any_broker_is_asked(args):
    started = time.monotonic()
    line = one_line(logship(*args, *NOWHERE, input=b"x\n", timeout=20), USAGE, "topic name")
    assert "Error" not in line and time.monotonic() - started < 5, line


def test_the_agent_refuses_an_invalid_topic_name_in_its_config_file(tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text('brokers = "127.0.0.1:9"\n[[inputs]]\npaths = ["/nonexistent/*.log"]\ntopic = "bad name!"\n')
    one_line(logship("agent", "--config", config, "--state-dir", tmp_path / "state", timeout=20), USAGE,
             "'bad name!'", "topic name")


def test_a_record_above_the_size_limit_names_the_limit_and_how_to_raise_it(start_broker, tmp_path):
    small = start_broker("--max-message-bytes", "100K", data_dir=tmp_path / "small")
    big_record = b"x" * 300_000 + b"\n"
    line = one_line(logship("produce", "big", "-b", small.address, "-z", "none", input=big_record), FAILURE,
                    "MESSAGE_TOO_LARGE", "--max-message-bytes")
    assert "not delivered" in line
    assert "102400" in line or "102,400" in line, line  # the limit is named (by the broker, Produce v8)
    roomy = start_broker("--max-message-bytes", "4M", data_dir=tmp_path / "roomy")
    two_mib = b"y" * (2 << 20) + b"\n"
    assert logship("produce", "big", "-b", roomy.address, "-z", "none", input=two_mib).returncode == 0
    assert logship("consume", "big", "-b", roomy.address, "-e").stdout == two_mib


def test_topics_create_without_partitions_takes_the_brokers_default(start_broker):
    broker = start_broker("--partitions", "3")
    created = logship("topics", "create", "defaulted", "-b", broker.address)
    assert created.returncode == 0 and b"3 partitions" in created.stderr, created.stderr
    described = logship("topics", "describe", "defaulted", "-b", broker.address, "--json").stdout.splitlines()
    assert len(described) == 3
    one_line(logship("topics", "create", "defaulted", "-b", broker.address), FAILURE, "TOPIC_ALREADY_EXISTS")


def test_missing_topics_and_groups(broker):
    one_line(logship("consume", "no-such-topic", "-e", "-b", broker.address), NOT_FOUND, "no-such-topic")
    one_line(logship("groups", "describe", "no-such-group", "-b", broker.address), NOT_FOUND, "no-such-group")


def test_seek_of_an_active_group(start_broker):
    broker = start_broker("--group-initial-rebalance-delay", "0")
    assert logship("produce", "events", "-b", broker.address, input=b"a\nb\n").returncode == 0
    member = subprocess.Popen([sys.executable, "-m", "logship", "consume", "events", "-g", "busy", "-b",
                               broker.address], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert b"assigned" in member.stderr.readline()
        one_line(logship("seek", "busy", "events", "--to", "beginning", "-b", broker.address), FAILURE, "busy")
    finally:
        member.terminate()
        member.wait(20)


def test_serve_names_the_option_of_a_setting_it_refuses(tmp_path):
    line = one_line(logship("serve", "--data-dir", tmp_path / "d", "--segment-bytes", "0"), USAGE, "--segment-bytes",
                    "14..")
    assert "segment_bytes" not in line, line


def test_seek_says_what_a_partition_list_looks_like():
    line = one_line(logship("seek", "hg", "big:x", "--to", "0", *NOWHERE), USAGE, "'big:x'", "TOPIC:P[,P...]",
                    "big:0,2")
    assert "Error" not in line, line


def test_a_metadata_error_names_the_kafka_error_not_a_python_class(broker):
    from logship.client import Cluster
    from logship.errors import InvalidTopicError

    with Cluster(broker.address) as cluster, pytest.raises(InvalidTopicError) as caught:
        cluster.topic("bad name!", allow_create=True)
    assert "INVALID_TOPIC_EXCEPTION" in str(caught.value) and "InvalidTopicError" not in str(caught.value)


def test_a_session_timeout_the_broker_refuses_says_what_to_do(broker):
    assert logship("produce", "st", "-b", broker.address, input=b"x\n").returncode == 0
    one_line(logship("consume", "st", "-g", "g", "--session-timeout", "1h", "-b", broker.address, timeout=30),
             FAILURE, "INVALID_SESSION_TIMEOUT", "group.min", "--session-timeout", "6s..30m")


# --- usage errors ---------------------------------------------------------------------------------




@pytest.mark.parametrize("args, needle", [
    (("consume", "t", "-o", "yesterday", *NOWHERE), "-o/--offset"),
    (("consume", "t", "-f", "%x", *NOWHERE), "'%x'"),
    (("consume", "t", "-f", "", *NOWHERE), "empty"),
    (("consume", "t", "-f", "%v 100%", *NOWHERE), "'%'"),
    (("consume", "t", "--json", "-f", "%v\\n", *NOWHERE), "--json"),
    (("tail", "t", "--json", "--format", "%k", *NOWHERE), "--json"),
    (("replay", "t", "--from", "0", "--format", "%q", *NOWHERE), "'%q'"),
    (("consume", "t", "--grep", "(", *NOWHERE), "--grep"),
    (("topics", "list", "-b", "localhost:http"), "--brokers"),
    (("topics", "list", "--timeout", "0", *NOWHERE), "--timeout"),
    (("seek", "g", "t", *NOWHERE), "--to"),
    (("no-such-command",), "no-such-command"),
    (("consume",), "TOPIC"),
    (("produce", "t", "--batch-size", "0", *NOWHERE), "--batch-size"),
    (("produce", "t", "--linger-ms", "1e12", *NOWHERE), "--linger-ms"),
    (("produce", "t", "-p", "3000000000", *NOWHERE), "--partition"),
    (("agent", "-t", "x", "--max-line-bytes", "0", "/nonexistent/*.log", *NOWHERE), "--max-line-bytes"),
    (("consume", "t", "-g", "g", "--session-timeout", "0", *NOWHERE), "--session-timeout"),
    (("consume", "t", "-g", "g", "--session-timeout", "1000000h", *NOWHERE), "--session-timeout"),
    (("topics", "create", "t", "-p", "3000000000", *NOWHERE), "--partitions"),
    (("topics", "create", "t", "-r", "40000", *NOWHERE), "--replication-factor"),
    (("groups", "describe", "g", "--watch", "1e9", *NOWHERE), "--watch"),
    (("serve", "--group-min-session-timeout", "0"), "--group-min-session-timeout"),
    (("serve", "--retention-check-interval", "0"), "--retention-check-interval"),
    (("bench", "-s", "99999999999999"), "--size"),
    (("bench", "-n", "900000000", "-s", "1000"), "--records"),
])

def test_usage_errors_are_one_line(args, needle):
    one_line(logship(*args), USAGE, needle, "--help")


def test_undelivered_records_exit_with_the_status_of_what_failed_them():
    from logship.cli import exit_status_of
    from logship.errors import BrokerUnavailableError, DeliveryError, MessageTooLargeError, UnknownTopicError

    assert exit_status_of(DeliveryError(2, BrokerUnavailableError("cannot connect"))) == UNREACHABLE
    assert exit_status_of(DeliveryError(2, UnknownTopicError("no such topic"))) == NOT_FOUND
    assert exit_status_of(DeliveryError(2, MessageTooLargeError("too big"))) == FAILURE
    assert exit_status_of(UnknownTopicError("no such topic")) == NOT_FOUND


def test_running_out_of_memory_is_one_line_not_an_internal_error():
    from logship.cli import error_line

    line = error_line(MemoryError())
    assert line.startswith("logship: out of memory") and "internal error" not in line, line


@pytest.mark.parametrize("group", [(), ("topics",), ("groups",)])
def test_a_group_without_a_subcommand_is_a_usage_error_whatever_the_click_version(group):
    bare = logship(*group)
    assert bare.returncode == USAGE and bare.stdout == b"", bare
    assert b"Usage: logship" in bare.stderr and b"Commands:" in bare.stderr and b"Traceback" not in bare.stderr
    asked = logship(*group, "--help")
    assert asked.returncode == 0 and asked.stderr == b"" and b"Commands:" in asked.stdout, asked


@pytest.mark.parametrize("variable", ["LOGSHIP_DECODE_WORKERS", "LOGSHIP_ENCODE_WORKERS"])
@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
@pytest.mark.parametrize("args", [("consume", "t", "-c", "1"), ("tail", "t"), ("replay", "t", "--from", "0"),
                                  ("produce", "t")])
def test_a_worker_count_variable_is_checked_the_same_way_by_every_command(variable, value, args):
    one_line(logship(*args, *NOWHERE, env={variable: value}, timeout=20), USAGE, f"{variable}={value!r}")


# --- peers that are not (or no longer) brokers ----------------------------------------------------


def test_nothing_listening():
    address = f"127.0.0.1:{free_port()}"
    one_line(logship("topics", "list", "-b", address), UNREACHABLE, address)
    one_line(logship("produce", "t", "-b", address, input=b"x\n"), UNREACHABLE, address)


@pytest.fixture
def http_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_server():
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()
    for conn in accepted:
        conn.close()


def test_an_http_server_is_not_a_kafka_broker(http_server):
    for args in (("topics", "list"), ("consume", "t", "-e"), ("groups", "list")):
        one_line(logship(*args, "-b", http_server, timeout=20), UNREACHABLE, http_server,
                 "does not speak the Kafka protocol")


@pytest.fixture
def peer():
    """peer(answer) -> address of a server that reads what a client sends and writes
    answer(received) back (then closes), on every connection."""
    listeners = []

    def start(answer):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listeners.append(listener)

        def serve():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    conn.settimeout(5)
                    try:
                        conn.sendall(answer(conn.recv(65536)))
                        time.sleep(0.3)
                    except OSError:
                        pass

        threading.Thread(target=serve, daemon=True).start()
        return f"127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for listener in listeners:
        listener.close()


@pytest.mark.parametrize("answer, quoted", [
    (lambda request: bytes.fromhex("15 03 03 00 02 02 32"), "15 03 03 00 02 02 32"),  # a TLS alert
    (lambda request: request, "its answer begins with"),  # an echo server
    (lambda request: bytes.fromhex("00 00 00 04 00 00 00 01"), "00 00 00 04 00 00 00 01"),  # a short frame
    (lambda request: bytes.fromhex("00 00 00 02 00 01"), "00 00 00 02 00 01"),  # shorter than an id
    (lambda request: bytes.fromhex("ff ff ff f0 00 00"), "ff ff ff f0"),  # a negative length
])
def test_peers_that_answer_something_else_do_not_speak_the_kafka_protocol(peer, answer, quoted):
    address = peer(answer)
    one_line(logship("topics", "list", "-b", address, timeout=20), UNREACHABLE, address,
             "does not speak the Kafka protocol", quoted)


def test_a_server_that_never_answers_is_reported_within_the_timeout(silent_server):
    started = time.monotonic()
    one_line(logship("topics", "list", "-b", silent_server, "--timeout", "1", timeout=20), UNREACHABLE,
             silent_server, "did not answer within 1 s", "--timeout")
    assert time.monotonic() - started < 4
    started = time.monotonic()
    one_line(logship("consume", "t", "-b", silent_server, env={"LOGSHIP_TIMEOUT": "1.5"}, timeout=20),
             UNREACHABLE, "within 1.5 s")
    assert time.monotonic() - started < 4.5
    started = time.monotonic()
    one_line(logship("groups", "list", "-b", silent_server, timeout=20), UNREACHABLE, silent_server)
    assert time.monotonic() - started < 8  # the default connect timeout is 5 s


def test_produce_to_a_leader_that_cannot_be_reached_exits_3_within_the_timeout(start_broker, tmp_path):
    elsewhere = start_broker("--advertise", "127.0.0.1:1", data_dir=tmp_path / "elsewhere")
    started = time.monotonic()
    one_line(logship("produce", "t", "-b", elsewhere.address, "--timeout", "2", input=b"a\nb\nc\n", timeout=60),
             UNREACHABLE, "3 of 3 records were not delivered", "127.0.0.1:1")
    assert time.monotonic() - started < 8


def test_produce_to_a_broker_that_dies_exits_3_within_the_timeout(start_broker, tmp_path):
    dying = start_broker(data_dir=tmp_path / "dying")
    producer = subprocess.Popen([sys.executable, "-m", "logship", "produce", "t", "-b", dying.address,
                                 "--timeout", "2", "--linger-ms", "0"], stdin=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        producer.stdin.write(b"first\n")
        producer.stdin.flush()
        assert wait_until(lambda: logship("consume", "t", "-e", "-b", dying.address).stdout == b"first\n")
        dying.kill()
        started = time.monotonic()
        producer.stdin.write(b"second\n")
        producer.stdin.close()
        producer.wait(30)
        assert time.monotonic() - started < 8
        result = subprocess.CompletedProcess(producer.args, producer.returncode, b"", producer.stderr.read())
        one_line(result, UNREACHABLE, "not delivered")
    finally:
        producer.kill()
        producer.wait()


def test_the_library_names_no_option_only_a_command_with_timeout_mentions_it(silent_server):
    from logship.client.connection import Connection
    from logship.errors import BrokerUnavailableError

    host, port = silent_server.rsplit(":", 1)
    with pytest.raises(BrokerUnavailableError) as caught:
        Connection(host, int(port), connect_timeout=0.5)
    assert "did not answer within 0.5 s" in str(caught.value) and "--" not in str(caught.value)
    line = one_line(logship("topics", "list", "-b", silent_server, "--timeout", "0.5", timeout=20), UNREACHABLE)
    assert line.endswith("--timeout sets how long to wait"), line


# --- a closed pipe and Ctrl-C ---------------------------------------------------------------------


def _into_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """Run with standard output a pipe whose reader has already gone (`| head` exited)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "logship", *args], stdout=write_end, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    finally:
        os.close(write_end)


def test_a_closed_pipe_ends_every_command_with_status_0(broker, tmp_path):
    b = ("-b", broker.address)
    assert logship("produce", "lines", *b, input=b"".join(b"%d\n" % i for i in range(50_000))).returncode == 0
    assert logship("consume", "lines", *b, "-g", "readers", "-e").returncode == 0
    segment = next((tmp_path / "data" / "lines-0").glob("*.log"))
    commands = [("topics", "list", *b), ("topics", "list", "--json", *b), ("topics", "describe", "lines", *b),
                ("groups", "list", *b), ("groups", "list", "--json", *b), ("groups", "describe", "readers", *b),
                ("groups", "describe", "readers", "--json", *b), ("consume", "lines", "-e", *b),
                ("consume", "lines", "-e", "--json", *b), ("consume", "lines", "-c", "10", *b),
                ("consume", "lines", "-e", "-g", "other", *b), ("tail", "lines", "-n", "1000", *b),
                ("replay", "lines", "--from", "0", *b), ("dump", str(segment)),
                ("dump", "--records", str(segment)), ("dump", "--json", "--records", str(segment)),
                ("seek", "readers", "lines", "--to", "beginning", "--dry-run", *b), ("--help",), ("consume", "--help")]
    for args in commands:
        result = _into_closed_pipe(*args)
        noise = [line for line in result.stderr.splitlines() if b": assigned " not in line]  # -g reports that
        assert (result.returncode, noise) == (0, []), (args, result.stderr.decode(errors="replace"))


def test_head_in_a_pipefail_pipeline(broker, tmp_path):
    assert logship("produce", "many", "-b", broker.address,
                   input=b"".join(b"%d\n" % i for i in range(200_000))).returncode == 0
    segment = next((tmp_path / "data" / "many-0").glob("*.log"))
    env = shell_env(broker.address)
    for command in ("logship consume many", "logship consume many -e --json", "logship topics list",
                    f"logship dump --records {segment}", "logship tail many -n 100000"):
        result = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | head -1"], capture_output=True,
                                timeout=60, env=env)
        assert result.returncode == 0 and len(result.stdout.splitlines()) == 1, (command, result.stderr)
        assert b"Traceback" not in result.stderr and result.stderr == b"", (command, result.stderr)


@pytest.mark.parametrize("args", [("consume", "t"), ("consume", "t", "-g", "g"), ("tail", "-f", "t"),
                                  ("groups", "describe", "g", "--watch", "1")])
def test_ctrl_c_prints_nothing_and_exits_130(broker, args):
    assert logship("produce", "t", "-b", broker.address, input=b"one\n").returncode == 0
    if args[0] == "groups":
        assert logship("consume", "t", "-g", "g", "-e", "-b", broker.address).returncode == 0
    child = subprocess.Popen([sys.executable, "-m", "logship", *args, "-b", broker.address],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        first = child.stdout.readline()  # the command is running once its output has begun
        assert first, child.stderr.read()
        os.killpg(child.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    noise = [line for line in err.splitlines() if not line.startswith(b"logship: group g: assigned")]
    assert child.returncode == INTERRUPTED and noise == [], err


# --- the README's live jq pipeline ----------------------------------------------------------------


def test_the_readme_jq_pipeline_delivers_while_it_runs(broker):
    readme = (ROOT / "README.md").read_text()
    pipeline = next(line for line in readme.splitlines() if "jq --unbuffered" in line and "produce" in line)
    pipeline = pipeline.split("  #")[0]
    env = shell_env(broker.address)
    assert logship("topics", "create", "app", "-b", broker.address).returncode == 0  # consume needs the topic
    running = subprocess.Popen(["bash", "-c", f"set -o pipefail; {pipeline}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True, env=env)
    try:
        records = [b'{"level":"info","msg":"a"}', b"not json at all", b'{"level":"error","msg":"b"}', b"42",
                   b'"a json string"', b'{"level":"error","msg":"c"}']
        assert logship("produce", "app", "-b", broker.address, input=b"\n".join(records) + b"\n").returncode == 0

        def delivered():
            out = logship("consume", "app-errors", "-e", "-b", broker.address).stdout.splitlines()
            return out if len(out) >= 2 else None

        got = wait_until(delivered, timeout=20, interval=0.3)
        assert running.poll() is None, running.stderr.read()  # still following: nothing broke it
        assert [json.loads(v)["msg"] for v in got] == ["b", "c"]
    finally:
        try:
            os.killpg(running.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        running.wait(20)


def test_the_file_cache_fits_the_descriptor_limit_by_default():
    """Connections and fetch responses take a fifth of RLIMIT_NOFILE each; the segment-file
    cache at most two fifths, so that the three never add up past the limit."""
    import resource

    from logship.broker.limits import Limits
    from logship.cli.serve import _default_open_files

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        limits = Limits.defaults_for()
        assert limits.max_connections + limits.max_response_files + _default_open_files() <= 1024
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
