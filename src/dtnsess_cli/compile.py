"""Compile ``contracts/`` into ``abi/`` (one JSON artifact per contract).

Usage::

    python -m dtnsess_cli.compile [--check] [--contracts DIR] [--out DIR]

The compiler is py-solc-x in standard-JSON mode. It uses a native ``solc`` of
the pinned version when py-solc-x knows one (``~/.solcx``) or one is on PATH;
otherwise the pinned solcjs from ``node_modules/solc`` through a tiny node
wrapper that answers ``--version`` and ``--standard-json`` the way py-solc-x
calls a native binary. Nothing is ever downloaded.

All sources (the project's and the OpenZeppelin files they import, found by
following ``import`` statements) are passed with their content, so the
compiler reads no files and the output does not depend on where the checkout
lives. Project sources are named ``contracts/<path>``; OpenZeppelin sources
``node_modules/@openzeppelin/contracts/<path>`` (the remapping target). The
metadata hash is left out of the bytecode (``bytecodeHash: none``), so the
same sources give byte-identical artifacts.

``--check`` compiles in memory and compares with the artifacts on disk: exit 0
when fresh, 1 naming every stale, missing or extra file.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .record import record

SOLC_VERSION = "0.8.37"
OZ_PREFIX = "@openzeppelin/contracts/"
OZ_TARGET = "node_modules/@openzeppelin/contracts/"
PROJECT_PREFIX = "contracts/"

# NOTE: runs=200 (optimise for calls): the manager keeps its headroom under EIP-170 by design
# (custom errors, views in its lens), not by optimising for size (bench/RESULTS.md, issue 14).
BASE_SETTINGS: dict = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "metadata": {"bytecodeHash": "none"},
    "remappings": [f"{OZ_PREFIX}={OZ_TARGET}"],
}
OUTPUTS = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]
# A contract whose fallback serves another contract's functions at its own address: its artifact's
# ABI lists them too, so a client needs one address and one ABI.
SERVED_BY_FALLBACK = {"AdvancedSessionManager": "AdvancedSessionManagerLens"}


class CompileError(Exception):
    """Raised when sources cannot be found or the compiler reports errors."""


@record(frozen=True)
class Compiler:
    """How to run solc: a path py-solc-x can call and a description."""

    binary: str
    version: str  # e.g. 0.8.37+commit.f401782d (no platform suffix)
    kind: str  # "native" or "solcjs"


# --------------------------------------------------------------------------- paths


def find_repo_root(start: Path | None = None) -> Path:
    """Return the source checkout: the nearest ancestor with contracts/ and pyproject.toml."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "contracts").is_dir():
            return candidate
    module_root = Path(__file__).resolve().parents[2]
    if (module_root / "pyproject.toml").is_file():
        return module_root
    return here


def find_node_modules(*starts: Path) -> Path | None:
    """Return the first ``node_modules`` holding OpenZeppelin, searching upward."""
    for start in starts:
        start = start.resolve()
        for candidate in (start, *start.parents):
            nm = candidate / "node_modules"
            if (nm / "@openzeppelin" / "contracts").is_dir() or (nm / "solc").is_dir():
                return nm
    return None


# ------------------------------------------------------------------------- sources

# Matches a comment or a string literal; comments are dropped, strings kept, so
# an `import` inside a comment is not followed and `//` inside a string survives.
_COMMENT_OR_STRING = re.compile(
    r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S
)
_IMPORT = re.compile(r'\bimport\s+(?:[^;"\']*?\s)?["\']([^"\']+)["\']')


def _strip_comments(text: str) -> str:
    return _COMMENT_OR_STRING.sub(
        lambda m: m.group(0) if m.group(0)[0] in "\"'" else " ", text
    )


def _imports(text: str) -> list[str]:
    return _IMPORT.findall(_strip_comments(text))


def _resolve(importer: str, path: str) -> str:
    """Source unit name of ``path`` imported from unit ``importer`` (solc's rules)."""
    if path.startswith("./") or path.startswith("../"):
        name = posixpath.normpath(posixpath.join(posixpath.dirname(importer), path))
    else:
        name = path
    if name.startswith(OZ_PREFIX):
        name = OZ_TARGET + name[len(OZ_PREFIX):]
    return name


def collect_sources(contracts_dir: Path, node_modules: Path | None) -> tuple[dict, list[str]]:
    """Return ({unit name: {"content": text}}, project unit names).

    Project files come from ``contracts_dir`` (every ``*.sol``, recursively);
    imported files are followed transitively and read from ``contracts_dir``
    or ``node_modules``.
    """
    if not contracts_dir.is_dir():
        raise CompileError(f"contracts directory not found: {contracts_dir}")
    project = sorted(
        PROJECT_PREFIX + p.relative_to(contracts_dir).as_posix()
        for p in contracts_dir.rglob("*.sol")
    )
    if not project:
        raise CompileError(f"no .sol files under {contracts_dir}")

    def read(unit: str) -> str | None:
        if unit.startswith(PROJECT_PREFIX):
            path = contracts_dir / unit[len(PROJECT_PREFIX):]
        elif unit.startswith("node_modules/") and node_modules is not None:
            path = node_modules / unit[len("node_modules/"):]
        else:
            return None
        try:
            return path.read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError):
            return None

    sources: dict[str, dict] = {}
    queue: list[tuple[str, str | None]] = [(unit, None) for unit in project]
    while queue:
        unit, importer = queue.pop()
        if unit in sources:
            continue
        text = read(unit)
        if text is None:
            where = f" (imported by {importer})" if importer else ""
            hint = " ; run `npm ci`" if unit.startswith("node_modules/") else ""
            raise CompileError(f"{unit}: source not found{where}{hint}")
        sources[unit] = {"content": text}
        for imp in _imports(text):
            queue.append((_resolve(unit, imp), unit))
    return dict(sorted(sources.items())), project


def oz_version(node_modules: Path | None) -> str:
    if node_modules is None:
        return "none"
    try:
        pkg = json.loads(
            (node_modules / "@openzeppelin" / "contracts" / "package.json").read_text()
        )
    except (FileNotFoundError, ValueError):
        return "none"
    return str(pkg.get("version", "unknown"))


def sources_hash(sources: dict, project: list[str], oz: str) -> str:
    h = hashlib.sha256()
    for unit in sorted(project):
        h.update(unit.encode() + b"\0" + sources[unit]["content"].encode() + b"\0")
    h.update(b"openzeppelin@" + oz.encode())
    return "sha256:" + h.hexdigest()


# ------------------------------------------------------------------------ compiler

_WRAPPER_JS = """#!/usr/bin/env node
// Generated by dtnsess_cli.compile: makes solcjs look like a native solc to py-solc-x.
// Answers --version and --standard-json (other flags are ignored); stdout carries only the JSON output.
"use strict";
const solc = require(%(solc_dir)s);
const log = console.log;
console.log = (...args) => console.error(...args); // keep stdout clean JSON
const args = process.argv.slice(2);
if (args.includes("--version")) {
  log("solc, the solidity compiler commandline interface");
  log("Version: " + solc.version());
  process.exit(0);
}
if (!args.includes("--standard-json")) {
  console.error("solcjs-wrapper: only --version and --standard-json are supported");
  process.exit(2);
}
// Sources given by "urls" or found by import (slither's crytic-compile passes paths, not content)
// are read relative to the working directory; dtnsess_cli.compile passes content and reads none.
const fs = require("fs");
const path = require("path");
function findImports(p) {
  const full = path.resolve(process.cwd(), p);
  if (path.relative(process.cwd(), full).startsWith("..")) return { error: "outside the working directory: " + p };
  try {
    return { contents: fs.readFileSync(full, "utf8") };
  } catch (e) {
    return { error: "File not found: " + p };
  }
}
const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  const out = solc.compile(Buffer.concat(chunks).toString("utf8"), { import: findImports });
  process.stdout.write(out);
});
"""


def _native_compiler() -> Compiler | None:
    try:
        import solcx
        from packaging.version import Version
    except ImportError:  # pragma: no cover - solcx is a dependency
        return None
    candidates: list[str] = []
    try:
        if Version(SOLC_VERSION) in solcx.get_installed_solc_versions():
            candidates.append(str(solcx.get_executable(SOLC_VERSION)))
    except Exception:  # noqa: BLE001 - a broken ~/.solcx must not stop the solcjs path
        pass
    on_path = shutil.which("solc")
    if on_path and not _is_solc_select_shim(on_path):
        candidates.append(on_path)
    for binary in candidates:
        try:
            version = solcx.wrapper.get_solc_version(binary, with_commit_hash=True)
        except Exception:  # noqa: BLE001 - not a usable solc
            continue
        if version.base_version == SOLC_VERSION:
            return Compiler(binary, _plain_version(str(version)), "native")
    return None


def _is_solc_select_shim(path: str) -> bool:
    """True for solc-select's `solc` script (installed with slither): run without an installed
    version it tries to download one, which hangs offline."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"#!") and b"solc_select" in head


def _plain_version(text: str) -> str:
    m = re.search(r"(\d+\.\d+\.\d+)(?:[^+\s]*)\+(commit\.[0-9a-f]+)", text)
    return f"{m.group(1)}+{m.group(2)}" if m else text


def _solcjs_compiler(node_modules: Path | None) -> Compiler | None:
    if node_modules is None:
        return None
    solc_dir = node_modules / "solc"
    try:
        pkg = json.loads((solc_dir / "package.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    if pkg.get("version") != SOLC_VERSION:
        raise CompileError(
            f"{solc_dir} is solc {pkg.get('version')}, expected {SOLC_VERSION}; run `npm ci`"
        )
    node = shutil.which("node")
    if node is None:
        raise CompileError("node not found on PATH (needed to run solcjs)")
    cache = node_modules / ".cache" / "dtnsess"
    wrapper = cache / "solcjs-wrapper"
    text = _WRAPPER_JS % {"solc_dir": json.dumps(str(solc_dir.resolve()))}
    if not wrapper.is_file() or wrapper.read_text() != text:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = wrapper.with_name(f"{wrapper.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        os.replace(tmp, wrapper)
    out = subprocess.run(
        [str(wrapper), "--version"], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise CompileError(f"solcjs wrapper failed: {out.stderr.strip()}")
    return Compiler(str(wrapper), _plain_version(out.stdout), "solcjs")


def find_compiler(node_modules: Path | None) -> Compiler:
    """Return a native solc of the pinned version, else the pinned solcjs."""
    if os.environ.get("DTNSESS_SOLC") == "solcjs":
        found = _solcjs_compiler(node_modules)
    else:
        found = _native_compiler() or _solcjs_compiler(node_modules)
    if found is None:
        raise CompileError(
            f"no solc {SOLC_VERSION}: install it with py-solc-x, or run `npm ci` "
            "for the pinned solcjs in node_modules/"
        )
    return found


def _format_error(err: dict) -> str:
    loc = err.get("sourceLocation") or {}
    msg = f"{err.get('severity', 'error')}: {err.get('type', 'Error')}: {err.get('message', '')}"
    unit = loc.get("file")
    if not unit:
        return msg
    line = ""
    text = _SOURCES_FOR_ERRORS.get(unit)
    if text is not None and isinstance(loc.get("start"), int) and loc["start"] >= 0:
        lineno = text.encode()[: loc["start"]].count(b"\n") + 1
        line = f":{lineno}"
    return f"{unit}{line}: {msg}"


_SOURCES_FOR_ERRORS: dict[str, str] = {}


def _run_solc(compiler: Compiler, input_json: dict) -> dict:
    import solcx
    from solcx.exceptions import SolcError

    try:
        return solcx.compile_standard(input_json, solc_binary=compiler.binary)
    except SolcError as exc:
        if exc.error_dict:
            errors = [e for e in exc.error_dict if e.get("severity") == "error"]
            raise CompileError("\n".join(_format_error(e) for e in errors)) from None
        detail = (exc.stderr_data or exc.message or "").strip()
        raise CompileError(f"solc failed ({compiler.binary}): {detail}") from None


# -------------------------------------------------------------------------- build


def build(contracts_dir: Path, node_modules: Path | None = None) -> dict[str, bytes]:
    """Compile and return ``{file name: file bytes}`` for every project contract."""
    contracts_dir = contracts_dir.resolve()
    if node_modules is None:
        node_modules = find_node_modules(contracts_dir, Path.cwd(), find_repo_root())
    sources, project = collect_sources(contracts_dir, node_modules)
    compiler = find_compiler(node_modules)
    _SOURCES_FOR_ERRORS.clear()
    _SOURCES_FOR_ERRORS.update({k: v["content"] for k, v in sources.items()})

    settings = copy.deepcopy(BASE_SETTINGS)
    input_json = {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            **settings,
            "outputSelection": {unit: {"*": OUTPUTS} for unit in project},
        },
    }
    try:
        output = _run_solc(compiler, input_json)
    except CompileError as exc:
        # NOTE: viaIR changes codegen; use it only when the legacy pipeline
        # cannot compile the contracts at all.
        if "Stack too deep" not in str(exc):
            raise
        settings["viaIR"] = True
        input_json["settings"]["viaIR"] = True
        output = _run_solc(compiler, input_json)

    digest = sources_hash(sources, project, oz_version(node_modules))
    abis = {name: data.get("abi", []) for unit in project
            for name, data in output.get("contracts", {}).get(unit, {}).items()}
    files: dict[str, bytes] = {}
    origin: dict[str, str] = {}
    for unit in project:
        for name, data in sorted(output.get("contracts", {}).get(unit, {}).items()):
            if name in origin:
                raise CompileError(
                    f"contract {name} is defined in both {origin[name]} and {unit}; "
                    "artifact names must be unique"
                )
            origin[name] = unit
            artifact = {
                "contractName": name,
                "sourceName": unit,
                "abi": _served_abi(name, abis),
                "bytecode": "0x" + data["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
                "compiler": {"version": compiler.version, "settings": settings},
                "sourcesHash": digest,
            }
            text = json.dumps(artifact, indent=2, sort_keys=True) + "\n"
            files[f"{name}.json"] = text.encode()
    return files


def _served_abi(name: str, abis: dict[str, list]) -> list:
    """The ABI of ``name`` plus the functions its fallback serves (SERVED_BY_FALLBACK)."""
    own = list(abis.get(name, []))
    served = SERVED_BY_FALLBACK.get(name)
    if served is None:
        return own
    # the command path's codec, not eth-utils (that is the devnet extra's)
    from .chain.abi import Function

    selectors = {Function(e).selector for e in own if e.get("type") == "function"}
    for entry in abis.get(served, []):
        if entry.get("type") != "function":
            continue
        sel = Function(entry).selector
        if sel in selectors:
            continue  # the contract's own function (a shared getter) answers first
        if entry.get("stateMutability") not in ("view", "pure"):
            raise CompileError(f"{served}.{entry['name']} is not a view: a fallback serves only views")
        own.append(entry)
    return own


def write(files: dict[str, bytes], out_dir: Path) -> list[str]:
    """Write artifacts, remove ones no longer produced; return the changed names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, data in files.items():
        path = out_dir / name
        if path.is_file() and path.read_bytes() == data:
            continue
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        changed.append(name)
    for path in out_dir.glob("*.json"):
        if path.name not in files:
            path.unlink()
            changed.append(path.name)
    return sorted(changed)


def check(files: dict[str, bytes], out_dir: Path) -> list[str]:
    """Return one line per artifact that is stale, missing or no longer produced."""
    problems = []
    for name, data in sorted(files.items()):
        path = out_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_bytes() != data:
            problems.append(f"{path}: stale")
    if out_dir.is_dir():
        for path in sorted(out_dir.glob("*.json")):
            if path.name not in files:
                problems.append(f"{path}: no longer produced by any contract")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dtnsess_cli.compile",
        description="Compile contracts/ into abi/ (one JSON artifact per contract).",
    )
    parser.add_argument("--check", action="store_true", help="fail if abi/ is stale")
    parser.add_argument("--contracts", type=Path, help="sources (default: <repo>/contracts)")
    parser.add_argument("--out", type=Path, help="artifacts (default: <repo>/abi)")
    args = parser.parse_args(argv)
    missing = [m for m in ("solcx", "packaging") if importlib.util.find_spec(m) is None]
    if missing:  # a plain install has no compiler: it is a contributor's step
        print(f"compile: needs the compile extra ({', '.join(missing)} not installed): "
              f"pip install 'dtnsess[compile]'", file=sys.stderr)
        return 1

    root = find_repo_root()
    contracts_dir = args.contracts or root / "contracts"
    out_dir = args.out or root / "abi"
    try:
        files = build(contracts_dir)
    except CompileError as exc:
        print(f"compile: {exc}" if "\n" not in str(exc) else str(exc), file=sys.stderr)
        return 1

    if args.check:
        problems = check(files, out_dir)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(
                "abi/ is out of date: run `python -m dtnsess_cli.compile` (or `make abi`)",
                file=sys.stderr,
            )
            return 1
        print(f"{out_dir}: {len(files)} artifacts up to date")
        return 0

    changed = write(files, out_dir)
    print(f"{out_dir}: {len(files)} artifacts, {len(changed)} changed")
    for name in changed:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
