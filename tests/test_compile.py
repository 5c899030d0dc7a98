"""The compile module: deterministic artifacts, a working --check, clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dtnsess_cli import compile as comp

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "contracts"
ABI = ROOT / "abi"

needs_contracts = pytest.mark.skipif(
    not any(CONTRACTS.rglob("*.sol")) if CONTRACTS.is_dir() else True,
    reason="contracts/ has no sources yet",
)


def run_compile(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dtnsess_cli.compile", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )


@pytest.fixture(scope="module")
def real_build() -> dict[str, bytes]:
    """The project's contracts compiled once, in memory."""
    if not CONTRACTS.is_dir() or not any(CONTRACTS.rglob("*.sol")):
        pytest.skip("contracts/ has no sources yet")
    return comp.build(CONTRACTS)


# --------------------------------------------------------------- fast, tiny sources

TINY = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;
// import "./DoesNotExist.sol";  (commented-out imports are not followed)
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import "./lib/ITiny.sol";

contract Tiny is Ownable, ITiny {
    string public note = "http://example.org//not-a-comment";
    constructor() Ownable(msg.sender) {}
    function ping() external pure returns (uint256) { return 1; }
}
"""
ITINY = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;
interface ITiny { function ping() external pure returns (uint256); }
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    src = tmp_path / "contracts"
    (src / "lib").mkdir(parents=True)
    (src / "Tiny.sol").write_text(TINY)
    (src / "lib" / "ITiny.sol").write_text(ITINY)
    return src


def test_tiny_build_is_deterministic_and_well_formed(tiny: Path, tmp_path: Path):
    first = comp.build(tiny)
    second = comp.build(tiny)
    assert first == second
    assert sorted(first) == ["ITiny.json", "Tiny.json"]
    art = json.loads(first["Tiny.json"])
    assert art["contractName"] == "Tiny"
    assert art["sourceName"] == "contracts/Tiny.sol"
    assert art["bytecode"].startswith("0x60") and art["deployedBytecode"].startswith("0x")
    assert any(e.get("name") == "ping" for e in art["abi"])
    assert art["compiler"]["version"].startswith(comp.SOLC_VERSION + "+commit.")
    settings = art["compiler"]["settings"]
    assert settings["optimizer"] == {"enabled": True, "runs": 200}
    assert settings["evmVersion"] == "cancun"
    assert settings["metadata"] == {"bytecodeHash": "none"}
    assert art["sourcesHash"].startswith("sha256:")
    assert first["Tiny.json"].endswith(b"}\n")

    # The location of the checkout does not leak into the artifacts.
    moved = tmp_path / "elsewhere" / "contracts"
    shutil.copytree(tiny, moved)
    assert comp.build(moved) == first


def test_tiny_write_then_check(tiny: Path, tmp_path: Path):
    out = tmp_path / "abi"
    assert run_compile("--contracts", str(tiny), "--out", str(out)).returncode == 0
    written = {p.name: p.read_bytes() for p in out.glob("*.json")}
    again = run_compile("--contracts", str(tiny), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} == written

    ok = run_compile("--check", "--contracts", str(tiny), "--out", str(out))
    assert ok.returncode == 0, ok.stderr

    (out / "Leftover.json").write_text("{}\n")
    (out / "ITiny.json").unlink()
    bad = run_compile("--check", "--contracts", str(tiny), "--out", str(out))
    assert bad.returncode == 1
    assert "ITiny.json: missing" in bad.stderr
    assert "Leftover.json: no longer produced" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_syntax_error_is_one_clear_line(tiny: Path, tmp_path: Path):
    text = (tiny / "Tiny.sol").read_text().replace("return 1;", "return 1")
    (tiny / "Tiny.sol").write_text(text)
    res = run_compile("--contracts", str(tiny), "--out", str(tmp_path / "abi"))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    line = text[: text.index("return 1")].count("\n") + 1
    assert f"contracts/Tiny.sol:{line + 1}: error: ParserError" in res.stderr or (
        f"contracts/Tiny.sol:{line}: error: ParserError" in res.stderr
    ), res.stderr
    assert not (tmp_path / "abi").exists()


def test_missing_import_names_the_file(tiny: Path, tmp_path: Path):
    (tiny / "Broken.sol").write_text('pragma solidity ^0.8.24;\nimport "./Nope.sol";\n')
    res = run_compile("--contracts", str(tiny), "--out", str(tmp_path / "abi"))
    assert res.returncode == 1
    assert "contracts/Nope.sol: source not found (imported by contracts/Broken.sol)" in res.stderr
    assert "Traceback" not in res.stderr


def test_import_forms_are_followed():
    text = """
    import "a.sol";
    import {X, Y as Z} from './b.sol';
    import * as C from "../c.sol";
    import "./d.sol" as D;
    /* import "e.sol"; */
    // import "f.sol";
    string constant s = "import \\"g.sol\\";";
    """
    assert comp._imports(text) == ["a.sol", "./b.sol", "../c.sol", "./d.sol"]
    assert comp._resolve("contracts/dev/X.sol", "../dtn/I.sol") == "contracts/dtn/I.sol"
    assert (
        comp._resolve("contracts/X.sol", "@openzeppelin/contracts/access/Ownable.sol")
        == "node_modules/@openzeppelin/contracts/access/Ownable.sol"
    )


# ------------------------------------------------------------ the project's contracts


@pytest.mark.slow
@needs_contracts
def test_committed_abi_is_fresh(real_build):
    if not ABI.is_dir() or not any(ABI.glob("*.json")):
        pytest.skip("abi/ not generated yet")
    assert comp.check(real_build, ABI) == []
    assert "AdvancedSessionManager.json" in real_build


@pytest.mark.slow
@needs_contracts
def test_real_compile_twice_identical_and_check_detects_change(real_build, tmp_path: Path):
    src = tmp_path / "contracts"
    shutil.copytree(CONTRACTS, src)
    out = tmp_path / "abi"
    # A second, independent compile (another process, another directory).
    res = run_compile("--contracts", str(src), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} == real_build

    target = src / "AdvancedSessionManager.sol"
    if not target.is_file():
        target = sorted(src.rglob("*.sol"))[0]
    target.write_text(target.read_text() + "\n// changed\n")
    stale = run_compile("--check", "--contracts", str(src), "--out", str(out))
    assert stale.returncode == 1
    assert "Traceback" not in stale.stderr
    name = target.stem + ".json"
    if (out / name).exists():
        assert f"{out / name}: stale" in stale.stderr, stale.stderr
