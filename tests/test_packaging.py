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
def dist(tmp_path_factory) -> Path:
    """The sdist and the wheel, built as the release step builds them (docs/RELEASING.md)."""
    if not MAIN_ARTIFACT.is_file():
        pytest.skip("abi/AdvancedSessionManager.json not generated yet")
    out = tmp_path_factory.mktemp("dist")
    # NOTE: --no-isolation uses the hatchling of the dev environment, so the
    # test downloads nothing.
    res = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--no-isolation", "--outdir",
         str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (whl,) = dist.glob("dtnsess-*.whl")
    return whl


@pytest.mark.slow
def test_distributions_pass_twine_check(dist: Path):
    """What PyPI would refuse (metadata, the README's rendering) fails here, not at upload."""
    files = sorted(str(p) for p in dist.iterdir())
    assert len(files) == 2, files
    res = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *files],
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("PASSED") == 2, res.stdout


@pytest.mark.slow
def test_wheel_metadata_is_ready_to_publish(wheel: Path):
    from email.parser import HeaderParser

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = HeaderParser().parsestr(zf.read(meta_name).decode())
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert meta["License-Expression"] == "MIT" and meta["License-File"] == "LICENSE"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.10" in classifiers
    assert meta["Description-Content-Type"] == "text/markdown"
    assert {"devnet", "compile", "dev"} <= set(meta.get_all("Provides-Extra"))
    # a plain install is the command path only: web3 & co. come with an extra
    plain = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert not [r for r in plain if r.split(">")[0].split("<")[0].split("=")[0].strip() in
                ("web3", "eth-abi", "eth-account", "eth-utils", "requests", "py-solc-x")], plain


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
    assert "dtnsess = dtnsess_cli.cli:console" in entry_points
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
    assert "deliberate failure" in res.stdout, res.stdout[-3000:]
    pid = int(pid_file.read_text())
    assert _gone(pid)


# ------------------------------------------------------------- installs next to a backend's web3

# a plain install's budget (issue 18): the distributions it brings (dtnsess included) and their
# size on disk; pip and setuptools are not counted (the environments are made without them)
PLAIN_MAX_PACKAGES = 18
PLAIN_MAX_MB = 45
WEB3_MAJORS = ("6", "7", "8")

_REPORT = r"""
import json, sys
from importlib.metadata import distributions
dists = {d.metadata["Name"].lower(): d for d in distributions()}
size = sum(f.locate().stat().st_size for d in dists.values() for f in (d.files or [])
           if f.locate().is_file())
web3 = dists.get("web3")
import dtnsess_cli
from dtnsess_cli import Client  # the API imports without web3 & co.
print(json.dumps({"packages": sorted(dists), "bytes": size,
                  "web3": web3.version if web3 else None}))
"""


def _fresh_env(where: Path) -> Path:
    """A virtual environment without pip (pip of this environment installs into it)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True,
                   timeout=120, stdin=subprocess.DEVNULL)
    return where / "bin" / "python"


@pytest.fixture(scope="module")
def installs(wheel: Path, tmp_path_factory) -> dict:
    """The wheel installed into fresh environments: alone ("plain"), and next to web3 6, 7 and
    8 as a backend has it (installed first, then the wheel). pip may reach PyPI for web3 and the
    dependencies (its cache makes reruns fast); the four installs run side by side."""
    root = tmp_path_factory.mktemp("installs")
    envs, procs = {}, {}
    for name in ("plain", *WEB3_MAJORS):
        py = _fresh_env(root / name)
        envs[name] = py
        # NOTE: --no-compile: byte-compiling web3 & co. is most of an install's CPU time
        pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
               "--disable-pip-version-check", "--no-input", "--no-compile"]
        cmd = " && ".join(
            ([" ".join(pip + [f"'web3>={name},<{int(name) + 1}'"])] if name != "plain" else [])
            + [" ".join(pip + [str(wheel)])])
        procs[name] = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True,
                                       stdin=subprocess.DEVNULL)
    out = {}
    for name, proc in procs.items():
        log, _ = proc.communicate(timeout=540)
        assert proc.returncode == 0, f"{name}: {log[-3000:]}"
        check = subprocess.run([sys.executable, "-m", "pip", "--python", str(envs[name]),
                                "check"], capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, f"{name}: {check.stdout}{check.stderr}"
        rep = subprocess.run([str(envs[name]), "-c", _REPORT], capture_output=True, text=True,
                             timeout=120, cwd=root)
        assert rep.returncode == 0, f"{name}: {rep.stderr[-2000:]}"
        out[name] = dict(json.loads(rep.stdout), python=envs[name])
    return out


@pytest.mark.slow
def test_plain_install_is_small(installs):
    plain = installs["plain"]
    mb = plain["bytes"] / 1e6
    print(f"plain install: {len(plain['packages'])} packages, {mb:.1f} MB: {plain['packages']}")
    assert plain["web3"] is None
    assert not {"web3", "eth-account", "eth-abi", "eth-utils", "requests", "py-solc-x"} \
        & set(plain["packages"])
    assert len(plain["packages"]) <= PLAIN_MAX_PACKAGES, plain["packages"]
    assert mb <= PLAIN_MAX_MB


@pytest.mark.slow
@pytest.mark.parametrize("major", WEB3_MAJORS)
def test_installs_next_to_each_web3(installs, major, anvil, system6, user):
    """The backend keeps its web3 (the wheel neither upgrades nor pins it), and the CLI runs:
    --version, --help and a read against Anvil."""
    env = installs[major]
    assert env["web3"] and env["web3"].split(".")[0] == major, env["web3"]
    cli = env["python"].parent / "dtnsess"
    plain_env = {k: v for k, v in os.environ.items() if not k.startswith(("DTNSESS_", "ETH_"))}
    version = subprocess.run([str(cli), "--version"], capture_output=True, text=True,
                             timeout=60, env=plain_env)
    assert version.returncode == 0 and "0.1.0" in version.stdout, version.stderr
    helped = subprocess.run([str(cli), "--help"], capture_output=True, text=True, timeout=60,
                            env=plain_env)
    assert helped.returncode == 0 and "create" in helped.stdout, helped.stderr
    read = subprocess.run([str(cli), "--rpc-url", anvil.url, "--contract",
                           system6.manager.address, "balance", "--user", user, "--json"],
                          capture_output=True, text=True, timeout=60, env=plain_env,
                          cwd=env["python"].parents[2])
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout)["address"] == user
