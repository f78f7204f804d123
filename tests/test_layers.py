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
    "agent": {"broker", "storage", "cli", "workers"},
    "workers": {"broker", "storage", "agent", "cli"},
    "broker_process": {"storage", "protocol", "client", "broker", "agent", "cli", "workers", "records"},
    "records": {"storage", "protocol", "client", "broker", "agent", "cli"},
    "compression": {"storage", "protocol", "client", "broker", "agent", "cli", "records"},
    "crc": {"storage", "protocol", "client", "broker", "agent", "cli", "records", "compression"},
    "errors": {"storage", "protocol", "client", "broker", "agent", "cli", "records"},
    "topic_names": {"storage", "protocol", "client", "broker", "agent", "cli", "records", "workers"},
    "lockfile": {"storage", "protocol", "client", "broker", "agent", "cli", "records"},
    "cluster": {"storage", "broker", "agent", "cli", "workers"},
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


def _imports_paramiko(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "paramiko" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "paramiko":
            return True
    return False


def test_paramiko_is_imported_in_one_module_only():
    """paramiko lives in logship/cluster/ssh.py; nothing else imports it (DESIGN.md, cluster/)."""
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if _imports_paramiko(p))
    assert users == ["cluster/ssh.py"], users


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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """logship modules that `path` imports when it is loaded: imports at module level, outside
    `if TYPE_CHECKING:` blocks (imports inside functions run later and cannot form a load cycle,
    but they are counted too, so that a cycle is not merely hidden in a function)."""
    tree = ast.parse(path.read_text())
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = set()

    def visit(node):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in modules and name != own}


def test_no_import_cycles_between_modules():
    """Imports point one way inside every package too (DESIGN.md: handlers do not import the
    broker that dispatches to them). A package's __init__ importing its own modules is allowed."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: {m for m in _runtime_imports(path, set(paths)) if not name.startswith(m + ".")}
             for name, path in paths.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(name):
        state[name] = 1
        stack.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(target):] + [target]))
            if target not in state:
                walk(target)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)
