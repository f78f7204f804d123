"""The agent's configuration: TOML files (the examples among them), validation messages,
the quick form of the command line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from logship.agent.config import AgentConfig, default_state_dir, load_config, make_input, parse_duration, parse_size
from logship.cli import cli
from logship.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_the_nginx_example_parses_with_the_options_it_documents():
    config = load_config(ROOT / "examples" / "agent-nginx.toml")
    assert [i.topic for i in config.inputs] == ["nginx-access", "nginx-error"]
    access = config.inputs[0]
    assert access.paths == ("/var/log/nginx/access.log*",) and access.exclude == ("*.gz",)
    assert dict(access.fields) == {"service": "nginx", "log": "access"}
    assert access.render_key("web-1", "/var/log/nginx/access.log") == b"web-1"
    assert access.encoding == "utf-8" and access.line_terminator == "auto"
    assert config.state_dir == Path("/var/lib/logship/agent")


def test_the_java_example_joins_stack_traces():
    config = load_config(ROOT / "examples" / "agent-java.toml")
    (inp,) = config.inputs
    pattern = inp.multiline.compile()
    assert pattern.match(b"2026-11-24 10:00:00.123 ERROR [main] c.e.Billing - charge failed")
    assert not pattern.match(b"java.lang.IllegalStateException: card expired")
    assert not pattern.match(b"\tat com.example.Billing.charge(Billing.java:42)")
    assert inp.multiline.timeout == 2.0 and inp.max_line_bytes == 256 << 10
    assert inp.render_key("h", "/p") == b"billing"


def test_the_systemd_unit_runs_the_agent_with_a_config():
    import configparser

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(ROOT / "examples" / "logship-agent.service")
    command = unit["Service"]["ExecStart"].split()
    assert command[1:3] == ["agent", "--config"]
    assert unit["Service"]["StateDirectory"] == "logship/agent"
    assert unit["Service"]["Environment"] == "XDG_STATE_HOME=/var/lib"  # default state dir = StateDirectory


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


MINIMAL = '[[inputs]]\npaths = "/var/log/*.log"\ntopic = "t"\n'


def test_defaults_and_units(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("LOGSHIP_BROKERS", "10.0.0.1:9092")
    config = load_config(write(tmp_path, 'linger = "250ms"\nqueue_bytes = "32M"\n' + MINIMAL
                                + 'partial_line_timeout = 1.5\n'))
    assert config.state_dir == tmp_path / "xdg" / "logship" / "agent" == default_state_dir()
    assert config.brokers == "10.0.0.1:9092"
    assert config.linger == 0.25 and config.queue_bytes == 32 << 20
    assert config.inputs[0].paths == ("/var/log/*.log",) and config.inputs[0].partial_line_timeout == 1.5
    assert config.inputs[0].start_position == "beginning" and config.inputs[0].max_line_bytes == 512 << 10
    assert config.inputs[0].encoding == "utf-8" and config.inputs[0].line_terminator == "auto"
    assert parse_duration("2m") == 120 and parse_size("1M") == 1 << 20


@pytest.mark.parametrize("text,message", [
    ("", "no inputs"),
    ("scan_intervall = 1\n" + MINIMAL, "unknown option scan_intervall"),
    (MINIMAL + "topics = 'x'\n", "unknown option topics"),
    ('[[inputs]]\ntopic = "t"\n', "paths is required"),
    ('[[inputs]]\npaths = "x"\n', "topic is required"),
    (MINIMAL + 'start_position = "middle"\n', "start_position"),
    (MINIMAL + 'key = "{hostname}"\n', "variables: {host}, {path}, {filename}"),
    (MINIMAL + 'multiline = { start_pattern = "(" }\n', "start_pattern"),
    (MINIMAL + 'multiline = { timeout = 1 }\n', "start_pattern is required"),
    (MINIMAL + 'fields = { offset = "x" }\n', "header the agent sets itself"),
    (MINIMAL + 'max_line_bytes = "2M"\n', "max_line_bytes"),
    (MINIMAL + 'encoding = "latin-1"\n', r"inputs\[0\]\.encoding: 'latin-1' is not a supported encoding; "
                                         r"expected one of utf-8, utf-16le, utf-16be, utf-16"),
    (MINIMAL + 'encoding = 16\n', "encoding: 16 is not a supported encoding"),
    (MINIMAL + 'line_terminator = "crlf"\n', r"inputs\[0\]\.line_terminator: expected \"auto\" .* or \"lf\""),
    (MINIMAL + 'line_terminator = true\n', "line_terminator: expected"),
    (MINIMAL + 'line_terminators = "lf"\n', "unknown option line_terminators"),
    ('linger = "soon"\n' + MINIMAL, "not a duration"),
    ('brokers = "a:b:c"\n' + MINIMAL, "brokers"),
    ('compression = "brotli"\n' + MINIMAL, "compression"),
    ("[[inputs\n", "invalid TOML"),
])
def test_mistakes_are_reported_with_where_and_what(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("written,encoding", [("UTF-16LE", "utf-16le"), ("utf_16_be", "utf-16be"), ("utf16", "utf-16"),
                                              ("utf-16le-bom", "utf-16le"), ("plain", "utf-8"), ("UTF8", "utf-8")])
def test_encoding_names_are_read_as_people_write_them(tmp_path, written, encoding):
    config = load_config(write(tmp_path, MINIMAL + f'encoding = "{written}"\nline_terminator = "line_feed"\n'))
    assert config.inputs[0].encoding == encoding and config.inputs[0].line_terminator == "lf"


def test_a_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_key_templates_use_host_path_filename_and_fields():
    inp = make_input({"paths": ["/x"], "topic": "t", "key": "{host}/{filename}/{app}", "fields": {"app": "web"}})
    assert inp.render_key("h1", "/var/log/a.log") == b"h1/a.log/web"
    assert make_input({"paths": ["/x"], "topic": "t"}).render_key("h", "/p") is None


def test_cli_usage_errors_exit_2(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["agent"], standalone_mode=False, catch_exceptions=True)
    assert "give PATH_GLOB" in str(result.exception)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for args, message in ((["agent", "/x/*.log"], "--topic"),
                          (["agent", "--config", str(write(tmp_path, "bogus = 1\n" + MINIMAL))], "unknown option bogus"),
                          (["agent", "/x/*.log", "-t", "t", "--encoding", "latin-9"], "encoding")):
        out = subprocess.run([sys.executable, "-m", "logship", *args], capture_output=True, text=True, env=env,
                             timeout=30)
        assert out.returncode == 2 and message in out.stderr, out.stderr


def test_status_of_an_empty_state_directory(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-m", "logship", "agent", "--status", "--state-dir", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0 and "no checkpoints yet" in out.stderr and "no agent is running" in out.stderr
    assert out.stdout == ""


def test_quick_form_builds_one_input():
    config = AgentConfig(inputs=(make_input({"paths": ["a/*.log"], "topic": "t", "fields": {"env": "prod"}}),))
    assert config.inputs[0].fields == (("env", "prod"),)
