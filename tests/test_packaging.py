"""Packaging (the wheel carries abi/) and the test harness (Anvil leaves nothing behind)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from dtnsess_cli import artifacts
from dtnsess_cli.devnet.anvil import AnvilProcess, rpc

ROOT = Path(__file__).resolve().parents[1]
MAIN_ARTIFACT = ROOT / "abi" / "AdvancedSessionManager.json"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it is gone once nobody can reap it... but
    # AnvilProcess.stop() reaps, so any answer here means a live process.
    return False


# ------------------------------------------------------------------------- wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not MAIN_ARTIFACT.is_file():
        pytest.skip("abi/AdvancedSessionManager.json not generated yet")
    out = tmp_path_factory.mktemp("dist")
    # NOTE: --no-isolation uses the hatchling of the dev environment, so the
    # test downloads nothing.
    res = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    (whl,) = out.glob("dtnsess-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_carries_artifacts(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "dtnsess_cli/__init__.py" in names
        assert "dtnsess_cli/abi/AdvancedSessionManager.json" in names
        assert "dtnsess_cli/py.typed" in names  # PEP 561: the Python API's annotations
        art = json.loads(zf.read("dtnsess_cli/abi/AdvancedSessionManager.json"))
        entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = zf.read(entry).decode()
    assert art["abi"], "empty abi"
    assert len(art["bytecode"]) > 2 and art["bytecode"].startswith("0x")
    assert "dtnsess = dtnsess_cli.cli:main" in entry_points
    # Every committed artifact is in the wheel.
    for path in (ROOT / "abi").glob("*.json"):
        assert f"dtnsess_cli/abi/{path.name}" in names


@pytest.mark.slow
def test_installed_wheel_loads_packaged_artifacts(wheel: Path, tmp_path: Path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(site)!r})
        from dtnsess_cli import artifacts
        assert artifacts.abi_dir() == __import__("pathlib").Path({str(site)!r}) / "dtnsess_cli" / "abi", artifacts.abi_dir()
        art = artifacts.load_artifact("AdvancedSessionManager")
        assert art["abi"] and art["bytecode"].startswith("0x")
        assert "AdvancedSessionManager" in artifacts.all_abis()
        assert "web3" not in sys.modules
        print("ok")
        """
    )
    # -S: no site-packages, so the editable install of the checkout is not seen.
    res = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_artifacts_from_checkout():
    if not MAIN_ARTIFACT.is_file():
        pytest.skip("abi/AdvancedSessionManager.json not generated yet")
    assert artifacts.abi_dir().resolve() in (
        (ROOT / "abi").resolve(),
        (Path(artifacts.__file__).parent / "abi").resolve(),
    )
    art = artifacts.load_artifact("AdvancedSessionManager")
    assert art["contractName"] == "AdvancedSessionManager"
    abis = artifacts.all_abis()
    assert abis["AdvancedSessionManager"] == art["abi"]


def test_missing_artifact_is_a_clear_error():
    with pytest.raises(Exception) as info:
        artifacts.load_artifact("NoSuchContract")
    assert "NoSuchContract" in str(info.value)
    assert isinstance(info.value, FileNotFoundError) or type(info.value).__name__ == "ArtifactError"


# ----------------------------------------------------------------- test harness


def test_anvil_process_is_gone_after_stop(tmp_path: Path):
    node = AnvilProcess().start(log_path=tmp_path / "a.log")
    pid = node.pid
    assert rpc(node.url, "eth_chainId") == hex(31337)
    node.stop()
    assert not node.running
    assert _gone(pid)
    node.stop()  # idempotent
    with AnvilProcess() as other:
        other_pid = other.pid
        assert other.running
    assert _gone(other_pid)


def test_session_fixture_stops_anvil_even_when_tests_fail(tmp_path: Path):
    """Run a failing test in a child pytest with our conftest; its Anvil must be gone."""
    # the conftest, the fixture plugins it registers and the helper modules they import
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    shutil.copytree(ROOT / "tests" / "fixtures", tmp_path / "fixtures",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("helpers.py", "cli_helpers.py"):
        shutil.copy(ROOT / "tests" / name, tmp_path / name)
    pid_file = tmp_path / "pid"
    (tmp_path / "test_child.py").write_text(
        textwrap.dedent(
            f"""
            def test_uses_chain(anvil, w3, deployer, user, stranger, worker):
                open({str(pid_file)!r}, "w").write(str(anvil.pid))
                assert w3.eth.chain_id == 31337
                assert len({{deployer, user, stranger, worker}}) == 4
                w3.eth.send_transaction({{"from": deployer, "to": stranger, "value": 1}})

            def test_snapshot_reverted(w3, stranger):
                assert w3.eth.get_balance(stranger) == 10000 * 10**18
                assert w3.eth.block_number == 0
                assert False, "deliberate failure"

            def test_system_deployed_once(w3, system6, system18, user):
                open({str(pid_file)!r} + ".addr", "w").write(system6.manager.address)
                assert system6.token.functions.decimals().call() == 6
                assert system18.token.functions.decimals().call() == 18
                system6.token.functions.mint(user, 5).transact({{"from": user}})

            def test_system_survives_revert(w3, system6, user):
                assert system6.manager.address == open({str(pid_file)!r} + ".addr").read()
                assert len(w3.eth.get_code(system6.manager.address)) > 2
                assert system6.token.functions.balanceOf(user).call() == 0
            """
        )
    )
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert res.returncode == 1, res.stdout[-3000:]
    assert "1 failed, 3 passed" in res.stdout, res.stdout[-3000:]
    assert "deliberate failure" in res.stdout
    pid = int(pid_file.read_text())
    assert _gone(pid)
