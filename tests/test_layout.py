"""The package's shape: imports point down the data path (cli -> manager/client -> chain), never
back up; the devnet tooling uses the layers a user does, never the command line; no module of
dtnsess_cli imports itself back through another (an import cycle).

Imports are read with ast from the source, those inside functions included: a lazy import is
still a dependency (the old cli <-> devnet cycle was one).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dtnsess_cli

PKG = Path(dtnsess_cli.__file__).parent

# What each part may not import. "manager" (the session manager as Python) is also reached as
# the flat `client` module until that split lands.
FORBIDDEN = {
    "chain": {"cli", "devnet", "manager", "client"},
    "manager": {"cli", "devnet"},
    "client": {"cli", "devnet"},
    "devnet": {"cli"},
    # the public Python API: the manager for programs, never the command line or the devnet
    "api": {"cli", "devnet"},
}
# NOTE: the shared leaf modules (config, errors, units, render, ...) sit under every layer.
LEAVES_FORBIDDEN = {"cli", "devnet", "manager", "client", "api"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (PKG / rel).with_suffix(".py").is_file() or (PKG / rel / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """The dtnsess_cli modules ``path`` imports (anywhere in it)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import mod` imports a module; `from mod import name` only mod
            targets = [f"{mod}.{a.name}" if _is_module(f"{mod}.{a.name}") else mod
                       for a in node.names]
        else:
            continue
        for t in targets:
            while t.startswith("dtnsess_cli") and not _is_module(t):
                t = t.rpartition(".")[0]
            # importing a.b.c runs a.b's __init__ first: unless it is one of ours, that is
            # an import too (cli/__init__.py imports every command module)
            while t.startswith("dtnsess_cli.") and t != name and not name.startswith(t + "."):
                out.add(t)
                t = t.rpartition(".")[0]
    return out


GRAPH = {_module_name(p): _imports(p) for p in sorted(PKG.rglob("*.py"))}


def _part(module: str) -> str:
    """The subpackage (cli, chain, devnet, manager) or top-level module a module belongs to."""
    return module.split(".")[1] if "." in module else ""


def test_the_graph_sees_the_known_edges():
    # guards the parser: if it read nothing, every other test here would pass vacuously
    assert "dtnsess_cli.cli.root" in GRAPH["dtnsess_cli.cli.sessions"]
    assert "dtnsess_cli.devnet.stack" in GRAPH["dtnsess_cli.cli.devnet"]  # a lazy import
    assert "dtnsess_cli.devnet.localdtn" in GRAPH["dtnsess_cli.devnet.responder"]
    assert "dtnsess_cli.chain.abi" in GRAPH["dtnsess_cli.chain.contract"]


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_imports_point_down_the_data_path(part):
    bad = sorted(f"{m} imports {t}" for m, deps in GRAPH.items() if _part(m) == part
                 for t in deps if _part(t) in FORBIDDEN[part])
    assert not bad, "\n".join(bad)


def test_shared_modules_import_no_layer():
    parts = {_part(m) for m in GRAPH if m.count(".") >= 2}  # the subpackages
    bad = sorted(f"{m} imports {t}" for m, deps in GRAPH.items()
                 if m.count(".") == 1 and _part(m) not in parts
                 for t in deps if _part(t) in LEAVES_FORBIDDEN)
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_command_line():
    bad = sorted(f"{m} imports {t}" for m, deps in GRAPH.items() if _part(m) != "cli"
                 for t in deps if _part(t) == "cli")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        if m in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
        if m in done:
            return
        for t in sorted(GRAPH.get(m, ())):
            visit(t, path + [m])
        done.add(m)

    for m in sorted(GRAPH):
        visit(m, [])
