"""What `make lint` relies on: the solcjs wrapper reads path-only sources, solc-select's shim is
never taken for a native solc, and findings are keyed without line numbers."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from dtnsess_cli import compile as comp

ROOT = Path(__file__).resolve().parents[1]


def _lint_module():
    spec = importlib.util.spec_from_file_location("dtnsess_lint", ROOT / "scripts" / "lint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_solc_select_shim_is_not_a_native_solc(tmp_path):
    shim = tmp_path / "solc"
    shim.write_text("#!/usr/bin/python3\nimport re\nimport sys\nfrom solc_select.__main__ import solc\n")
    binary = tmp_path / "solc-native"
    binary.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 64)
    assert comp._is_solc_select_shim(str(shim)) is True
    assert comp._is_solc_select_shim(str(binary)) is False
    assert comp._is_solc_select_shim(str(tmp_path / "missing")) is False


@pytest.mark.slow
def test_solcjs_wrapper_reads_sources_given_by_path(tmp_path):
    """crytic-compile passes {"urls": [path]} and relies on the compiler reading imports from disk."""
    compiler = comp._solcjs_compiler(comp.find_node_modules(ROOT))
    if compiler is None:
        pytest.skip("no solcjs in node_modules (run `npm ci`)")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "L.sol").write_text("// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\n"
                                            "library L { function one() internal pure returns (uint256) { return 1; } }\n")
    (tmp_path / "A.sol").write_text('// SPDX-License-Identifier: MIT\npragma solidity ^0.8.0;\nimport "./lib/L.sol";\n'
                                    "contract A { function f() external pure returns (uint256) { return L.one(); } }\n")
    request = {"language": "Solidity", "sources": {"A.sol": {"urls": ["A.sol"]}},
               "settings": {"outputSelection": {"*": {"*": ["abi"]}}}}
    out = subprocess.run([compiler.binary, "--standard-json", "--allow-paths", str(tmp_path)], cwd=tmp_path,
                         input=json.dumps(request), capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.stdout)
    assert [e for e in result.get("errors", []) if e["severity"] == "error"] == []
    assert set(result["sources"]) == {"A.sol", "lib/L.sol"}
    assert result["contracts"]["A.sol"]["A"]["abi"][0]["name"] == "f"


def test_findings_are_keyed_by_names_not_lines():
    lint = _lint_module()
    contract = {"type": "contract", "name": "AdvancedSessionManager"}
    function = {"type": "function", "name": "_cleanup", "type_specific_fields": {"parent": contract}}
    variable = {"type": "variable", "name": "visited", "type_specific_fields": {"parent": function}}
    node = {"type": "node", "name": "x = 1", "type_specific_fields": {"parent": function}}
    assert lint.where(function) == "AdvancedSessionManager._cleanup"
    assert lint.where(variable) == "AdvancedSessionManager._cleanup.visited"
    assert lint.where(node) == "AdvancedSessionManager._cleanup"
    triage = json.loads((ROOT / "slither.triage.json").read_text())
    assert triage and all(e["check"] and e["where"] and len(e["reason"]) > 20 for e in triage)
