"""Configuration: where the RPC node, the contract and the key come from.

Precedence, highest first (written once, here):

    1. command-line flags          (--rpc-url, --contract, --chain-id, --network, --account,
                                    --keystore, --password-file)
    2. environment variables       (DTNSESS_*; then Foundry's names for the same settings:
                                    ETH_RPC_URL, ETH_KEYSTORE, ETH_KEYSTORE_ACCOUNT, ETH_PASSWORD)
    3. ./.env                      (the same names; read with python-dotenv's dotenv_values;
                                    os.environ is untouched)
    4. network preset              (--network / DTNSESS_NETWORK: base | local)
    5. devnet state file           (./.dtnsess-devnet.json written by `dtnsess devnet up`)

Within a layer a DTNSESS_* name beats its Foundry alias. The signing key: of a keystore
(--keystore / --account and their variables) and DTNSESS_PRIVATE_KEY, the one from the higher
layer wins; in the same layer a DTNSESS_* name beats a Foundry alias, and on a full tie the
keystore wins (the path over the account name).

Only stdlib and python-dotenv here: this module is on the start-up path.
"""

from __future__ import annotations

import json
import os
import re

from .errors import ConfigError, InputError, redact_url, remember_secret, remember_url
from .models import DEFAULT_TEXT_MODEL, DTN_MODELS
from .record import field, record

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path
    from typing import Any, Mapping, Optional, Union

    # NOTE: paths here are str (os.path): pathlib's import cost ~2.5 ms of every write (issue 19)
    StrPath = Union[str, "os.PathLike[str]"]

DEVNET_STATE_FILE = ".dtnsess-devnet.json"
DEFAULT_MODEL = DEFAULT_TEXT_MODEL

# Network presets. NOTE: the manager contract is the user's own deployment, so no preset
# names a contract; the DTN router address is informative (deploy --ai default on Base).
PRESETS: dict[str, dict[str, Any]] = {
    "base": {
        "rpc_url": "https://mainnet.base.org",
        "chain_id": 8453,
        "router": "0x45B80f551646fDaC777A4991FbdA748Fc5A72194",
        # what DTN's deployment module registers there (`dtnsess models`)
        "model": DEFAULT_TEXT_MODEL,
        "models": [m.name for m in DTN_MODELS],
    },
    "local": {
        "rpc_url": "http://127.0.0.1:8545",
        "chain_id": 31337,
    },
}

# Dev chains where a devnet's well-known account key may be used without configuration.
DEV_CHAIN_IDS = {31337, 1337}

# Layer names as shown by `config show`.
FLAG, ENV, DOTENV, PRESET, DEVNET, DEFAULT = "flag", "env", ".env", "preset", "devnet", "default"
_RANK = {FLAG: 0, ENV: 1, DOTENV: 2, PRESET: 3, DEVNET: 4, DEFAULT: 5}

# NOTE: patterns are strings, compiled by re's cache when first used, not at start-up
_ADDR_RE = r"^0x[0-9a-fA-F]{40}$"


@record
class CliOptions:
    """Global options as given on the command line (None/False when not given)."""

    rpc_url: Optional[str] = field(default=None, repr=False)  # may hold an API key
    contract: Optional[str] = None
    network: Optional[str] = None
    chain_id: Optional[int] = None
    account: Optional[str] = None
    keystore: Optional[str] = None
    json: bool = False
    yes: bool = False
    dry_run: bool = False
    debug: bool = False
    password_file: Optional[str] = None  # a path: a password is never an argument
    # what the user fixes for a write's transactions (cast's flags; fees as wei or "2gwei")
    nonce: Optional[int] = None
    gas_limit: Optional[int] = None
    priority_gas_price: Optional[str] = None
    max_fee: Optional[str] = None
    unlocked: bool = False  # send from a node-held account (eth_sendTransaction)
    from_: Optional[str] = None  # that account (cast's --from / ETH_FROM)

    def merged_over(self, base: "CliOptions") -> "CliOptions":
        """These options, falling back to ``base`` for what was not given here."""
        out = CliOptions()
        for name in self.__record_names__:
            mine = getattr(self, name)
            # NOTE: `is`, not `in (None, False)`: 0 == False, and --nonce 0 is a nonce
            given = mine is not None and mine is not False
            setattr(out, name, mine if given else getattr(base, name))
        return out


@record
class Settings:
    """Resolved configuration for one command run. Secrets are excluded from repr."""

    rpc_url: Optional[str] = field(default=None, repr=False)  # may hold an API key
    contract: Optional[str] = None
    chain_id: Optional[int] = None
    network: Optional[str] = None
    router: Optional[str] = None
    token: Optional[str] = None
    model: str = DEFAULT_MODEL
    # the models `dtnsess models` lists when no devnet knows them (a preset's list)
    models: list = field(default_factory=list)
    ipfs_gateway: Optional[str] = None  # DTNSESS_IPFS_GATEWAY, or the devnet's own
    private_key: Optional[str] = field(default=None, repr=False)
    keystore: Optional[str] = None
    account: Optional[str] = None
    password_file: Optional[str] = None
    # which key to use: "private_key" | "keystore" | None
    key_kind: Optional[str] = None
    # True when the key is the devnet's well-known dev account (say so in `config show`)
    devnet_key: bool = False
    devnet_file: Optional[str] = None
    sources: dict[str, str] = field(default_factory=dict)
    # output / behaviour flags
    json: bool = False
    yes: bool = False
    dry_run: bool = False
    debug: bool = False
    # fixed for every transaction a write sends (None: chosen as usual): see chain.fees
    nonce: Optional[int] = None
    gas_limit: Optional[int] = None
    priority_fee: Optional[int] = None  # wei
    max_fee: Optional[int] = None  # wei
    # --unlocked: the node holds the key of ``from_address`` and signs (eth_sendTransaction)
    unlocked: bool = False
    from_address: Optional[str] = None

    def require_rpc(self) -> str:
        if not self.rpc_url:
            raise ConfigError(
                "no RPC URL configured",
                hint="pass --rpc-url, set DTNSESS_RPC_URL (or ETH_RPC_URL), use --network, "
                "or start a local chain with `dtnsess devnet up`",
            )
        return self.rpc_url

    def require_contract(self) -> str:
        if not self.contract:
            raise ConfigError(
                "no AdvancedSessionManager address configured",
                hint="pass --contract or set DTNSESS_CONTRACT (`dtnsess deploy --write-env` "
                "writes it to .env)",
            )
        return self.contract

    def require_key(self) -> None:
        if not self.key_kind:
            raise ConfigError(
                "no signing key configured",
                hint="set DTNSESS_PRIVATE_KEY in the environment or .env, or use "
                "--account NAME / --keystore PATH (Foundry keystore)",
            )

    def show(self) -> list[dict[str, str]]:
        """Rows for `config show`: name, value (secrets redacted), source."""
        rows = []

        def add(name: str, value: Any, key: str) -> None:
            rows.append({
                "name": name,
                "value": "" if value is None else str(value),
                "source": self.sources.get(key, "") if value is not None else "",
            })

        add("rpc_url", redact_url(self.rpc_url) if self.rpc_url else None, "rpc_url")
        add("chain_id", self.chain_id, "chain_id")
        add("network", self.network, "network")
        add("contract", self.contract, "contract")
        add("router", self.router, "router")
        add("model", self.model, "model")
        add("ipfs_gateway", self.ipfs_gateway, "ipfs_gateway")
        if self.key_kind == "private_key":
            label = "private key (redacted)"
            if self.devnet_key:
                label = "devnet dev account key (redacted; dev chain only)"
            add("key", label, "private_key")
        elif self.key_kind == "keystore":
            add("key", f"keystore {self.keystore}", "keystore")
            if self.password_file:  # never its value: it may be a password given by mistake
                add("password_file", "(set; not shown)", "password_file")
        else:
            add("key", None, "private_key")
        if self.devnet_file:
            rows.append({"name": "devnet_state", "value": self.devnet_file, "source": DEVNET})
        return rows


def _read_devnet(path: str) -> Optional[dict]:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read devnet state {path}: {exc}",
                          hint="run `dtnsess devnet up` again, or delete the file") from None
    return data if isinstance(data, dict) else None


def _parse_count(value: Any, key: str, source: str) -> int:
    """A nonce or a gas limit: a non-negative integer (decimal or 0x-hex); InputError if not."""
    try:
        n = int(str(value).strip(), 0)
    except ValueError:
        n = -1
    if n < 0 or (key == "gas_limit" and n == 0):
        raise InputError(f"{key.replace('_', ' ')} (from {source})", str(value)[:40],
                         "expected a whole number" + (" above 0" if key == "gas_limit" else ""))
    return n


def _parse_chain_id(value: Any, source: str) -> int:
    try:
        cid = int(str(value).strip(), 0)
    except ValueError:
        cid = None
    if cid is None or cid <= 0:
        shown = str(value) if len(str(value)) <= 40 else str(value)[:37] + "..."
        raise ConfigError(f"invalid chain id {shown!r} (from {source}): "
                          + ("not an integer" if cid is None else "must be positive"),
                          hint="e.g. DTNSESS_CHAIN_ID=8453 (Base) or 31337 (a devnet)")
    return cid


def warn(message: str) -> None:
    """One ``warning:`` line on stderr (configuration is read before any renderer exists)."""
    import sys

    sys.stderr.write(f"warning: {message}\n")
    sys.stderr.flush()


# .env keys whose value is a secret (a URL only when it carries credentials or a key)
_SECRET_KEYS = ("DTNSESS_PRIVATE_KEY",)
_URL_KEYS = ("DTNSESS_RPC_URL", "ETH_RPC_URL")


def warn_if_exposed(path: StrPath, what: str) -> None:
    """Warn (once per run and file) when ``path``, which holds a secret, is readable by group
    or others."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if os.name == "posix" and mode & (stat.S_IRGRP | stat.S_IROTH):
        key = os.path.realpath(path)
        if key in _WARNED:
            return
        _WARNED.add(key)
        warn(f"{path} holds {what} and is readable by other users (mode "
             f"{stat.S_IMODE(mode):03o}); run `chmod 600 {path}`")


_WARNED: set = set()


def read_dotenv(path: StrPath) -> dict:
    """``KEY=VALUE`` pairs of a .env file ({} when there is none). A line that is not one is
    ignored with a warning naming the file and line (never its content: it may be a secret)."""
    if not os.path.isfile(path):
        return {}
    import io
    import logging

    from dotenv import dotenv_values  # small; only parsed when a .env exists
    from dotenv.parser import parse_stream

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (bad byte at offset {exc.start})",
                          hint="save it as UTF-8, or remove it") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    for b in parse_stream(io.StringIO(text)):
        if b.error:
            warn(f"{path} line {b.original.line}: not KEY=VALUE; ignored")
    # NOTE: python-dotenv warns about the same lines through logging, without the file name
    log = logging.getLogger("dotenv.main")
    was = log.disabled
    log.disabled = True
    try:
        values = dict(dotenv_values(stream=io.StringIO(text)))
    finally:
        log.disabled = was
    if any(values.get(k) for k in _SECRET_KEYS) or any(
            values.get(k) and redact_url(values[k]) != values[k] for k in _URL_KEYS):
        warn_if_exposed(path, "a secret")
    return values


def check_address(value: str, what: str = "address") -> str:
    """Validate an address's shape (0x + 40 hex digits); checksum is checked by the client."""
    v = (value or "").strip()
    if not re.match(_ADDR_RE, v):
        raise InputError(what, value, "not a 0x-prefixed 20-byte hex address")
    return v


def resolve_settings(
    opts: Optional[CliOptions] = None,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[StrPath] = None,
) -> Settings:
    """Resolve settings from flags, environment, ./.env, presets and the devnet state file."""
    opts = opts or CliOptions()
    env = os.environ if env is None else env
    cwd = os.getcwd() if cwd is None else os.fspath(cwd)

    dotenv = read_dotenv(os.path.join(cwd, ".env"))

    sources: dict[str, str] = {}

    def pick(key: str, flag_value: Any, *names: str) -> Any:
        """First of: flag, env[names...], .env[names...]. Records the source."""
        if flag_value not in (None, ""):
            sources[key] = FLAG
            return flag_value
        for layer_name, layer in ((ENV, env), (DOTENV, dotenv)):
            for n in names:
                v = layer.get(n)
                if v not in (None, ""):
                    sources[key] = f"{layer_name} {n}"
                    return v
        return None

    s = Settings(json=opts.json, yes=opts.yes, dry_run=opts.dry_run, debug=opts.debug)

    s.network = pick("network", opts.network, "DTNSESS_NETWORK")
    if s.network is not None:
        s.network = str(s.network).strip().lower()
        if s.network not in PRESETS:
            raise ConfigError(f"unknown network {s.network!r}",
                              hint=f"use one of: {', '.join(sorted(PRESETS))}")
    s.rpc_url = pick("rpc_url", opts.rpc_url, "DTNSESS_RPC_URL", "ETH_RPC_URL")
    s.contract = pick("contract", opts.contract, "DTNSESS_CONTRACT")
    cid = pick("chain_id", opts.chain_id, "DTNSESS_CHAIN_ID")
    s.chain_id = _parse_chain_id(cid, sources["chain_id"]) if cid is not None else None
    model = pick("model", None, "DTNSESS_MODEL")
    s.router = pick("router", None, "DTNSESS_ROUTER")
    # NOTE: Foundry's ETH_PASSWORD is the env var of its --password-file: a path, not a password
    s.password_file = pick("password_file", opts.password_file, "DTNSESS_PASSWORD_FILE",
                           "ETH_PASSWORD")
    s.ipfs_gateway = pick("ipfs_gateway", None, "DTNSESS_IPFS_GATEWAY")
    s.unlocked = opts.unlocked
    frm = pick("from_address", opts.from_, "DTNSESS_FROM", "ETH_FROM")
    s.from_address = check_address(str(frm), f"--from (from {sources['from_address']})") \
        if frm is not None else None
    if s.unlocked and s.from_address is None:
        raise ConfigError("--unlocked needs the node-held account to send from",
                          hint="pass --from ADDRESS or set ETH_FROM (as cast does)")
    # cast's names and variables (its --gas-price is the max fee of an EIP-1559 transaction)
    for key, flag, names in (("nonce", opts.nonce, ("DTNSESS_NONCE", "ETH_NONCE")),
                             ("gas_limit", opts.gas_limit, ("DTNSESS_GAS_LIMIT", "ETH_GAS_LIMIT"))):
        v = pick(key, flag, *names)
        setattr(s, key, None if v is None else _parse_count(v, key, sources[key]))
    for key, flag, names in (
            ("priority_fee", opts.priority_gas_price,
             ("DTNSESS_PRIORITY_GAS_PRICE", "ETH_PRIORITY_GAS_PRICE")),
            ("max_fee", opts.max_fee, ("DTNSESS_MAX_FEE", "ETH_GAS_PRICE"))):
        v = pick(key, flag, *names)
        if v is not None:
            from .units import parse_eth_value

            setattr(s, key, parse_eth_value(str(v), what=f"{key.replace('_', ' ')} (from "
                                                        f"{sources[key]})"))

    # Keys: a keystore/account and a raw private key may both be configured; the one from
    # the higher-precedence layer wins (flags beat env beat .env; see the module docstring).
    keystore = pick("keystore", opts.keystore, "DTNSESS_KEYSTORE", "ETH_KEYSTORE")
    account = pick("account", opts.account, "DTNSESS_ACCOUNT", "ETH_KEYSTORE_ACCOUNT")
    private_key = pick("private_key", None, "DTNSESS_PRIVATE_KEY")

    # 4. network preset
    if s.network:
        preset = PRESETS[s.network]
        for key in ("rpc_url", "chain_id", "router"):
            if getattr(s, key) is None and preset.get(key) is not None:
                setattr(s, key, preset[key])
                sources[key] = f"{PRESET} {s.network}"
        if model is None and preset.get("model"):
            model, sources["model"] = preset["model"], f"{PRESET} {s.network}"
        s.models = list(preset.get("models") or [])

    # 5. devnet state: only when it describes the chain we are pointed at (or nothing is set),
    # so a stray state file never lends a local contract address to a remote RPC.
    state_path = env.get("DTNSESS_DEVNET_STATE") or os.path.join(cwd, DEVNET_STATE_FILE)
    state = None if s.network == "base" else _read_devnet(state_path)
    if state and (s.rpc_url is None or s.rpc_url.rstrip("/") == str(state.get("rpc_url", "")).rstrip("/")):
        s.devnet_file = state_path
        dn = f"{DEVNET} {os.path.basename(state_path)}"
        if s.rpc_url is None and state.get("rpc_url"):
            s.rpc_url, sources["rpc_url"] = state["rpc_url"], dn
        if s.chain_id is None and state.get("chain_id") is not None:
            s.chain_id, sources["chain_id"] = _parse_chain_id(state["chain_id"], dn), dn
        if s.contract is None and state.get("manager"):
            s.contract, sources["contract"] = state["manager"], dn
        if s.router is None and state.get("router"):
            s.router, sources["router"] = state["router"], dn
        if state.get("token"):
            s.token = state["token"]
        if model is None and state.get("model"):
            model, sources["model"] = state["model"], dn
        if s.ipfs_gateway is None and state.get("ipfs_gateway"):
            s.ipfs_gateway, sources["ipfs_gateway"] = state["ipfs_gateway"], dn
        if state.get("models"):
            s.models = [m["name"] if isinstance(m, dict) else str(m) for m in state["models"]]
        accounts = state.get("accounts") or []
        dev_chain = s.chain_id is None or s.chain_id in DEV_CHAIN_IDS
        if (private_key is None and keystore is None and account is None and dev_chain
                and len(accounts) > 1 and isinstance(accounts[1], dict)
                and accounts[1].get("private_key")):
            # NOTE: account 1 (not 0: the devnet deploys from 0) is a well-known Anvil key;
            # only ever used on a dev chain id, and `config show` says so.
            private_key = accounts[1]["private_key"]
            sources["private_key"] = f"{dn} accounts[1]"
            s.devnet_key = True

    s.model = model or DEFAULT_MODEL
    if "model" not in sources:
        sources["model"] = DEFAULT

    if s.contract is not None:
        s.contract = check_address(str(s.contract), "contract address")

    # keystore path from --account NAME (Foundry: ~/.foundry/keystores/NAME)
    ks_rank = _rank(sources.get("keystore")) if keystore else (99, 0)
    acct_rank = _rank(sources.get("account")) if account else (99, 0)
    pk_rank = _rank(sources.get("private_key")) if private_key else (99, 0)
    if (keystore or account) and min(ks_rank, acct_rank) <= pk_rank:
        s.key_kind = "keystore"
        if keystore and ks_rank <= acct_rank:
            s.keystore = os.path.expanduser(str(keystore))
        else:
            s.account = str(account)
            if "/" in s.account or s.account.startswith("."):
                raise InputError("account name", s.account,
                                 "a Foundry keystore name, not a path (use --keystore PATH)")
            home = env.get("FOUNDRY_DIR") or os.path.join(os.path.expanduser("~"), ".foundry")
            s.keystore = os.path.join(home, "keystores", s.account)
            sources["keystore"] = sources.get("account", FLAG)
    elif private_key:
        s.key_kind = "private_key"
        s.private_key = str(private_key).strip()
    s.sources = sources
    remember_url(s.rpc_url)
    # NOTE: the password file's name too: a password given where its file is expected must
    # not come back in an error, a --json document or a --debug traceback
    remember_secret(s.private_key, s.password_file)
    return s


def _rank(source: Optional[str]) -> tuple:
    """(layer, 1 for a Foundry alias such as ETH_KEYSTORE else 0): lower wins."""
    if not source:
        return (99, 0)
    layer, _, name = source.partition(" ")
    return (_RANK.get(layer, 98), 1 if name.startswith("ETH_") else 0)


def write_env_value(path: Path, key: str, value: str) -> None:
    """Set ``key=value`` in a .env file, replacing an existing assignment, keeping the rest."""
    lines: list[str] = []
    if path.is_file():
        lines = path.read_text().splitlines()
    pat = re.compile(rf"^\s*(export\s+)?{re.escape(key)}\s*=")
    out, done = [], False
    for ln in lines:
        if pat.match(ln):
            if not done:
                out.append(f"{key}={value}")
                done = True
            continue
        out.append(ln)
    if not done:
        out.append(f"{key}={value}")
    path.write_text("\n".join(out) + "\n")
