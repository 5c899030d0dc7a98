#!/bin/sh
# Run every benchmark in turn with the project's venv; output goes to stdout.
#   sh bench/run_all.sh            (from the repository root; ~15 minutes on 2 cores)
# Each script starts its own Anvil on 127.0.0.1 and stops it on exit.
set -e
cd "$(dirname "$0")"
PY=../.venv/bin/python
$PY startup.py --runs 10
$PY gas.py
$PY rpc.py --rounds 3 --show-sequence
$PY batch.py
# issue 9's scenario: 100 prompts over 20 sessions vs a cast send loop on one session
$PY batch.py --n 100 --sessions 20 --delay-ms 50 --block-time 0 --modes cast,file
$PY vs_cast.py --runs 5
# issue 19, item 4: one write with and without eth_sendRawTransactionSync
$PY send_sync.py --runs 21
# issue 19: where request and close spend their local time
$PY profile_write.py
$PY keeper_gas.py
$PY callback_gas.py
# issue 18: one Python API client shared by a thread pool vs one thread vs request_batch
$PY threads.py --rounds 3
# issue 14: one cron run of dtnsess cleanup over 1,000 and 10,000 idle sessions
$PY cleanup_backlog.py --sizes 1000,10000
