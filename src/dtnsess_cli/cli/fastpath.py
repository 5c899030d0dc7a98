"""The hot commands' start-up path without Typer (issue 19, item 4).

``import typer`` and building the app cost ~0.1-0.2 s of every run, more than the work of a
``close 1 --yes`` itself. ``run`` parses the command line of a hot command (``FAST``) with the
spec in ``_fastspec.py``, generated from the Typer app (``python -m dtnsess_cli.cli.fastpath``;
a test checks it is fresh), and runs the same body (``bodies.py``) the Typer command runs.

The parser is a strict subset of Click's: on any doubt it declines (returns None) before
anything is read, signed or journaled, and the Typer path runs, with Click's own help, errors
and completion. It declines on help, --version, ``--``, a completion run, a token that starts
with ``-`` and is not exactly a known option (negative numbers, bundled short flags), an
option given twice, a missing or surplus argument, a value that does not convert by the
simplest rule (int: digits; float: a plain decimal) or is out of range, and any parameter the
spec cannot parse (a path, a callback).
"""

from __future__ import annotations

import os
import sys

# NOTE: typing costs ~20 ms of import; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

# the commands of the fast path: command name -> its body in bodies.py
FAST = {"request": "request", "close": "close", "create": "create", "renew": "renew",
        "stats": "stats", "balance": "balance", "sessions": "sessions",
        "requests": "requests_"}


def run(args: list) -> Optional[int]:
    """Run ``dtnsess ARGS`` when it is a hot command this parser is sure of: its exit code;
    None when it declines (nothing ran)."""
    try:
        parsed = parse(args)
    except Exception:  # noqa: BLE001 - nothing has run yet: Click parses it, with its own errors
        return None
    if parsed is None:
        return None
    name, kwargs, g, intent = parsed
    from .run import (Exit, UsageError, debug_enabled, error_handler, invoke, report_aborted,
                      report_usage)

    try:
        # NOTE: the handler also around the import (a Ctrl-C while it loads), as main's is
        with error_handler(debug_enabled(g), g.json):
            from . import bodies

            rc = invoke(getattr(bodies, FAST[name]), kwargs, g, intent)
    except Exit as exc:
        return exc.code
    except UsageError as exc:
        return report_usage(exc.message, f"dtnsess {name}", g.json)
    except Exception as exc:
        # a prompt (typer's, imported when it asks) answered with Ctrl-C or end of input
        if type(exc).__name__ != "Abort":
            raise
        return report_aborted(g.json)
    return int(rc) if isinstance(rc, int) else 0


def parse(args: list, environ: Optional[dict] = None) -> Optional[tuple]:
    """``(command, kwargs for its body, g: CliOptions, the journal's intent)``, or None."""
    from ._fastspec import COMMANDS, ROOT

    env = os.environ if environ is None else environ
    if any(k.startswith("_") and "COMPLETE" in k for k in env):  # shell completion: Click's
        return None
    given: dict = {}  # parameter name -> value: the global options before and after the command
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i = _option(args, i, ROOT, given)
        if i is None:
            return None
    if i >= len(args) or args[i] not in FAST:
        return None
    name = args[i]
    spec = COMMANDS[name]
    after = {**ROOT, **spec}  # after its name, a command takes the global options too
    positional = []
    i += 1
    while i < len(args):
        if args[i].startswith("-"):
            i = _option(args, i, after, given)
            if i is None:
                return None
        else:
            positional.append(args[i])
            i += 1
    own: dict = {}  # Click's values of the command's own parameters
    for pname, (kind, opts, typ, required, multiple, default, lo, hi) in spec.items():
        if kind == "arg":
            if positional:
                v = _convert(positional.pop(0), typ, lo, hi)
                if v is None:
                    return None
                own[pname] = v
            elif required:
                return None
            else:
                own[pname] = default
        elif pname in given:
            own[pname] = given[pname]
        elif required:
            return None
        else:
            own[pname] = () if multiple and default is None else default
    if positional:  # surplus arguments
        return None
    from ..config import CliOptions
    from .run import intent_argv

    g = CliOptions(**{n: given.get(n, ROOT[n][5]) for n in ROOT if ROOT[n][0] != "never"})
    intent = intent_argv(f"dtnsess {name}", [(spec[n][0] == "arg", spec[n][1][0], spec[n][5], v)
                                              for n, v in own.items()])
    # as Typer hands them to the command: a repeatable option is a list, None when not given
    # (and its default is None)
    kwargs = {n: _typer_list(v, spec[n][5]) if spec[n][4] else v for n, v in own.items()}
    return name, kwargs, g, intent


def _typer_list(values: tuple, default: Any) -> Optional[list]:
    return None if default is None and not values else list(values)


def _option(args: list, i: int, spec: dict, given: dict) -> Optional[int]:
    """Take the option at ``args[i]`` into ``given``: the index after it, or None (decline)."""
    token = args[i]
    value = None
    if token.startswith("--") and "=" in token:
        token, value = token.split("=", 1)
    for pname, (kind, opts, typ, required, multiple, default, lo, hi) in spec.items():
        if kind != "arg" and token in opts:
            break
    else:
        return None
    if kind == "never" or (pname in given and not multiple):
        return None
    if kind == "flag":
        if value is not None:
            return None
        converted: Any = True
    else:
        if value is None:
            if i + 1 >= len(args):
                return None
            i += 1
            value = args[i]
        converted = _convert(value, typ, lo, hi)
        if converted is None:
            return None
    given[pname] = given.get(pname, ()) + (converted,) if multiple else converted
    return i + 1


def _convert(value: str, typ: str, lo: Optional[int], hi: Optional[int]) -> Any:
    """A value by the simplest rule, or None (decline): Click takes more forms (``+5``, ``1e3``,
    ``nan``, other scripts' digits), and those go to Click."""
    if value.startswith("-"):
        return None
    if typ == "str":
        return value
    if not value.isascii():
        return None
    if typ == "int":
        # NOTE: int() refuses a str of over 4,300 digits (ValueError); Click says which option
        if not value.isdigit() or len(value) > 80:
            return None
        n = int(value)
        return n if (lo is None or n >= lo) and (hi is None or n <= hi) else None
    if typ == "float":
        whole, _, frac = value.partition(".")
        if not (whole + frac).isdigit() or not (whole + frac).isascii():
            return None
        return float(value) if lo is None and hi is None else None
    return None


# ------------------------------------------------------------------- the spec, from the app

def spec_text() -> str:
    """The text of ``_fastspec.py``: each fast command's parameters as Click (the command
    Typer builds) declares them, and the root's options (the global ones before a command)."""
    import typer.main

    from . import _typer

    group = typer.main.get_command(_typer().app)
    out = ['"""GENERATED from the Typer app by `python -m dtnsess_cli.cli.fastpath`: do not edit',
           "(tests/test_fast_path.py checks it is fresh).",
           "",
           "name: (kind, option strings, type, required, multiple, default, min, max); kind:",
           'arg, opt, flag, or never (given, the fast path declines)."""',
           "", "ROOT = {"]
    out += [_spec_line(p, root=True) for p in group.params]
    root_names = {p.name for p in group.params}
    out += ["}", "", "COMMANDS = {"]
    for name in FAST:
        out.append(f"    {name!r}: {{")
        # NOTE: its global options are ROOT's (one declaration, `root._GLOBALS`)
        out += ["    " + _spec_line(p) for p in group.commands[name].params
                if p.name not in root_names]
        out.append("    },")
    out.append("}")
    return "\n".join(out) + "\n"


_TYPES = {"StringParamType": "str", "IntParamType": "int", "IntRange": "int",
          "FloatParamType": "float", "FloatRange": "float", "BoolParamType": "bool"}


def _spec_line(p: Any, root: bool = False) -> str:
    typ = _TYPES.get(type(p.type).__name__, type(p.type).__name__)
    bounds = vars(p.type)
    lo, hi = bounds.get("min"), bounds.get("max")
    if p.envvar or callable(p.default) or getattr(p, "prompt", None) or (
            p.callback and not root) or not isinstance(p.default, (type(None), str, int, float)):
        # NOTE: these act even when the option is not given: no declining can cover them
        raise ValueError(f"the fast path cannot parse {p.name} ({p.opts}): take its command "
                         f"out of FAST or teach the parser")
    if p.param_type_name == "argument":
        if p.nargs != 1 or typ not in ("str", "int", "float"):
            raise ValueError(f"the fast path cannot parse the argument {p.name}")
        kind = "arg"
    elif getattr(p, "is_flag", False):
        kind = "flag" if getattr(p, "is_bool_flag", False) and not p.secondary_opts else "never"
    else:
        kind = "opt" if typ in ("str", "int", "float") else "never"
    if (p.callback or p.is_eager or not p.expose_value or getattr(p, "count", False)
            or (p.nargs != 1) or bounds.get("clamp") or bounds.get("min_open")
            or bounds.get("max_open")):
        kind = "never"
    return (f"    {p.name!r}: ({kind!r}, {tuple(p.opts)!r}, {typ!r}, {bool(p.required)!r}, "
            f"{bool(p.multiple)!r}, {p.default!r}, {lo!r}, {hi!r}),")


if __name__ == "__main__":
    from pathlib import Path

    target = Path(__file__).with_name("_fastspec.py")
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if target.read_text() == spec_text() else "stale: python -m dtnsess_cli.cli.fastpath")
    target.write_text(spec_text())
