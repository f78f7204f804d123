"""The import rules of DESIGN.md: layers import downwards only; and what start-up loads."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "logship"

# layer -> layers it must never import
FORBIDDEN = {
    "storage": {"protocol", "client", "broker", "agent", "cli"},
    "protocol": {"storage", "client", "broker", "agent", "cli"},
    "client": {"broker", "storage", "agent", "cli"},
    "broker": {"client", "agent", "cli"},
    "agent": {"broker", "storage", "cli"},
    "records": {"storage", "protocol", "client", "broker", "agent", "cli"},
    "compression": {"storage", "protocol", "client", "broker", "agent", "cli", "records"},
    "crc": {"storage", "protocol", "client", "broker", "agent", "cli", "records", "compression"},
    "errors": {"storage", "protocol", "client", "broker", "agent", "cli", "records"},
    "lockfile": {"storage", "protocol", "client", "broker", "agent", "cli", "records"},
}


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_layers(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    rel_parts = path.relative_to(PACKAGE).parts
    layers = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel_parts[: len(rel_parts) - node.level])
                target = base + (node.module.split(".") if node.module else [])
                if not target and node.module is None:
                    target = [alias.name for alias in node.names]
                    layers.update(t.split(".")[0] for t in target)
                    continue
                if target:
                    layers.add(target[0])
            elif node.module and node.module.startswith("logship."):
                layers.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("logship."):
                    layers.add(alias.name.split(".")[1])
    return layers


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layer_imports_point_down(path):
    layer = _layer(path)
    bad = _imported_layers(path) & FORBIDDEN.get(layer, set())
    assert not bad, f"{path.relative_to(PACKAGE)} ({layer}) imports {sorted(bad)}"


def test_paramiko_is_imported_in_one_module_only():
    users = [p for p in PACKAGE.rglob("*.py") if "import paramiko" in p.read_text()]
    assert len(users) <= 1, users


def test_start_up_stays_lean():
    """Loading the producer (what `logship produce` needs) loads neither the consumer side of
    the client nor importlib.metadata (which the crc32c package's __init__ would)."""
    code = ("import sys, logship.client.producer, logship.records; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('logship.client.', 'importlib.metadata')))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env=dict(os.environ, PYTHONPATH=str(PACKAGE.parent))).stdout.split()
    assert "importlib.metadata" not in loaded
    assert not {"logship.client.consumer", "logship.client.admin", "logship.client.group_consumer"} & set(loaded)
    from crc32c import crc32c as package_crc32c

    from logship.crc import crc32c

    for data in (b"", b"123456789", os.urandom(10_000)):
        assert crc32c(data) == package_crc32c(data)
    assert crc32c(b"56789", crc32c(b"1234")) == crc32c(b"123456789") == 0xE3069283
