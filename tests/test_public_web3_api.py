"""Only the public API of web3 and the eth-* libraries (issue 10): their private modules
(``web3._utils``) and private methods (``_encode_transaction_data``) change without notice between
minor releases, and the package allows a range of them (``web3>=7,<9``). Public equivalents:
``Contract.encode_abi``, ``w3.codec.decode``, ``contract.events.X().process_log``,
``ContractLogicError.data``."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBS = r"(?:web3|eth_abi|eth_account|eth_utils|eth_keys|eth_keyfile|eth_typing|eth_hash|hexbytes|rlp)"
PATTERNS = {
    # `import web3._utils.events`, `from web3._utils import x`, `from eth_abi._x import y`
    "private module": re.compile(rf"\b{LIBS}(?:\.\w+)*\._\w+"),
    # `from web3.contract import _x`
    "private name": re.compile(rf"^\s*from\s+{LIBS}(?:\.\w+)*\s+import\s+(?:\(\s*)?_\w+", re.M),
    # `contract.functions.f(x)._encode_transaction_data()`, `.events.E()._parse_logs(...)`
    "private method": re.compile(r"\.(?:functions|events|caller)\.\w+\([^()]*\)\._[a-z]\w*|"
                                 r"\b_encode_transaction_data\b|\b_encode_constructor_data\b"),
}


def _sources():
    for top in ("src", "tests", "bench", "scripts"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if path != Path(__file__).resolve():
                yield path


def test_no_private_web3_api():
    hits = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for what, rx in PATTERNS.items():
            for m in rx.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                hits.append(f"{path.relative_to(ROOT)}:{line}: {what}: {m.group(0).strip()}")
    assert not hits, "private web3/eth-* API in use:\n" + "\n".join(hits)


def test_the_check_catches_what_it_should():
    """The patterns match the uses removed in issue 10, and not the public spellings."""
    bad = ["from web3._utils.events import get_event_data",
           "import web3._utils.abi",
           "from web3.contract import _x",
           "m.functions.closeSession(sid)._encode_transaction_data()"]
    good = ["from web3.exceptions import ContractLogicError",
            "m.encode_abi('closeSession', [sid])",
            "m.events.SessionCreated().process_log(log)",
            "tx._decode_return(ctx, r, x)"]  # a private helper of our own, not web3's
    assert all(any(rx.search(s) for rx in PATTERNS.values()) for s in bad)
    assert not any(rx.search(s) for rx in PATTERNS.values() for s in good)
