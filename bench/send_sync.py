"""One write, with and without eth_sendRawTransactionSync (EIP-7966), side by side.

    .venv/bin/python bench/send_sync.py [--runs 21] [--delay-ms 50]

A fresh Anvil (automine) on 127.0.0.1 behind bench/latency_proxy.py (+``--delay-ms`` per HTTP
request, like a remote RPC). The chain layer's ``send_and_wait`` sends a 1-wei transfer from
Anvil dev account 1 (a public test key, never printed) to account 2, alternately:
- ``plain``: the node treated as lacking the sync method (``TxContext.sync_send = False``): the
  batch, ``eth_sendRawTransaction``, then the receipt poll;
- ``sync``: the batch, then ``eth_sendRawTransactionSync``, whose reply is the receipt.
In process and without the CLI, so the CPU noise of a Python start-up (large on a shared
machine) is not in it: what is measured is the send and its receipt. Printed: median wall time
per write (min–max), round trips each (counted by the proxy), and the ratio sync / plain.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Optional

from _common import anvil, header, median, spread
from latency_proxy import LatencyProxy


@dataclass(frozen=True)
class Transfer:
    """What send_and_wait takes (``chain.context._call_parts``): a plain value transfer."""

    to: str
    data: str = "0x"
    function: Optional[Any] = None


class QuietUi:
    def info(self, message: str) -> None:
        print(f"  ({message})")

    @contextlib.contextmanager
    def status(self, message: str):
        yield None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--delay-ms", type=float, default=50.0)
    args = ap.parse_args(argv)

    from dtnsess_cli.chain import send
    from dtnsess_cli.chain.abi import ErrorDecoder
    from dtnsess_cli.chain.jsonrpc import JsonRpc
    from dtnsess_cli.chain.signing import LocalSigner
    from dtnsess_cli.devnet.anvil import dev_private_keys

    print(header("send_sync.py"))
    keys = dev_private_keys(3)
    signer = LocalSigner.from_key(keys[1])
    to = LocalSigner.from_key(keys[2]).address
    times: dict = {"plain": [], "sync": []}
    trips: dict = {"plain": [], "sync": []}
    with anvil() as node, LatencyProxy(node.url, args.delay_ms) as proxy:
        rpc = JsonRpc(proxy.url)
        ctx = send.TxContext(rpc=rpc, account=signer, chain_id=31337, ui=QuietUi(),
                             errors=ErrorDecoder())
        for i in range(2 * args.runs + 2):
            mode = ("plain", "sync")[(i + i // 2) % 2]  # plain, sync, sync, plain, ...
            ctx.sync_send = mode == "sync"
            proxy.take()
            start = time.perf_counter()
            send.send_and_wait(ctx, Transfer(to), value=1, description="transfer",
                               confirm=False)
            took = time.perf_counter() - start
            n = proxy.take().round_trips
            if i >= 2:  # the first of each: connection set-up, not the steady state
                times[mode].append(took)
                trips[mode].append(n)
    print(f"\n{args.runs} writes each, alternating, +{args.delay_ms:g} ms per round trip; "
          f"medians (min–max)")
    print(f"{'mode':8}{'wall s':>10}{'trips':>7}   noise")
    for mode in ("plain", "sync"):
        print(f"{mode:8}{median(times[mode]):10.3f}{median(trips[mode]):7.0f}   "
              f"{spread(times[mode])}")
    ratio = median(times["sync"]) / median(times["plain"])
    saved = median(times["plain"]) - median(times["sync"])
    print(f"\nsync / plain = {ratio:.2f} ({saved * 1000:.0f} ms less per write)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
