"""Exact token and ETH amounts: text <-> integer base units. No float anywhere.

NOTE: integer arithmetic on the digits, not ``decimal``: its import cost ~2 ms of every command
(issue 19). A ``Decimal`` given is taken all the same (``is_decimal``).
"""

from __future__ import annotations

import re
import sys

from .errors import InputError
from .record import record

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from decimal import Decimal
    from typing import Any, Union

__all__ = ["Amount", "MAX_UINT256", "parse_amount", "format_amount", "parse_eth_value",
           "format_eth", "format_gwei", "parse_gwei"]

# NOTE: patterns are strings, compiled by re's cache when first used, not at start-up
# A plain decimal number: digits, optional fraction. No sign, no exponent, no spaces,
# no underscores, no "inf"/"nan". A leading "." (".5") and trailing "." ("5.") are allowed.
_DECIMAL_RE = r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$"

MAX_UINT256 = 2**256 - 1

_ETH_UNITS = {
    "wei": 0,
    "gwei": 9,
    "ether": 18,
    "eth": 18,
}


def is_decimal(value: Any) -> bool:
    """Is ``value`` a ``decimal.Decimal``? (A program that made one has imported decimal.)"""
    dec = sys.modules.get("decimal")
    return dec is not None and isinstance(value, dec.Decimal)


def _plain_number(text: str, what: str) -> str:
    """``text`` stripped, when it is a plain decimal number (``_DECIMAL_RE``)."""
    if not isinstance(text, str):
        text = str(text)
    s = text.strip()
    if not s:
        raise InputError(what, text, "empty")
    if s.startswith("-"):
        raise InputError(what, text, "must not be negative")
    if not re.match(_DECIMAL_RE, s):
        raise InputError(
            what, text, "not a plain decimal number (e.g. 50 or 12.5; no exponents, signs or units)"
        )
    return s


def _scale(num: str, decimals: int, text: str, what: str) -> int:
    """``num`` (``_DECIMAL_RE``, or ``_SCI_RE`` with an exponent) times 10**decimals, exactly:
    its digits shifted by the exponent, the fraction's length and ``decimals``; InputError when
    the result is not whole; above uint256 (the caller says "too large") when it has more digits
    than uint256 can hold.

    NOTE: decided on the digits as text before any int(): int() refuses a str of over 4,300
    digits (ValueError), so a hostile amount of thousands of digits would escape as an internal
    error instead of this one line.
    """
    mantissa, _, exp = num.partition("e")
    whole, _, frac = mantissa.partition(".")
    frac = frac.rstrip("0")
    digits = (whole + frac).lstrip("0")
    if not digits:  # zero, whatever its exponent ("0e79" is 0, not too large)
        return 0
    shift = decimals + int(exp or 0) - len(frac)
    if shift < 0:
        digits, cut = digits[:shift], digits[shift:]
        if cut.strip("0"):
            raise InputError(
                what,
                text,
                f"more than {decimals} fractional digit{'s' if decimals != 1 else ''}"
                + (" (the token has no fractional part)" if decimals == 0 else ""),
            )
        shift = 0
    if len(digits) + shift > len(str(MAX_UINT256)):
        return MAX_UINT256 + 1
    return int(digits or "0") * 10**shift


FLOAT_REFUSED = ("a float is not exact: give a str in whole tokens ('12.5'), a Decimal, or an "
                 "int in base units")


def exact(value: Any, what: str) -> Any:
    """``value`` unless it is a float or a bool, which no amount may be: ``20.5`` happens to be
    exact, ``0.1 + 10.2`` is not, so none is taken (one message for every amount)."""
    if isinstance(value, (float, bool)):
        raise InputError(what, value, FLOAT_REFUSED if isinstance(value, float)
                         else "a bool is not an amount")
    return value


def parse_amount(text: Union[str, int, Decimal, "Amount"], decimals: int, *,
                 allow_zero: bool = False, what: str = "amount") -> int:
    """A token amount in base units for a token with ``decimals``: a str or a Decimal in whole
    tokens (``"12.5"``), an int already in base units, an ``Amount`` of this token.

    Rejects floats, negative, zero (unless ``allow_zero``), NaN/inf, exponents, garbage, more
    fractional digits than the token has, and values above uint256.
    """
    if not isinstance(decimals, int) or decimals < 0 or decimals > 77:
        raise InputError("token decimals", decimals, "must be an integer between 0 and 77")
    exact(text, what)
    if isinstance(text, Amount):
        if text.decimals != decimals:
            raise InputError(what, text.human(), f"an amount of {text.decimals} decimals for a "
                             f"token of {decimals}")
        text = text.units
    if isinstance(text, int):
        units = text
        if units < 0:
            raise InputError(what, str(text), "must not be negative")
    else:
        if is_decimal(text):
            # NOTE: 'f' keeps every digit (no exponent); NaN/inf and signs fail the regex
            text = format(text, "f")
        units = _scale(_plain_number(text, what), decimals, text, what)
    if units == 0 and not allow_zero:
        raise InputError(what, text, "must be greater than zero")
    if units > MAX_UINT256:
        raise InputError(what, text, "too large (above uint256)")
    return units


def format_amount(units: int, decimals: int, *, group: bool = False) -> str:
    """Exact decimal string for ``units`` base units: ``format_amount(12500000, 6) == "12.5"``."""
    units = int(units)
    neg = units < 0
    units = -units if neg else units
    if decimals == 0:
        whole, frac = units, ""
    else:
        whole, rem = divmod(units, 10**decimals)
        frac = str(rem).rjust(decimals, "0").rstrip("0")
    w = f"{whole:,}" if group else str(whole)
    out = w + ("." + frac if frac else "")
    return ("-" + out) if neg else out


# cast-style numbers for ETH values: an exponent is fine ("1e5", "2.5e5wei")
_SCI_RE = r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)e[+-]?[0-9]{1,3}$"
_HEX_RE = r"^0x[0-9a-f]{1,64}$"


def parse_eth_value(text: str, *, default_unit: str = "wei", what: str = "value",
                    allow_zero: bool = True) -> int:
    """Parse an ETH value with an optional unit suffix into wei, as Foundry's cast does.

    ``"300000"`` (wei by default), ``"300000wei"``, ``"1gwei"``, ``"0.0001ether"``,
    ``"0.0001 eth"``, ``"1e5"``, ``"3e5wei"``, and hex wei ``"0x493e0"``.
    """
    if not isinstance(text, str):
        text = str(exact(text, what))
    s = text.strip().lower()
    if re.match(_HEX_RE, s):
        if default_unit != "wei":
            raise InputError(what, text, f"a hex value is in wei; give {default_unit} in decimal")
        wei = int(s, 16)
        if wei == 0 and not allow_zero:
            raise InputError(what, text, "must be greater than zero")
        return wei
    m = re.match(r"^(.*?)\s*([a-z]+)?$", s)
    num, unit = (m.group(1), m.group(2)) if m else (s, None)
    unit = unit or default_unit
    if unit not in _ETH_UNITS:
        raise InputError(what, text, f"unknown unit {unit!r} (use wei, gwei or ether)")
    if not (num and re.match(_SCI_RE, num)):
        num = _plain_number(num, what) if num else _plain_number(text, what)
    wei = _scale(num, _ETH_UNITS[unit], text, what)
    if wei == 0 and not allow_zero:
        raise InputError(what, text, "must be greater than zero")
    if wei > MAX_UINT256:
        raise InputError(what, text, "too large")
    return wei


def format_eth(wei: int) -> str:
    """Exact ETH amount for ``wei``: ``format_eth(10**15) == "0.001"``."""
    return format_amount(wei, 18)


def format_gwei(wei: int) -> str:
    return format_amount(wei, 9)


def parse_gwei(text: str, what: str = "gas price") -> int:
    """A gas price in gwei (``"1.5"``) into wei."""
    return parse_eth_value(text, default_unit="gwei", what=what, allow_zero=False)


@record(frozen=True)
class Amount:
    """An exact token (or ETH) amount: integer base units plus the decimals to show them."""

    units: int
    decimals: int
    symbol: str = ""

    def __str__(self) -> str:
        return format_amount(self.units, self.decimals)

    def human(self) -> str:
        return f"{self}{(' ' + self.symbol) if self.symbol else ''}"
