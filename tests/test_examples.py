"""Every script in examples/ runs and does what its comments say."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def run_example(name: str) -> str:
    env = dict(os.environ, LOGSHIP=str(ROOT / "bin" / "logship"))
    return subprocess.run([str(ROOT / "examples" / name)], capture_output=True, text=True, check=True,
                          env=env, timeout=60).stdout


def test_every_example_has_a_test():
    tested = {"kcat-roundtrip.sh"}
    assert {p.name for p in (ROOT / "examples").iterdir()} == tested


def test_kcat_roundtrip():
    out = run_example("kcat-roundtrip.sh").splitlines()
    assert out[:5] == ["1", "2", "3", "4", "5"]
    assert out[5].startswith("baseOffset: 0 lastOffset: 4 count: 5")
    assert [line.rsplit(" ", 1)[1] for line in out[6:]] == ["1", "2", "3", "4", "5"]
