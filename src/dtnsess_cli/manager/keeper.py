"""The Chainlink CRE keeper's side (keepers/cre/, contracts/keepers/CleanupReceiver.sol): deploy
and configure the receiver the workflow's reports go to, read its state, and check a workflow's
config file against the chain before ``cre workflow deploy``."""

from __future__ import annotations


from ..errors import ConfigError, DtnsessError, InputError, NoContractError, NotAuthorizedError
from .base import _writes, contract_at
from .views import WriteResult

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Optional

    from .readviews import Check

# CRE's production KeystoneForwarder and chain name per chain id (docs.chain.link/cre, "Forwarder
# Directory"; chain names are the SDK's getNetwork() names). Other chains: --forwarder.
CRE_CHAINS = {
    8453: ("ethereum-mainnet-base-1", "0xF8344CFd5c43616a4366C34E3EEE75af79a74482"),
    84532: ("ethereum-testnet-sepolia-base-1", "0xF8344CFd5c43616a4366C34E3EEE75af79a74482"),
    31337: ("anvil-devnet", None),  # the devnet: a LocalForwarder stand-in, named with --forwarder
}
# CRE's gas quota per EVM write transaction (PerWorkflow.ChainWrite.EVM.TransactionGasLimit,
# docs.chain.link/cre/service-quotas)
CRE_WRITE_GAS_QUOTA = 5_000_000
# What one report must fit in its write gas: the costliest sessions to close measured ~115k gas
# each (issue 14's worst case: 35 sessions for UPKEEP_GAS_BUDGET's 4M, tests/test_contract_upkeep.py),
# the manager's per-step reserve (a cleanup with less gas left reverts OutOfGas, so that
# eth_estimateGas stays exact), and the forwarder's and the receiver's part. A bound the gas
# cannot carry closes nothing at all (the receiver reports CleanupReverted).
WORST_GAS_PER_SESSION = 115_000
STEP_GAS_RESERVE = 200_000
REPORT_OVERHEAD_GAS = 150_000
# the receiver's largest cap: a batch that fits CRE's write quota in the worst case (40)
MAX_BATCH = (CRE_WRITE_GAS_QUOTA - REPORT_OVERHEAD_GAS - STEP_GAS_RESERVE) // WORST_GAS_PER_SESSION
ZERO_ADDRESS = "0x" + "00" * 20
IRECEIVER_INTERFACE_ID = bytes.fromhex("805f2132")  # bytes4(keccak256("onReport(bytes,bytes)"))


def workflow_name_bytes(name: str) -> bytes:
    """A workflow name as CRE's forwarder metadata carries it (bytes10): the first 10 hex
    characters of sha256(name), as ASCII. Empty: no name check."""
    import hashlib

    if not name:
        return b"\x00" * 10
    return hashlib.sha256(name.encode()).hexdigest()[:10].encode()


def parse_workflow_id(text: Optional[str]) -> bytes:
    s = (text or "").strip()
    if not s:
        return b"\x00" * 32
    h = s[2:] if s[:2].lower() == "0x" else s
    try:
        raw = bytes.fromhex(h)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise InputError("workflow id", text or "", "expected 0x followed by 64 hex digits "
                         "(`cre workflow deploy` prints it)")
    return raw


class Keeper:
    """The CleanupReceiver: deploy, configure, status, and the workflow config check."""

    def _receiver(self, address: str) -> Any:
        return contract_at(self.address_arg(address, "receiver address"), "CleanupReceiver")

    @_writes
    def deploy_receiver(self, *, forwarder: Optional[str] = None, max_batch: int = MAX_BATCH,
                        workflow_id: Optional[str] = None, workflow_owner: Optional[str] = None,
                        workflow_name: Optional[str] = None) -> WriteResult:
        """Deploy a CleanupReceiver for the configured manager (the sender owns it), and set the
        workflow identity when one is given."""
        from ..artifacts import load_artifact
        from ..chain.abi import constructor_data, to_hex
        from ..chain.send import Deploy

        manager = self.manager.address  # checked: chain id and getConfig()
        cid = self.chain_id
        if not forwarder:
            forwarder = CRE_CHAINS.get(cid, (None, None))[1]
            if forwarder is None:
                raise InputError("--forwarder", "", f"CRE has no known forwarder on chain {cid}: "
                                 "name the KeystoneForwarder (or the devnet's LocalForwarder)")
        forwarder = self.address_arg(forwarder, "forwarder address (--forwarder)")
        if not 1 <= max_batch <= MAX_BATCH:
            raise InputError("--max-batch", str(max_batch), f"must be 1 to {MAX_BATCH} (more "
                             f"does not fit CRE's {CRE_WRITE_GAS_QUOTA:,}-gas write in the worst case)")
        identity = self._identity(workflow_id, workflow_owner, workflow_name)
        code = self._raw("eth_getCode", [forwarder, "latest"], "code lookup")
        if code in (None, "", "0x"):
            raise NoContractError(forwarder, "no contract code at the forwarder address")
        art = load_artifact("CleanupReceiver")
        r = WriteResult("keeper-deploy", dry_run=self.settings.dry_run)
        res = self._send(Deploy(to_hex(constructor_data(art["abi"], art["bytecode"], manager,
                                                        forwarder, max_batch))),
                         description="deploy CleanupReceiver")
        r.txs.append(res)
        r.data.update({"receiver": res.contract_address, "manager": manager,
                       "forwarder": forwarder, "max_batch": max_batch})
        if identity is not None and res.contract_address:
            r.txs.append(self._send(contract_at(res.contract_address, "CleanupReceiver").call(
                "setWorkflow", *identity), description="set the workflow identity", follows=res))
        if identity is not None:
            r.data.update(self._identity_view(identity))
        return r

    @_writes
    def configure_receiver(self, receiver: str, *, forwarder: Optional[str] = None,
                           max_batch: Optional[int] = None, workflow_id: Optional[str] = None,
                           workflow_owner: Optional[str] = None,
                           workflow_name: Optional[str] = None) -> WriteResult:
        """Owner only: change the forwarder, the batch cap or the workflow identity (the
        identity's fields not given are kept)."""
        rc = self._receiver(receiver)
        st = self.receiver_status(receiver)
        if st["owner"] != self.address:
            raise NotAuthorizedError(f"{self.address} is not the receiver's owner ({st['owner']})")
        if max_batch is not None and not 1 <= max_batch <= MAX_BATCH:
            raise InputError("--max-batch", str(max_batch), f"must be 1 to {MAX_BATCH} (more "
                             f"does not fit CRE's {CRE_WRITE_GAS_QUOTA:,}-gas write in the worst case)")
        calls = []
        if forwarder:
            calls.append(("setForwarder", (self.address_arg(forwarder, "forwarder address"),),
                          "set the forwarder"))
        if max_batch is not None:
            calls.append(("setMaxBatch", (max_batch,), "set the batch cap"))
        if any(v is not None for v in (workflow_id, workflow_owner, workflow_name)):
            identity = self._identity(
                st["workflow_id"] if workflow_id is None else workflow_id,
                st["workflow_owner"] if workflow_owner is None else workflow_owner,
                None if workflow_name is None else workflow_name,
                keep_name=st["workflow_name_bytes"] if workflow_name is None else None)
            calls.append(("setWorkflow", identity, "set the workflow identity"))
        if not calls:
            raise InputError("options", "", "nothing to change: give --forwarder, --max-batch "
                             "or a --workflow-* option")
        r = WriteResult("keeper-configure", dry_run=self.settings.dry_run)
        prev = None
        for fn, args, what in calls:
            prev = self._send(rc.call(fn, *args), description=what, follows=prev)
            r.txs.append(prev)
        r.data["receiver"] = rc.address
        return r

    def _identity(self, workflow_id: Optional[str], owner: Optional[str], name: Optional[str],
                  keep_name: Optional[bytes] = None) -> Optional[tuple]:
        if workflow_id is None and owner is None and name is None and keep_name is None:
            return None
        wid = parse_workflow_id(workflow_id)
        who = self.address_arg(owner, "workflow owner (--workflow-owner)") if owner else ZERO_ADDRESS
        label = keep_name if keep_name is not None else workflow_name_bytes(name or "")
        if label != b"\x00" * 10 and who == ZERO_ADDRESS:
            raise InputError("--workflow-name", name or "", "needs --workflow-owner: names are "
                             "unique per owner only, and 40 bits long")
        if wid == b"\x00" * 32 and who == ZERO_ADDRESS:
            raise InputError("--workflow-id", workflow_id or "", "give the workflow id or its "
                             "owner (or both): a receiver without either refuses every report")
        return wid, who, label

    @staticmethod
    def _identity_view(identity: tuple) -> dict:
        wid, who, label = identity
        return {"workflow_id": "0x" + bytes(wid).hex() if any(wid) else None,
                "workflow_owner": who if who != ZERO_ADDRESS else None,
                "workflow_name_bytes": bytes(label) if any(label) else None}

    def receiver_status(self, receiver: str) -> dict:
        """The receiver's configuration and last accepted slot, and whether the manager needs a
        cleanup now (one round trip)."""
        rc = self._receiver(receiver)
        names = ["manager", "forwarder", "workflowId", "workflowOwner", "workflowName",
                 "maxBatch", "lastScheduledAt", "owner", "pendingOwner"]
        reads = [rc.call(n) for n in names] + [rc.call("supportsInterface", IRECEIVER_INTERFACE_ID)]
        try:
            vals = self._values(self._batch(reads, [f"{n}()" for n in names] + ["supportsInterface"]))
        except DtnsessError:
            code = self._raw("eth_getCode", [rc.address, "latest"], "code lookup")
            if code in (None, "", "0x"):
                raise NoContractError(rc.address, "no contract code at the receiver address") from None
            raise NoContractError(rc.address, "not a CleanupReceiver") from None
        v = dict(zip(names, vals))
        ident = self._identity_view((v["workflowId"], v["workflowOwner"], v["workflowName"]))
        return {"receiver": rc.address, "manager": v["manager"], "forwarder": v["forwarder"],
                "workflow_id": ident["workflow_id"] or "0x" + "00" * 32,
                "workflow_owner": v["workflowOwner"], "workflow_name_bytes": bytes(v["workflowName"]),
                "max_batch": int(v["maxBatch"]), "last_scheduled_at": int(v["lastScheduledAt"]),
                "owner": v["owner"], "pending_owner": v["pendingOwner"],
                "accepts_reports": any(v["workflowId"]) or v["workflowOwner"] != ZERO_ADDRESS,
                "ireceiver": bool(vals[-1])}

    def check_workflow_config(self, path: str) -> list:
        """Checks of a workflow config file (keepers/cre/cleanup/config.*.json) against the
        chain: the chain name, the manager, the receiver and its forwarder, identity and cap,
        the write gas. A failed required check fails the command."""
        from .readviews import Check

        checks: list = []
        cfg = _read_config(path)
        cid = self.chain_id
        name, forwarder = CRE_CHAINS.get(cid, (None, None))
        got = cfg.get("chainSelectorName")
        checks.append(Check("chain", got == name if name else None,
                            f"chain {cid} is {name!r} to CRE; config says {got!r}" if name
                            else f"chain {cid}: not a chain this check knows; config says {got!r}"))
        manager = self.manager.address
        cfg_mgr = _addr(self, cfg, "managerAddress")
        checks.append(Check("manager", cfg_mgr == manager,
                            f"config {cfg_mgr}, dtnsess is configured for {manager}"))
        try:
            st = self.receiver_status(_addr(self, cfg, "receiverAddress"))
        except DtnsessError as exc:
            checks.append(Check("receiver", False, exc.message, code=int(exc.exit_code)))
            return checks
        checks.append(Check("receiver", st["manager"] == manager and st["ireceiver"],
                            f"{st['receiver']} is a CleanupReceiver for {st['manager']}"))
        checks.append(Check("forwarder", st["forwarder"] == forwarder if forwarder else None,
                            f"receiver accepts {st['forwarder']}"
                            + (f"; CRE's KeystoneForwarder here is {forwarder}" if forwarder else "")))
        checks.append(Check("workflow identity", st["accepts_reports"],
                            f"id {st['workflow_id']}, owner {st['workflow_owner']}" if st["accepts_reports"]
                            else "not set: the receiver refuses every report (`dtnsess keeper "
                                 "configure --workflow-owner ... --workflow-id ...`)"))
        n = cfg.get("maxSessions")
        ok_n = isinstance(n, int) and not isinstance(n, bool) and n > 0
        checks.append(Check("max sessions", ok_n and n <= st["max_batch"] if ok_n else False,
                            f"config {n!r}, receiver caps at {st['max_batch']}"))
        gas = cfg.get("writeGasLimit")
        ok_gas = isinstance(gas, str) and gas.isdigit() and 0 < int(gas) <= CRE_WRITE_GAS_QUOTA
        checks.append(Check("write gas", ok_gas, f"config {gas!r}; CRE allows at most "
                            f"{CRE_WRITE_GAS_QUOTA:,} per write"))
        if ok_n and ok_gas:
            bound = min(n, st["max_batch"])
            need = REPORT_OVERHEAD_GAS + bound * WORST_GAS_PER_SESSION
            checks.append(Check("batch fits the gas", need <= int(gas),
                                f"{bound} sessions need up to ~{need:,} gas (worst case measured), "
                                f"the write has {int(gas):,}"))
        checks.append(Check("schedule", bool(cfg.get("schedule")), repr(cfg.get("schedule"))))
        return checks


def _read_config(path: str) -> dict:
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise InputError("config file", path, "not found") from None
    except (OSError, ValueError) as exc:
        raise InputError("config file", path, f"not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError("config file", path, "not a JSON object")
    return data


def _addr(client: Any, cfg: dict, key: str) -> str:
    value = cfg.get(key)
    if not isinstance(value, str):
        raise ConfigError(f"workflow config: {key} is missing")
    return client.address_arg(value, f"{key} in the workflow config")
