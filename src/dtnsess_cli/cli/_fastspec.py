"""GENERATED from the Typer app by `python -m dtnsess_cli.cli.fastpath`: do not edit
(tests/test_fast_path.py checks it is fresh).

name: (kind, option strings, type, required, multiple, default, min, max); kind:
arg, opt, flag, or never (given, the fast path declines)."""

ROOT = {
    'rpc_url': ('opt', ('--rpc-url',), 'str', False, False, None, None, None),
    'contract': ('opt', ('--contract',), 'str', False, False, None, None, None),
    'network': ('opt', ('--network',), 'str', False, False, None, None, None),
    'chain_id': ('opt', ('--chain-id',), 'int', False, False, None, None, None),
    'account': ('opt', ('--account',), 'str', False, False, None, None, None),
    'keystore': ('opt', ('--keystore',), 'str', False, False, None, None, None),
    'json': ('flag', ('--json',), 'bool', False, False, False, None, None),
    'yes': ('flag', ('--yes', '-y'), 'bool', False, False, False, None, None),
    'dry_run': ('flag', ('--dry-run',), 'bool', False, False, False, None, None),
    'debug': ('flag', ('--debug',), 'bool', False, False, False, None, None),
    'password_file': ('opt', ('--password-file',), 'str', False, False, None, None, None),
    'nonce': ('opt', ('--nonce',), 'int', False, False, None, 0, None),
    'gas_limit': ('opt', ('--gas-limit',), 'int', False, False, None, 1, None),
    'priority_gas_price': ('opt', ('--priority-gas-price',), 'str', False, False, None, None, None),
    'max_fee': ('opt', ('--max-fee', '--gas-price'), 'str', False, False, None, None, None),
    'unlocked': ('flag', ('--unlocked',), 'bool', False, False, False, None, None),
    'from_': ('opt', ('--from',), 'str', False, False, None, None, None),
    'version': ('never', ('--version',), 'bool', False, False, False, None, None),
    'install_completion': ('never', ('--install-completion',), 'bool', False, False, None, None, None),
    'show_completion': ('never', ('--show-completion',), 'bool', False, False, None, None, None),
}

COMMANDS = {
    'request': {
        'prompt': ('arg', ('prompt',), 'str', False, False, None, None, None),
        'file': ('never', ('--file',), 'TyperPath', False, False, None, None, None),
        'model': ('opt', ('--model',), 'str', False, False, None, None, None),
        'namespace': ('opt', ('--namespace',), 'str', False, True, None, None, None),
        'node': ('opt', ('--node',), 'str', False, True, None, None, None),
        'value': ('opt', ('--value',), 'str', False, False, '300000', None, None),
        'session': ('opt', ('--session',), 'str', False, False, None, None, None),
        'wait': ('flag', ('--wait',), 'bool', False, False, False, None, None),
        'timeout': ('opt', ('--timeout',), 'float', False, False, 300.0, None, None),
        'sessions_n': ('opt', ('--sessions',), 'int', False, False, None, None, None),
        'image': ('opt', ('--image',), 'str', False, False, None, None, None),
        'ipfs': ('flag', ('--ipfs',), 'bool', False, False, False, None, None),
        'out': ('never', ('--out',), 'TyperPath', False, False, None, None, None),
        'force': ('flag', ('--force',), 'bool', False, False, False, None, None),
    },
    'close': {
        'session': ('arg', ('session',), 'str', False, False, None, None, None),
        'all_': ('flag', ('--all',), 'bool', False, False, False, None, None),
        'cancel': ('flag', ('--cancel',), 'bool', False, False, False, None, None),
    },
    'create': {
        'amount': ('arg', ('amount',), 'str', True, False, None, None, None),
        'approve_max': ('flag', ('--approve-max',), 'bool', False, False, False, None, None),
    },
    'renew': {
        'session': ('arg', ('session',), 'str', True, False, None, None, None),
        'amount': ('arg', ('amount',), 'str', True, False, None, None, None),
        'approve_max': ('flag', ('--approve-max',), 'bool', False, False, False, None, None),
    },
    'stats': {
        'session': ('arg', ('session',), 'str', True, False, None, None, None),
    },
    'balance': {
        'user': ('opt', ('--user',), 'str', False, False, None, None, None),
    },
    'sessions': {
        'user': ('opt', ('--user',), 'str', False, False, None, None, None),
    },
    'requests': {
        'pending': ('flag', ('--pending',), 'bool', False, False, False, None, None),
        'user': ('opt', ('--user',), 'str', False, False, None, None, None),
    },
}
