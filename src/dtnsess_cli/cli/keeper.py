"""``dtnsess keeper ...``: the Chainlink CRE keeper's receiver (keepers/cre/ has the workflow):
deploy and configure it, show its state, check a workflow config against the chain."""

from typing import Annotated, Optional

import typer

from ..config import CliOptions
from ..errors import ExitCode
from .root import Run, app, command, fmt_when, group

keeper_app = group(help="The CRE keeper's receiver: deploy, configure, status, check.")
app.add_typer(keeper_app, name="keeper")

ForwarderOpt = Annotated[Optional[str], typer.Option(
    "--forwarder", help="CRE's KeystoneForwarder on this chain (default on Base and Base "
                        "Sepolia: CRE's), or the devnet's LocalForwarder", show_default=False)]
WorkflowIdOpt = Annotated[Optional[str], typer.Option(
    "--workflow-id", help="accept reports of this workflow id only (0x + 64 hex digits; "
                          "`cre workflow deploy` prints it)", show_default=False)]
WorkflowOwnerOpt = Annotated[Optional[str], typer.Option(
    "--workflow-owner", help="accept reports of workflows of this owner only (your CRE "
                             "account's address)", show_default=False)]
WorkflowNameOpt = Annotated[Optional[str], typer.Option(
    "--workflow-name", help="and of this workflow name (needs --workflow-owner)",
    show_default=False)]


def _identity_lines(data: dict) -> list:
    return [(k, data[key]) for k, key in (("workflow id", "workflow_id"),
                                          ("workflow owner", "workflow_owner"))
            if data.get(key)]


@command(keeper_app, "deploy")
def keeper_deploy(
    forwarder: ForwarderOpt = None,
    max_batch: Annotated[int, typer.Option(
        "--max-batch", help="most sessions one report may close (at most 40: the worst case "
                            "that fits CRE's 5,000,000-gas write)")] = 40,
    workflow_id: WorkflowIdOpt = None,
    workflow_owner: WorkflowOwnerOpt = None,
    workflow_name: WorkflowNameOpt = None,
    *, g: CliOptions,
) -> None:
    """Deploy a CleanupReceiver for the configured manager; you own it."""
    run = Run(g)
    res = run.client.deploy_receiver(forwarder=forwarder, max_batch=max_batch,
                                     workflow_id=workflow_id, workflow_owner=workflow_owner,
                                     workflow_name=workflow_name)
    d = res.data
    lines = [("manager", d["manager"]), ("forwarder", d["forwarder"]),
             ("max batch", d["max_batch"])] + _identity_lines(d)
    if not (d.get("workflow_id") or d.get("workflow_owner")):
        lines.append(("note", "it refuses every report until `dtnsess keeper configure "
                              "RECEIVER --workflow-owner ...` sets the workflow identity"))
    run.write(res, f"CleanupReceiver deployed at {d['receiver']}" if d.get("receiver")
              else "keeper deploy simulated", lines)


@command(keeper_app, "configure")
def keeper_configure(
    receiver: Annotated[str, typer.Argument(help="the CleanupReceiver's address")],
    forwarder: ForwarderOpt = None,
    max_batch: Annotated[Optional[int], typer.Option(
        "--max-batch", help="most sessions one report may close (at most 40)",
        show_default=False)] = None,
    workflow_id: WorkflowIdOpt = None,
    workflow_owner: WorkflowOwnerOpt = None,
    workflow_name: WorkflowNameOpt = None,
    *, g: CliOptions,
) -> None:
    """Owner only: change the receiver's forwarder, batch cap or workflow identity."""
    run = Run(g)
    res = run.client.configure_receiver(receiver, forwarder=forwarder, max_batch=max_batch,
                                        workflow_id=workflow_id, workflow_owner=workflow_owner,
                                        workflow_name=workflow_name)
    run.write(res, f"CleanupReceiver {res.data['receiver']} configured")


@command(keeper_app, "status")
def keeper_status(
    receiver: Annotated[str, typer.Argument(help="the CleanupReceiver's address")],
    *, g: CliOptions,
) -> None:
    """The receiver's forwarder, workflow identity, cap and last report."""
    run = Run(g)
    st = run.client.receiver_status(receiver)
    name = st["workflow_name_bytes"]
    last = st["last_scheduled_at"]
    data = {**st, "workflow_name_bytes": "0x" + name.hex()}
    run.ui.emit(data, run.ui.kv("CleanupReceiver", [
        ("address", st["receiver"]), ("manager", st["manager"]), ("forwarder", st["forwarder"]),
        ("workflow id", st["workflow_id"]), ("workflow owner", st["workflow_owner"]),
        ("workflow name (bytes10)", name.decode("ascii", "replace") if any(name) else "-"),
        ("accepts reports", "yes" if st["accepts_reports"] else "no: no workflow identity set"),
        ("max batch", st["max_batch"]),
        ("last report for", fmt_when(last) if last else "never"),
        ("owner", st["owner"]),
    ]))


@command(keeper_app, "check")
def keeper_check(
    config: Annotated[str, typer.Argument(help="the workflow's config file "
                                               "(keepers/cre/cleanup/config.*.json)")],
    *, g: CliOptions,
) -> None:
    """Check a workflow config against the chain before `cre workflow deploy` (read-only)."""
    run = Run(g)
    checks = run.client.check_workflow_config(config)
    mark = {True: "ok", False: "FAIL", None: "info"}
    ok = all(c.ok is not False for c in checks)
    run.ui.emit({"checks": checks, "ok": ok},
                run.ui.table("keeper check", ["check", "result", "detail"],
                             [(c.name, mark[c.ok], c.detail) for c in checks]))
    if not ok:
        raise typer.Exit(int(ExitCode.CONFIG))
