"""What the package declares (issue 10): every third-party module the code imports is declared in
pyproject.toml (src/ by the package itself, its devnet and compiler by their extras, tests/
bench/ scripts/ at least by the dev extra), and
requirements.lock pins a version inside every declared range. The lock is what `make` installs;
`make lock` regenerates it."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions, requires
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"


def _declared(extra: str | None, any_platform: bool = False) -> dict[str, Requirement]:
    """The package's requirements (installed metadata = pyproject.toml) on this platform, or
    on any (``filelock`` is Windows' only), optionally with an extra (and the extras it
    names: ``dev`` includes ``dtnsess[devnet,compile]``)."""
    env = dict(default_environment(), extra=extra or "")
    platforms = ("linux", "darwin", "win32") if any_platform else (env["sys_platform"],)
    out = {}
    for line in requires("dtnsess") or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate(dict(env, sys_platform=p))
                                     for p in platforms):
            if canonicalize_name(req.name) == "dtnsess":
                for sub in req.extras:
                    out.update(_declared(sub, any_platform))
            else:
                out[canonicalize_name(req.name)] = req
    return out


def _local_modules() -> set[str]:
    names = {"dtnsess_cli", "tests", "fixtures"}
    for top in ("tests", "bench", "scripts"):
        names |= {p.stem for p in (ROOT / top).glob("*.py")}
    return names


# the parts of src/ that a plain install leaves out, and the extra that brings what they import
EXTRA_PARTS = {"src/dtnsess_cli/devnet": "devnet", "src/dtnsess_cli/compile.py": "compile"}


def _part(path: Path) -> str | None:
    rel = path.relative_to(ROOT).as_posix()
    return next((x for p, x in EXTRA_PARTS.items() if rel == p or rel.startswith(p + "/")), None)


def _imports(top: str, extra: str | None = None) -> dict[str, str]:
    """First-party-free top-level module names imported anywhere under ROOT/top (lazy ones too),
    each with one place it is imported; for src/, only the files of the part ``extra`` needs
    (None: the command path, what a plain install must carry)."""
    local, out = _local_modules(), {}
    for path in sorted((ROOT / top).rglob("*.py")):
        if top == "src" and _part(path) != extra:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                mod = name.split(".")[0]
                if mod not in sys.stdlib_module_names and mod not in local and mod != "__future__":
                    out.setdefault(mod, f"{path.relative_to(ROOT)}:{node.lineno}")
    return out


def _undeclared(top: str, declared: dict[str, Requirement], extra: str | None = None) -> list[str]:
    dists = packages_distributions()
    missing = []
    for mod, where in sorted(_imports(top, extra).items()):
        # a module of another platform's requirement is not installed here: its own name
        names = {canonicalize_name(d) for d in dists.get(mod, [])} or {canonicalize_name(mod)}
        if not names & set(declared):
            missing.append(f"{mod} ({where}; distribution {sorted(names) or 'not installed'})")
    return missing


def test_src_imports_are_runtime_dependencies():
    missing = _undeclared("src", _declared(None, any_platform=True))
    assert not missing, "imported by src/ but not in [project] dependencies: " + ", ".join(missing)


def test_devnet_and_compiler_imports_are_their_extras():
    for extra in set(EXTRA_PARTS.values()):
        missing = _undeclared("src", _declared(extra), extra)
        assert not missing, f"imported by the {extra} part of src/ but not in dependencies or " \
                            f"the {extra} extra: " + ", ".join(missing)


def test_the_command_path_needs_no_extra():
    """A plain install is the core set: no web3 & co. (a backend brings its own), no compiler."""
    core = set(_declared(None))
    assert not core & {"web3", "eth-abi", "eth-account", "eth-utils", "requests", "py-solc-x"}, core
    assert len(core) <= 8, core


def test_test_and_tool_imports_are_declared():
    declared = _declared("dev")
    missing = [m for top in ("tests", "bench", "scripts") for m in _undeclared(top, declared)]
    assert not missing, "imported but not in dependencies or the dev extra: " + ", ".join(missing)


def _pins() -> dict[str, str]:
    """name -> version from requirements.lock, for this interpreter (the lock is universal:
    a package may appear once per marker)."""
    env, pins = default_environment(), {}
    for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)(?:\s*;\s*([^\\\n]+))?", LOCK.read_text(), re.M):
        name, version, marker = m.groups()
        if marker is None or Requirement(f"x; {marker.strip()}").marker.evaluate(env):
            pins[canonicalize_name(name)] = version
    return pins


def test_lock_pins_a_version_inside_every_declared_range():
    pins = _pins()
    assert pins.get("web3"), "requirements.lock pins no web3"
    bad = []
    for name, req in _declared("dev").items():
        if name not in pins:
            bad.append(f"{req}: not in the lock")
        elif not req.specifier.contains(pins[name], prereleases=True):
            bad.append(f"{req}: the lock has {pins[name]}")
    assert not bad, "requirements.lock is stale (run `make lock`): " + "; ".join(bad)
