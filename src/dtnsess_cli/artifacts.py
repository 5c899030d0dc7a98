"""Compiled contract artifacts (ABI and bytecode) bundled with the package.

The wheel carries them as ``dtnsess_cli/abi/<Contract>.json``; in a source
checkout (editable install) they live in the repository's top-level ``abi/``.
They are produced by ``python -m dtnsess_cli.compile``.

Kept light on purpose (os.path and json only; pathlib only for ``abi_dir``): the CLI
imports this on paths where start-up time matters.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

_PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__))


def abi_dir() -> Path:
    """Return the directory holding the artifacts.

    The packaged ``dtnsess_cli/abi`` wins when it exists (wheel install); else
    the repository's ``abi/`` two levels above ``src/dtnsess_cli`` (editable or
    development install).
    """
    from pathlib import Path

    return Path(_abi_path())


def _abi_path() -> str:
    """``abi_dir()`` as a str. NOTE: os.path, not pathlib, whose import cost ~2.5 ms of every
    write (issue 19)."""
    packaged = os.path.join(_PACKAGE_DIR, "abi")
    if os.path.isdir(packaged):
        return packaged
    return os.path.join(os.path.dirname(os.path.dirname(_PACKAGE_DIR)), "abi")


_HINT = "run `python -m dtnsess_cli.compile` (or `make abi`) in the source tree"


def _missing(name: str, reason: str) -> Exception:
    # NOTE: imported lazily, errors.py belongs to the CLI layer.
    try:
        from dtnsess_cli.errors import ArtifactError
    except ImportError:
        return FileNotFoundError(f"contract artifact {name!r}: {reason}; {_HINT}")
    return ArtifactError(name, reason)


@lru_cache(maxsize=None)
def load_artifact(name: str) -> dict:
    """Return the artifact of contract ``name`` (keys: abi, bytecode, ...)."""
    path = os.path.join(_abi_path(), f"{name}.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise _missing(name, f"not found at {path}") from None
    except (OSError, ValueError) as exc:
        raise _missing(name, f"unreadable ({path}: {exc})") from None


@lru_cache(maxsize=1)
def _all_abis() -> dict[str, list]:
    directory = abi_dir()
    paths = sorted(directory.glob("*.json")) if directory.is_dir() else []
    if not paths:
        raise _missing("*", f"no compiled artifacts in {directory}")
    return {p.stem: load_artifact(p.stem)["abi"] for p in paths}


def all_abis() -> dict[str, list]:
    """Return ``{contract name: abi}`` for every bundled artifact."""
    return dict(_all_abis())
