"""Load the signing key: a raw private key from env/.env, or a Foundry-compatible keystore.

A key is never a command-line argument, never printed, never part of an error message,
log line or JSON document. Callers get a ``chain.signing.LocalSigner`` (``.address``,
``.sign_transaction``; the shape of eth-account's ``LocalAccount``, without its start-up cost).
"""

from __future__ import annotations

import sys

from .config import Settings, warn_if_exposed
from .errors import ConfigError, KeystoreError

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Callable, Optional

    from .chain.signing import LocalSigner


def _from_private_key(raw: str, source: str) -> "LocalSigner":
    from .chain.errors import InvalidKeyError
    from .chain.signing import LocalSigner

    key = raw.strip()
    if key.startswith(("0x", "0X")):
        key = key[2:]
    if len(key) != 64:
        # NOTE: say nothing about the value itself, not even its length.
        raise ConfigError(f"the private key from {source} is not 32 bytes of hex",
                          hint="DTNSESS_PRIVATE_KEY must be 0x followed by 64 hex digits")
    try:
        int(key, 16)
    except (ValueError, TypeError):
        raise ConfigError(f"the private key from {source} is not valid hex",
                          hint="DTNSESS_PRIVATE_KEY must be 0x followed by 64 hex digits") from None
    try:
        return LocalSigner("0x" + key)
    except (InvalidKeyError, ValueError):  # zero, or not below the curve order
        raise ConfigError(f"the private key from {source} is not a valid secp256k1 key") from None


def _read_password(settings: Settings, path: str,
                   prompt: Optional[Callable[[str], str]]) -> str:
    from pathlib import Path  # NOTE: keystores only (~2.5 ms of import every write otherwise)

    if settings.password_file:
        pw_path = Path(settings.password_file).expanduser()
        try:
            # Foundry's --password-file semantics: the file's content minus the trailing newline
            password = pw_path.read_text().rstrip("\r\n")
            warn_if_exposed(pw_path, "a keystore password")
            return password
        except OSError as exc:
            # NOTE: never the value: it is often the password itself, given where its file is
            # expected (Foundry's ETH_PASSWORD names a file)
            src = settings.sources.get("password_file", "--password-file")
            raise KeystoreError(path, f"cannot read the password file that {src} names "
                                      f"({exc.strerror})",
                                hint=f"{src} names a file holding the password, never the "
                                     f"password itself", config=True) from None
    if prompt is not None:
        return prompt(f"Password for keystore {Path(path).name}")
    if sys.stdin.isatty() and sys.stderr.isatty():
        import typer

        return typer.prompt(f"Password for keystore {Path(path).name}", hide_input=True,
                            err=True)
    raise KeystoreError(path, "a password is needed but stdin is not a terminal",
                        hint="pass --password-file PATH (or set DTNSESS_PASSWORD_FILE or "
                             "ETH_PASSWORD to it): a file holding the password",
                        config=True)


def load_account(settings: Settings, *,
                 prompt: Optional[Callable[[str], str]] = None) -> "LocalSigner":
    """The signing account for ``settings``; ConfigError when none is configured."""
    settings.require_key()
    if settings.key_kind == "private_key":
        src = settings.sources.get("private_key", "configuration")
        return _from_private_key(settings.private_key or "", src)

    path = settings.keystore or ""
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        hint = None
        if settings.account:
            hint = f"create it with `cast wallet import {settings.account} --interactive`"
        raise KeystoreError(path, "file not found", hint=hint, config=True) from None
    except IsADirectoryError:  # Foundry's --keystore/ETH_KEYSTORE may name a folder; not here
        raise KeystoreError(path, "is a directory, not a keystore file",
                            hint="name the file (--keystore DIR/NAME), or use --account NAME "
                                 "for ~/.foundry/keystores/NAME", config=True) from None
    except OSError as exc:
        raise KeystoreError(path, f"cannot read: {exc.strerror}", config=True) from None
    import json

    try:
        keyfile = json.loads(text)
    except ValueError:
        raise KeystoreError(path, "not a JSON keystore file", config=True) from None
    password = _read_password(settings, path, prompt)
    from .chain import errors as chain_errors
    from .chain.signing import LocalSigner, decrypt_keystore

    try:
        key = decrypt_keystore(keyfile, password)
    except chain_errors.WrongPasswordError:
        raise KeystoreError(path, "wrong password (could not decrypt)",
                            hint="check the password file (--password-file, DTNSESS_PASSWORD_FILE, "
                                 "ETH_PASSWORD) or the password you typed") from None
    except chain_errors.KeystoreError:
        raise KeystoreError(path, "not a supported Web3 Secret Storage keystore",
                            config=True) from None
    try:
        return LocalSigner(key)
    except (chain_errors.InvalidKeyError, ValueError):
        raise KeystoreError(path, "the keystore holds an invalid key", config=True) from None
