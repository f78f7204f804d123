"""setup.cfg's dependency ranges are ones CI tests: each has a lower and an upper bound (or a pin),
so that a dependency's new release line cannot reach a fresh install before CI has run with it."""

import configparser
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _requirements():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    for section, key in (("options", "install_requires"), ("options.extras_require", "test")):
        yield from (line.strip() for line in config[section][key].splitlines() if line.strip())


def test_every_dependency_is_bounded_on_both_sides():
    for requirement in _requirements():
        if "==" in requirement:
            continue
        assert re.search(r">=[\d.]+", requirement), f"{requirement}: no lower bound"
        assert re.search(r"<[\d.]+", requirement), f"{requirement}: no upper bound (a new release would go untested)"


def test_ci_tests_the_newest_and_the_oldest_allowed_versions():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bin/make-venv" in ci and "bin/test" in ci
    assert "--resolution lowest-direct" in ci
    # the oldest versions with wheels: an sdist of an old release fails to build on a fresh machine
    assert "--only-binary :all: --no-binary logship" in ci and "tested with:" in ci


def test_bin_test_and_ci_make_their_virtual_environments_with_bin_make_venv():
    for script in ("bin/test", ".ci/run"):
        text = (ROOT / script).read_text()
        assert "bin/make-venv" in text and "python3 -m venv" not in text, script
    make_venv = (ROOT / "bin" / "make-venv").read_text()
    assert "import ensurepip" in make_venv and "python3-venv" in make_venv and '"$dir/bin/pip"' in make_venv


def test_a_virtual_environment_left_without_pip_is_made_again(tmp_path):
    broken = tmp_path / "venv"
    (broken / "bin").mkdir(parents=True)
    (broken / "bin" / "python").symlink_to(sys.executable)  # what a failed `python3 -m venv` leaves
    subprocess.run([ROOT / "bin" / "make-venv", broken], check=True, timeout=120)
    assert (broken / "bin" / "pip").exists()
    pip = subprocess.run([broken / "bin" / "python", "-m", "pip", "--version"], capture_output=True, timeout=60)
    assert pip.returncode == 0, pip.stderr
