"""The local journal of signed transactions, and the one-sender-at-a-time lock (per chain).

Every transaction is written here (raw signed bytes, hash, nonce, what it was for) BEFORE it is
broadcast, and resolved after: ``mined`` / ``failed`` (mined, reverted) / ``replaced`` (its nonce
went to another transaction) / ``dropped`` (the node refused it). An entry still ``open`` means
the outcome is not known (a lost reply, a timeout, Ctrl-C): the next write from the same key
looks it up by hash first (``client.Client``), so a rerun never repeats a mined intent unknowingly.

One SQLite file (WAL mode, so concurrent processes read while one writes) in the user's state
directory (``platformdirs``; ``DTNSESS_STATE_DIR`` overrides), keyed by (chain, sender). A chain
is its id *and* its genesis block hash; and since a fork shares its origin's genesis (and two
Anvils started in the same second share theirs), each entry also keeps an anchor: the latest
block (number, hash) when it was signed. An entry whose anchor block is not the node's and whose
hash the node does not know is of another chain: never re-broadcast on, nor resolved against,
this one. An entry an older dtnsess wrote (no genesis, no anchor: ``Entry.legacy``) is of a
chain that cannot be told: it is only shown (``dtnsess journal list``, ``dtnsess tx HASH``; a
rerun of its command is refused), until ``dtnsess journal forget --legacy``. It never holds a key: only signed
transactions, which anyone may broadcast anyway.

Only stdlib and platformdirs here.
"""

from __future__ import annotations

import contextvars
import json
import os
import sqlite3
import sys
import threading
import time

from ..errors import ConfigError
from ..record import record

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path
    from typing import Any, Optional, Union

    StrPath = Union[str, "os.PathLike[str]"]  # a file or directory: a str (or a Path)

STATE_ENV = "DTNSESS_STATE_DIR"
JOURNAL_FILE = "journal.sqlite3"
OPEN, MINED, FAILED, REPLACED, DROPPED = "open", "mined", "failed", "replaced", "dropped"
# an open entry of a chain that no longer exists (``dtnsess journal forget``, ``devnet reset``)
FORGOTTEN = "forgotten"

# The command line that caused the transactions of this run (set by cli.command), e.g.
# {"argv": "dtnsess create 20"}; never holds a key (keys are never arguments).
INTENT: contextvars.ContextVar[Optional[dict]] = contextvars.ContextVar("dtnsess_intent",
                                                                       default=None)


def state_dir() -> Path:
    """The directory of the journal, the sender locks and the state files (``state_path``)."""
    from pathlib import Path

    return Path(state_path())


def state_path() -> str:
    """``state_dir()`` as a str. NOTE: the write path uses str paths (os.path), not pathlib,
    whose import cost ~2.5 ms of every write (issue 19)."""
    env = os.environ.get(STATE_ENV)
    if env:
        return os.path.expanduser(env)
    if sys.platform == "linux" and not os.environ.get("ANDROID_DATA"):
        # NOTE: platformdirs' XDG rule for Linux, without its import (~30 ms of CPU, every
        # write; issue 19); tests/test_config.py holds it to platformdirs' answer
        xdg = os.environ.get("XDG_STATE_HOME", "")
        return os.path.join(xdg if xdg.strip() else os.path.expanduser("~/.local/state"),
                            "dtnsess")
    import platformdirs

    return platformdirs.user_state_dir("dtnsess", appauthor=False)


@record
class Entry:
    """One signed transaction of the journal (a row of ``txs``)."""

    chain_id: int
    sender: str
    tx_hash: str
    nonce: int
    raw: str  # 0x-hex signed transaction
    description: str
    intent: dict
    status: str
    created_at: float
    updated_at: float
    block: Optional[int] = None
    note: Optional[str] = None
    # the chain's genesis block hash and the latest block when it was signed (None: recorded
    # before the journal kept them)
    genesis: Optional[str] = None
    anchor_block: Optional[int] = None
    anchor_hash: Optional[str] = None
    # a replacement (``dtnsess tx speedup/cancel``): the hash of the first transaction of its
    # family -- the signed variants of one intent at one nonce, of which one at most is mined
    family: Optional[str] = None

    @property
    def root(self) -> str:
        """The family this entry belongs to: its first transaction's hash."""
        return self.family or self.tx_hash

    @property
    def cancel(self) -> bool:
        """A cancel (a 0-value transfer to self at the intent's nonce): its being mined means
        the intent was NOT done."""
        return self.intent.get("replace") == "cancel"

    @property
    def argv(self) -> str:
        return str(self.intent.get("argv") or "")

    @property
    def final(self) -> bool:
        """False for a preliminary step (an approval sent by `create`/`renew`)."""
        return not self.intent.get("step")

    def label(self) -> str:
        """``tx 0xab… (nonce 5, `dtnsess create 20`)``."""
        cmd = f", `{self.argv}`" if self.argv else ""
        return f"tx {self.tx_hash} (nonce {self.nonce}{cmd})"

    @property
    def legacy(self) -> bool:
        """Written by a dtnsess from before the journal kept chains (no genesis, no anchor):
        of an unknown chain with its id, never resolved against nor re-broadcast on any."""
        return not self.genesis and self.anchor_block is None

    def on(self, chain_id: int, genesis: Optional[str]) -> bool:
        """Is this entry of that chain? A chain whose genesis is not known (the node has no
        block 0), or an entry recorded on one, is taken as of every chain with its id; a legacy
        entry is of none (its chain cannot be told)."""
        if self.legacy:
            return False
        return self.chain_id == chain_id and (not self.genesis or not genesis
                                              or self.genesis == genesis.lower())

    def anchored(self, block: Any) -> Optional[bool]:
        """Does ``block`` (the node's eth_getBlockByNumber reply for ``anchor_block``) have the
        anchor's hash? None when the entry has no anchor."""
        if self.anchor_block is None or not self.anchor_hash:
            return None
        h = block.get("hash") if isinstance(block, dict) else None
        return isinstance(h, str) and h.lower() == self.anchor_hash

    def chain_label(self) -> str:
        """``chain 31337 (genesis 0xab12…)``."""
        if self.legacy:
            return f"chain {self.chain_id} (genesis not recorded: an older dtnsess wrote it)"
        g = f" (genesis {self.genesis})" if self.genesis else ""
        return f"chain {self.chain_id}{g}"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS txs (
    tx_hash     TEXT PRIMARY KEY,
    chain_id    INTEGER NOT NULL,
    sender      TEXT NOT NULL,
    nonce       INTEGER NOT NULL,
    raw         TEXT NOT NULL,
    description TEXT NOT NULL,
    intent      TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    block       INTEGER,
    note        TEXT
);
CREATE INDEX IF NOT EXISTS txs_open ON txs (chain_id, sender, status);
"""
# ``Entry.legacy`` in SQL
_LEGACY = "(genesis IS NULL AND anchor_block IS NULL)"
_COLS = ("chain_id", "sender", "tx_hash", "nonce", "raw", "description", "intent", "status",
         "created_at", "updated_at", "block", "note", "genesis", "anchor_block", "anchor_hash",
         "family")


def _migrate(db: sqlite3.Connection) -> None:
    """Add what later versions keep to a journal an earlier one made (idempotent)."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(txs)")}
    # entries from before: their chain's genesis and their anchor stay unknown (NULL)
    # replacements (issue 19) name their family's first hash; others have none
    for name, kind in (("genesis", "TEXT"), ("anchor_block", "INTEGER"), ("anchor_hash", "TEXT"),
                       ("family", "TEXT")):
        if name not in cols:
            db.execute(f"ALTER TABLE txs ADD COLUMN {name} {kind}")


class Journal:
    """The journal file (``state_dir()/journal.sqlite3`` by default; ``path``: a str)."""

    def __init__(self, path: Optional[StrPath] = None) -> None:
        self.path: str = os.fspath(path) if path else os.path.join(state_path(), JOURNAL_FILE)
        # NOTE: SQLite takes an empty file for a new database: a journal truncated to 0 bytes
        # (a full disk, a careless cleanup) would forget its open entries without a word
        try:
            self.emptied = os.stat(self.path).st_size == 0
        except OSError:
            self.emptied = False
        # NOTE: one connection per thread (sqlite3 objects belong to the thread that made
        # them; a Client may be shared by threads); WAL lets them read while one writes
        self._local = threading.local()
        self._all: list = []
        self._lock = threading.Lock()
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self.db.executescript(_SCHEMA)
            _migrate(self.db)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the transaction journal {self.path}: {exc}",
                              hint=f"set {STATE_ENV} to a writable directory") from None

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection to the journal file (opened on first use)."""
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                # autocommit: every statement is its own transaction (no long-held write locks)
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                     check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.Error as exc:
                raise ConfigError(f"cannot open the transaction journal {self.path}: {exc}",
                                  hint=f"set {STATE_ENV} to a writable directory") from None
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def close(self) -> None:
        """Close every thread's connection (check_same_thread=False: closing is allowed from
        any thread; the journal reopens on next use)."""
        with self._lock:
            dbs, self._all = self._all, []
        for db in dbs:
            db.close()
        self._local = threading.local()

    def record(self, chain_id: int, sender: str, tx_hash: str, nonce: int, raw: str,
               description: str, intent: Optional[dict], genesis: Optional[str] = None,
               anchor: Optional[tuple] = None, family: Optional[str] = None) -> None:
        """``genesis``: the chain's genesis hash; ``anchor``: (number, hash) of its latest block
        when the transaction was signed; ``family``: the first hash of the family a replacement
        joins."""
        now = time.time()
        a_block, a_hash = anchor or (None, None)
        self._exec("INSERT OR REPLACE INTO txs (chain_id, sender, tx_hash, nonce, raw, "
                   "description, intent, status, created_at, updated_at, genesis, "
                   "anchor_block, anchor_hash, family) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (chain_id, sender.lower(), tx_hash.lower(), nonce, raw, description,
                    json.dumps(intent or {}), OPEN, now, now,
                    genesis.lower() if genesis else None, a_block,
                    a_hash.lower() if a_hash else None, family.lower() if family else None))

    def resolve(self, tx_hash: str, status: str, block: Optional[int] = None,
                note: Optional[str] = None) -> None:
        self._exec("UPDATE txs SET status = ?, block = ?, note = ?, updated_at = ? "
                   "WHERE tx_hash = ?", (status, block, note, time.time(), tx_hash.lower()))

    def has_open(self, sender: str) -> bool:
        """Has ``sender`` open entries on any chain, legacy ones aside? (No chain id needed: no
        round trip.) NOTE: a legacy entry is never re-broadcast nor resolved, so nothing a
        write does would change it: it must not make every write look it up."""
        return bool(self._select(f"WHERE sender = ? AND status = ? AND NOT {_LEGACY} LIMIT 1",
                                 (sender.lower(), OPEN)))

    def open_entries(self, chain_id: int, sender: str, genesis: Optional[str] = None) -> list:
        """``sender``'s open entries of this chain (``Entry.on``)."""
        return [e for e in self._open_of(sender) if e.on(chain_id, genesis)]

    def open_elsewhere(self, chain_id: int, sender: str, genesis: Optional[str]) -> list:
        """``sender``'s open entries of another chain with the same id (another genesis)."""
        return [e for e in self._open_of(sender)
                if e.chain_id == chain_id and not e.legacy and not e.on(chain_id, genesis)]

    def open_all(self) -> list:
        """Every open entry, of any sender and chain, oldest first."""
        return self._select("WHERE status = ? ORDER BY created_at", (OPEN,))

    def open_legacy(self, sender: Optional[str] = None, chain_id: Optional[int] = None) -> list:
        """Open legacy entries (``Entry.legacy``): ``sender``'s, or everyone's; of ``chain_id``
        when given."""
        where, args = f"WHERE status = ? AND {_LEGACY}", [OPEN]
        if sender is not None:
            where, args = where + " AND sender = ?", args + [sender.lower()]
        if chain_id is not None:
            where, args = where + " AND chain_id = ?", args + [chain_id]
        return self._select(where + " ORDER BY created_at", tuple(args))

    def last_nonce(self, chain_id: int, sender: str, genesis: Optional[str]) -> Optional[int]:
        """The highest nonce journaled from ``sender`` on this chain (None: none). Entries
        whose genesis is not known (older journals) count only when this chain's is not."""
        try:
            row = self.db.execute(
                "SELECT MAX(nonce) FROM txs WHERE chain_id = ? AND sender = ? AND "
                "(? IS NULL OR genesis = ?)",
                (chain_id, sender.lower(), genesis or None, (genesis or "").lower())).fetchone()
        except sqlite3.Error as exc:
            raise ConfigError(f"transaction journal {self.path}: {exc}") from None
        return row[0] if row and row[0] is not None else None

    def _open_of(self, sender: str) -> list:
        return self._select("WHERE sender = ? AND status = ? ORDER BY nonce, created_at",
                            (sender.lower(), OPEN))

    def open_with_genesis(self, genesis: str, chain_id: Optional[int] = None) -> list:
        """Every sender's open entries of chains with this genesis hash (and id, when given)."""
        where, args = "WHERE status = ? AND genesis = ?", [OPEN, genesis.lower()]
        if chain_id is not None:
            where, args = where + " AND chain_id = ?", args + [chain_id]
        return self._select(where + " ORDER BY created_at", tuple(args))

    def forget(self, entries: list, note: str = "its chain no longer exists") -> None:
        """Mark ``entries`` ``forgotten``: their chain is gone (or cannot be told), they can
        never be resolved."""
        for e in entries:
            self.resolve(e.tx_hash, FORGOTTEN, note=note)

    def members(self, root: str) -> list:
        """Every entry of the family whose first hash is ``root``, first one first."""
        return self._select("WHERE tx_hash = ? OR family = ? ORDER BY created_at",
                            (root.lower(), root.lower()))

    def find(self, tx_hash: str) -> Optional[Entry]:
        rows = self._select("WHERE tx_hash = ?", (tx_hash.lower(),))
        return rows[0] if rows else None

    def _select(self, where: str, args: tuple) -> list:
        try:
            cur = self.db.execute(f"SELECT {', '.join(_COLS)} FROM txs {where}", args)
            rows = cur.fetchall()
        except sqlite3.Error as exc:
            raise ConfigError(f"transaction journal {self.path}: {exc}") from None
        out = []
        for r in rows:
            d = dict(zip(_COLS, r))
            try:
                d["intent"] = json.loads(d["intent"]) or {}
            except ValueError:
                d["intent"] = {}
            out.append(Entry(**d))
        return out

    def _exec(self, sql: str, args: tuple) -> None:
        try:
            self.db.execute(sql, args)
        except sqlite3.Error as exc:
            raise ConfigError(f"transaction journal {self.path}: {exc}") from None


def _chains_file(directory: Optional[StrPath]) -> str:
    return os.path.join(directory or state_path(), "chains.json")


def _url_key(url: str) -> str:
    # NOTE: a hash: an RPC URL may hold an API key, never written down here. keccak, loaded for
    # signing anyway, not hashlib (OpenSSL, ~4 ms of every command's start). The entries are
    # hints: one made under sha256 by an earlier version is read again from the node, once.
    from .abi import keccak

    return keccak((url or "").encode()).hex()[:32]


def read_json(path: StrPath) -> dict:
    """The JSON object in ``path``: ``{}`` when unreadable or not an object (the state dir's
    hints: chains.json, tokens.json, sessions.json)."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _chain_entry(url: str, directory: Optional[StrPath]) -> list:
    """chains.json's entry for ``url``: [chain id, genesis, methods it lacks...] ([]: none)."""
    got = read_json(_chains_file(directory)).get(_url_key(url))
    return got if isinstance(got, list) else []


def known_chain(url: str, directory: Optional[StrPath] = None) -> Optional[tuple]:
    """(chain id, genesis) last seen behind ``url`` (None: never, or unreadable). A hint for
    the sender lock only: the send checks it before signing (``context.take_chain``)."""
    got = _chain_entry(url, directory)
    try:
        return (int(got[0]), str(got[1])) if got else None
    except (TypeError, ValueError, IndexError):
        return None


def update_json(path: StrPath, change: Any) -> None:
    """Edit the JSON object in ``path`` (unreadable, or not an object: ``{}``) with
    ``change(data)``; when it returns true, the file is replaced atomically (a temp file beside
    it, then ``os.replace``: a reader sees the old file or the new one). Best effort: the files
    kept this way are hints (chains.json, tokens.json, sessions.json), so a failed write is let go."""
    data = read_json(path)
    if not change(data):
        return
    directory, name = os.path.split(os.fspath(path))
    try:
        os.makedirs(directory or ".", exist_ok=True)
        # NOTE: named per process and thread: two threads of an embedding program may write at once
        tmp = os.path.join(directory, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "w") as fh:
            fh.write(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass


def remember_chain(url: str, chain: Optional[tuple], directory: Optional[StrPath] = None,
                   lacks: str = "") -> None:
    """Note (or with None forget) the chain behind ``url``; best effort (a hint only).
    ``lacks``: a JSON-RPC method the node there answered "method not found" (``lacking``).
    What is known to be lacking stays while the chain stays, and goes with it."""
    key = _url_key(url)

    def change(data: dict) -> bool:
        if chain is None:
            return data.pop(key, None) is not None
        entry = [int(chain[0]), chain[1] or ""]
        old = data.get(key)
        if isinstance(old, list) and old[:2] == entry:
            entry += [m for m in old[2:] if isinstance(m, str) and m != lacks]
        entry += [lacks] if lacks else []
        if old == entry:
            return False
        data[key] = entry
        return True

    update_json(_chains_file(directory), change)


def chain_tag(chain: Optional[tuple]) -> str:
    """What names a chain in a lock file's name: ``31337-<genesis hex>-`` for (chain id,
    genesis hash); the id alone when the node has no genesis (""); "" for None."""
    if chain is None:
        return ""
    cid, genesis = chain
    return f"{int(cid)}-" + (f"{genesis.lower()[2:]}-" if genesis else "")


def lacking(url: str, chain: tuple, directory: Optional[StrPath] = None) -> frozenset:
    """The JSON-RPC methods the node behind ``url`` lacks, as noted while it served ``chain``
    ((chain id, genesis); another chain behind the URL: nothing known)."""
    got = _chain_entry(url, directory)
    if got[:2] != [int(chain[0]), chain[1] or ""]:
        return frozenset()
    return frozenset(m for m in got[2:] if isinstance(m, str))


def sender_lock(address: str, directory: Optional[StrPath] = None, chain: Optional[tuple] = None):
    """The inter-process lock of one sender on one chain (an ``oslock.FileLock``), in
    ``directory`` (default: ``state_dir()``). ``chain``: (chain id, genesis hash) -- a chain is
    both, as in the journal (genesis "": the node has none; the id alone then).

    NOTE: per chain, so one key writes on two chains at once (a fork and its origin, two
    devnets); the nonce sequence it orders is per chain anyway. The chain is known before the
    lock from ``known_chain`` (checked before signing), else read (``Writes._chain_key``)."""
    from .oslock import FileLock

    d = os.path.join(directory or state_path(), "locks")
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the lock directory {d}: {exc.strerror}",
                          hint=f"set {STATE_ENV} to a writable directory") from None
    return FileLock(os.path.join(d, f"sender-{chain_tag(chain)}{address.lower()}.lock"))
