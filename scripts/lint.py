"""Run slither over contracts/ and fail on any finding not accepted in slither.triage.json.

Usage (from the checkout, after `make install`, `make .venv-lint/.dtnsess-installed` and `npm ci`,
or simply `make lint`)::

    .venv/bin/python scripts/lint.py          # what `make lint` runs
    .venv/bin/python scripts/lint.py --all    # also list the accepted findings

slither lives in its own virtualenv, .venv-lint (slither-analyzer requires web3<8; see
requirements-lint.in); --slither names another binary.

Slither compiles through crytic-compile with the same pinned solc dtnsess_cli.compile uses (a native
0.8.37 if installed, else solcjs behind the node wrapper that answers --version and --standard-json),
so nothing is downloaded. The targets are the directories in TARGETS with --solc-standard-json:
that compiles contracts/*.sol and contracts/keepers/*.sol (not contracts/dev, the local test router,
token and forwarder) and what they import; OpenZeppelin is read from node_modules through the
remapping and its findings are filtered out.

Triage: slither's own --triage-database keys findings by a hash that includes source line numbers,
so every edit of the contract would invalidate it. slither.triage.json instead accepts findings by
detector ("check") and where they are ("where": an fnmatch pattern over Contract.function or
Contract.function.variable), each with the reason it is accepted. A finding no entry matches fails
the run; an entry that matches nothing is reported as stale (not an error: fixing a finding must not
break CI).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dtnsess_cli import compile as comp  # noqa: E402

TRIAGE = ROOT / "slither.triage.json"
# Each directory's *.sol (not its subdirectories) and their imports: one slither run per directory.
TARGETS = ("contracts", "contracts/keepers")
OZ_REMAP = f"{comp.OZ_PREFIX}={comp.OZ_TARGET}"


def where(element: dict) -> str:
    """A line-independent name for a finding's first element: Contract[.function][.variable]."""
    names = []
    node = element
    while node:
        if node.get("type") in ("contract", "function", "variable", "event", "struct", "enum", "modifier"):
            names.append(node["name"])
        node = (node.get("type_specific_fields") or {}).get("parent")
    return ".".join(reversed(names))


def run_slither(slither: str) -> list[dict]:
    node_modules = comp.find_node_modules(ROOT)
    if node_modules is None:
        raise SystemExit("lint: node_modules not found: run `npm ci`")
    compiler = comp.find_compiler(node_modules)
    return [f for target in TARGETS for f in _run_one(slither, target, compiler)]


def _run_one(slither: str, target: str, compiler: comp.Compiler) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "slither.json"
        cmd = [
            slither, target,
            "--solc-standard-json",
            "--solc", compiler.binary,
            "--solc-remaps", OZ_REMAP,
            "--filter-paths", "node_modules",
            # No reading or writing of slither.db.json: the triage is ours (see above).
            "--triage-database", str(Path(tmp) / "unused.db.json"),
            "--json", str(out),
            "--disable-color",
        ]
        env = dict(os.environ, SOLC_VERSION=comp.SOLC_VERSION)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=600)
        if not out.is_file():
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"lint: slither produced no report (exit {proc.returncode})")
        report = json.loads(out.read_text())
    if not report.get("success"):
        raise SystemExit(f"lint: slither failed on {target}: {report.get('error')}")
    return report.get("results", {}).get("detectors", [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="also print accepted findings")
    parser.add_argument("--slither", default=str(ROOT / ".venv-lint" / "bin" / "slither"))
    args = parser.parse_args(argv)

    triage = json.loads(TRIAGE.read_text())
    for entry in triage:
        if not entry.get("reason"):
            raise SystemExit(f"lint: {TRIAGE.name}: entry without a reason: {entry}")
    used = [0] * len(triage)
    findings = run_slither(args.slither)
    open_ = []
    for f in sorted(findings, key=lambda f: (f["check"], where(f["elements"][0]) if f["elements"] else "")):
        at = where(f["elements"][0]) if f["elements"] else ""
        match = next((i for i, e in enumerate(triage)
                      if e["check"] == f["check"] and fnmatch.fnmatchcase(at, e.get("where", "*"))), None)
        if match is None:
            open_.append(f)
            continue
        used[match] += 1
        if args.all:
            print(f"accepted  {f['check']:<22} {at}  ({triage[match]['reason'][:60]}...)")

    for f in open_:
        print(f"\nOPEN  {f['check']} ({f['impact']}, {f['confidence']}) at {where(f['elements'][0]) if f['elements'] else '-'}")
        print(f["description"].rstrip())
    for entry, n in zip(triage, used):
        if n == 0:
            print(f"note: stale triage entry (matches nothing): {entry['check']} {entry.get('where', '*')}")
    print(f"slither: {len(findings)} findings, {len(findings) - len(open_)} accepted in {TRIAGE.name}, "
          f"{len(open_)} open")
    return 1 if open_ else 0


if __name__ == "__main__":
    sys.exit(main())
