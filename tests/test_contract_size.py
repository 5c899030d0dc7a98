"""The manager fits EIP-170: a chain refuses to deploy runtime code of 24,576 bytes or more."""

from __future__ import annotations

from dtnsess_cli.artifacts import load_artifact

EIP170_LIMIT = 24_576


def test_deployed_manager_runtime_code_is_under_the_eip170_limit(system6):
    code = system6.w3.eth.get_code(system6.manager.address)
    art = load_artifact("AdvancedSessionManager")
    # immutables are filled in at deploy time: same length as the artifact's runtime code
    assert len(code) == (len(art["deployedBytecode"]) - 2) // 2
    assert len(code) < EIP170_LIMIT, f"{len(code)} bytes, {len(code) - EIP170_LIMIT + 1} over"
    print(f"manager runtime code: {len(code):,} bytes ({EIP170_LIMIT - len(code):,} to spare)")
