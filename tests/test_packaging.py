"""setup.cfg's dependency ranges are ones CI tests: each has a lower and an upper bound (or a pin),
so that a dependency's new release line cannot reach a fresh install before CI has run with it."""

import configparser
import re
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
    assert "python3 -m venv" in ci and "bin/test" in ci
    assert "--resolution lowest-direct" in ci
