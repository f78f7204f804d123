"""`cluster up --install`: this logship, as a wheel, installed in a virtualenv on each host.

`local_wheel(directory)` builds the wheel of the running logship (`pip wheel --no-deps` of
its source tree) into `directory` (`cluster up --install` does it at most once, and only if
a host needs it; --wheel FILE gives one instead). `install(host, data_dir, wheel)` makes DATA_DIR/venv on the host (`python3 -m venv`), unless its logship
already has this version: it copies the wheel to DATA_DIR/wheels/ over SFTP and runs the
venv's pip on it, dependencies coming from the host's configured package index. It returns
the command to use there: DATA_DIR/venv/bin/logship.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable

from .. import __version__
from ..errors import ConfigError, SshError
from . import remote
from .ssh import SshHost

__all__ = ["local_wheel", "install"]

#: Seconds for creating the virtualenv and pip installing into it on a host.
INSTALL_S = 600.0


def local_wheel(directory: Path) -> Path:
    """Build this logship's wheel into `directory` from its source tree; ConfigError if there
    is no source tree (then pass a wheel with --wheel)."""
    source = Path(__file__).resolve().parents[2]
    if not (source / "setup.cfg").exists() and not (source / "pyproject.toml").exists():
        raise ConfigError(f"logship {__version__} is not installed from a source tree, so no wheel can be "
                          f"built here; give one with --wheel FILE")
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
               "--wheel-dir", str(directory), str(source)]
    if importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel"):
        command.insert(4, "--no-build-isolation")  # build without fetching the build dependencies
    done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_S)
    wheels = sorted(directory.glob(f"logship-{__version__}-*.whl"))
    if done.returncode != 0 or not wheels:
        lines = done.stderr.strip().splitlines()
        reason = next((line.strip() for line in lines if line.strip().lower().startswith("error")), None)
        raise ConfigError(f"cannot build logship's wheel from {source}: "
                          f"{reason or (lines[-1].strip() if lines else 'no wheel was made')}")
    return wheels[0]


def install(host: SshHost, data_dir: str, wheel: Callable[[], Path], say=lambda line: None) -> list[str]:
    """Make sure DATA_DIR/venv on `host` runs this logship; return its command as argv.
    `wheel()` gives the wheel, called only when the host needs it (building it is slow)."""
    venv = os.path.join(data_dir, "venv")
    logship = [os.path.join(venv, "bin", "logship")]
    found = host.run(remote.version_command(logship), timeout=30)
    if found.status == 0 and remote.parse_version(found.stdout) == __version__:
        say(f"logship {__version__} already installed in {venv}")
        return logship
    wheel = wheel()
    target = os.path.join(data_dir, "wheels", wheel.name)
    made = host.run(shlex.join(["mkdir", "-p", os.path.dirname(target)]), timeout=30)
    if made.status != 0:
        raise SshError(f"{host.where}: cannot create {os.path.dirname(target)}: {made.output}")
    say(f"copying {wheel.name}")
    host.put(str(wheel), target)
    say(f"installing it into {venv}")
    pip = os.path.join(venv, "bin", "pip")
    script = (f"{shlex.join(['python3', '-m', 'venv', venv])} && "
              f"{shlex.join([pip, 'install', '--quiet', '--disable-pip-version-check', target])}")
    done = host.run(script, timeout=INSTALL_S)
    if done.status != 0:
        last = (done.output.splitlines() or [f"exit status {done.status}"])[-1]
        raise SshError(f"{host.where}: cannot install {wheel.name} into {venv}: {last}")
    return logship
