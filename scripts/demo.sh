#!/usr/bin/env bash
# The main job of dtnsess, end to end, on a local devnet, through the real `dtnsess` script:
#   devnet up -> create 50 -> request --wait -> stats -> pool add -> pool get (a second account)
#   -> request from the pooled session -> renew +25 -> close -> cleanup -> devnet down.
# The devnet is stopped on every exit (trap), also when a step fails; a failed step makes the
# script exit non-zero. It runs in its own temporary working directory, so a devnet or a .env
# of yours is not touched.
#
# Environment: DTNSESS (the dtnsess executable; default: dtnsess on PATH), PYTHON (for reading
# JSON; default python3), DEMO_PORT (default: a free port), DEMO_KEEP=1 keeps the work dir.
set -euo pipefail

DTNSESS=${DTNSESS:-dtnsess}
PYTHON=${PYTHON:-python3}
PROMPT=${DEMO_PROMPT:-"In one sentence, what does the Deep Trust Network do?"}

# Only the devnet's state may configure the commands here.
unset DTNSESS_RPC_URL ETH_RPC_URL DTNSESS_CONTRACT DTNSESS_CHAIN_ID DTNSESS_PRIVATE_KEY \
      DTNSESS_KEYSTORE DTNSESS_ACCOUNT DTNSESS_PASSWORD_FILE DTNSESS_NETWORK DTNSESS_DEVNET_STATE \
      DTNSESS_MODEL DTNSESS_ROUTER 2>/dev/null || true

command -v "$DTNSESS" >/dev/null || { echo "demo: $DTNSESS not found (run \`make install\`)" >&2; exit 1; }
PORT=${DEMO_PORT:-$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dtnsess-demo.XXXXXX")
cd "$WORK"

STEP=0
CURRENT="starting"
bold() { if [ -t 1 ]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
step() { STEP=$((STEP + 1)); CURRENT="$*"; echo; bold "== $STEP. $*"; }
NAME=${DTNSESS##*/}
show() {  # print the command as a user would type it, then run it
    local out="\$" a
    for a in "$@"; do
        [ "$a" = "$DTNSESS" ] && a=$NAME
        case "$a" in *[[:space:]\'\"\?\*]*) out+=" \"$a\"" ;; *) out+=" $a" ;; esac
    done
    printf '%s\n' "$out"
    "$@"
}

finish() {
    local code=$?
    trap - EXIT INT TERM
    if [ "$code" -ne 0 ]; then
        echo >&2
        echo "demo: FAILED at step $STEP ($CURRENT), exit code $code" >&2
        if [ -f .dtnsess-devnet/responder.log ]; then
            echo "demo: last lines of the responder log:" >&2
            tail -n 5 .dtnsess-devnet/responder.log >&2 || true
        fi
    fi
    echo
    bold "== devnet down"
    "$DTNSESS" devnet down || { [ "$code" -ne 0 ] || code=1; }
    cd /
    if [ "${DEMO_KEEP:-0}" = 1 ] || [ "$code" -ne 0 ]; then
        echo "demo: work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    [ "$code" -eq 0 ] && bold "demo: all steps passed"
    exit "$code"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

json_field() {  # json_field KEY [KEY...] < document: print doc[KEY][KEY]...
    "$PYTHON" -c 'import json, sys
d = json.load(sys.stdin)
for k in sys.argv[1:]:
    d = d[int(k)] if isinstance(d, list) else d[k]
print(d)' "$@"
}

step "start a local devnet (Anvil + token + DTN router + session manager + responder)"
show "$DTNSESS" devnet up --port "$PORT"

step "create a session funded with 50 USDT (account 1, the devnet's default key)"
echo "\$ $NAME create 50 --yes --json"
CREATED=$("$DTNSESS" create 50 --yes --json)
SESSION=$(printf '%s' "$CREATED" | json_field session_id)
echo "session $SESSION created"

step "ask the AI and wait for the answer"
show "$DTNSESS" request "$PROMPT" --wait --yes

step "session statistics"
show "$DTNSESS" stats "$SESSION"

step "offer the session in the shared pool"
show "$DTNSESS" pool add "$SESSION" --yes
show "$DTNSESS" pool status

step "take it from the pool as another user (account 2) and ask through it"
# NOTE: a well-known Anvil test key, read from the state file and exported only to these two
# commands; never echoed.
KEY2=$(json_field accounts 2 private_key < .dtnsess-devnet.json)
echo "\$ DTNSESS_PRIVATE_KEY=<account 2> $NAME pool get --yes"
DTNSESS_PRIVATE_KEY=$KEY2 "$DTNSESS" pool get --yes
echo "\$ DTNSESS_PRIVATE_KEY=<account 2> $NAME request \"Who pays for this answer?\" --wait --yes"
DTNSESS_PRIVATE_KEY=$KEY2 "$DTNSESS" request "Who pays for this answer?" --wait --yes
unset KEY2

step "add 25 USDT to the session (its id stays the same)"
show "$DTNSESS" renew "$SESSION" 25 --yes

step "close the session: the refund comes back to the owner"
show "$DTNSESS" close "$SESSION" --yes

step "cleanup of idle sessions (what cron runs)"
show "$DTNSESS" cleanup
