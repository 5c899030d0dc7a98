"""Exact amounts: parse and format without floats."""

import pytest
from hypothesis import given, strategies as st

from dtnsess_cli.errors import ExitCode, InputError
from dtnsess_cli.units import Amount, format_amount, parse_amount, parse_eth_value, parse_gwei


@pytest.mark.parametrize("text,decimals,units", [
    ("50", 6, 50_000_000), ("12.5", 6, 12_500_000), ("0.000001", 6, 1), (".5", 6, 500_000),
    ("5.", 6, 5_000_000), ("1", 18, 10**18), ("0.1", 18, 10**17), ("7", 0, 7),
    (" 3 ", 6, 3_000_000), ("0.30", 1, 3),
])
def test_parse_amount(text, decimals, units):
    assert parse_amount(text, decimals) == units


@pytest.mark.parametrize("text", ["-1", "0", "0.0", "nan", "NaN", "inf", "-inf", "1e3", "1E-2",
                                  "abc", "", "1,5", "1_000", "0x10", "+5", "1.2.3", "١٢"])
def test_parse_amount_rejects(text):
    with pytest.raises(InputError) as ei:
        parse_amount(text, 6)
    assert ei.value.exit_code == ExitCode.INPUT


def test_too_many_fraction_digits():
    with pytest.raises(InputError, match="more than 6 fractional digits"):
        parse_amount("1.0000001", 6)
    assert parse_amount("1.000000", 6) == 1_000_000  # trailing zeros are exact


def test_zero_allowed_when_asked():
    assert parse_amount("0", 6, allow_zero=True) == 0


@pytest.mark.parametrize("text", ["0e79wei", "0e999", "0.000e99 ether", "00.0e-5gwei"])
def test_zero_with_a_large_exponent_is_zero_not_too_large(text):
    """Hypothesis found it in CI: zero's digits are none, and "0e79" was taken for 80 digits."""
    assert parse_eth_value(text) == 0
    with pytest.raises(InputError, match="greater than zero"):
        parse_eth_value(text, allow_zero=False)


def test_above_uint256():
    with pytest.raises(InputError, match="too large"):
        parse_amount(str(2**256), 0)


@pytest.mark.parametrize("units,decimals,text", [
    (12_500_000, 6, "12.5"), (1, 6, "0.000001"), (0, 6, "0"), (10**18, 18, "1"),
    (123, 0, "123"), (2**256 - 1, 18, "115792089237316195423570985008687907853269984665640564039457.584007913129639935"),
])
def test_format_amount(units, decimals, text):
    assert format_amount(units, decimals) == text
    assert parse_amount(text, decimals, allow_zero=True) == units  # round trip


def test_amount_str():
    assert str(Amount(12_500_000, 6, "USDT")) == "12.5"
    assert Amount(12_500_000, 6, "USDT").human() == "12.5 USDT"


@pytest.mark.parametrize("text,wei", [
    ("300000", 300_000), ("300000wei", 300_000), ("1gwei", 10**9), ("0.0001ether", 10**14),
    ("0.0001 eth", 10**14), ("1.5GWEI", 1_500_000_000), ("0", 0),
    # cast-style: exponents and hex wei
    ("1e18", 10**18), ("1e5", 100_000), ("2.5e5wei", 250_000), ("3e-4gwei", 300_000),
    ("0x493e0", 300_000), ("0X493E0", 300_000),
])
def test_parse_eth_value(text, wei):
    assert parse_eth_value(text) == wei


@pytest.mark.parametrize("text", ["1.5wei", "1.5e0", "-1", "5 dollars", "ether", "0.1.1ether",
                                  "0x", "0xzz", "1e", "e5", "0x10gwei"])
def test_parse_eth_value_rejects(text):
    with pytest.raises(InputError):
        parse_eth_value(text)


def test_parse_gwei():
    assert parse_gwei("2.5") == 2_500_000_000
    with pytest.raises(InputError):
        parse_gwei("0")


# issue 19: amounts are parsed with integer arithmetic on their digits (no decimal import);
# decimal itself is the reference here, with precision to spare
_DIGITS = "0123456789"


def _by_decimal(num: str, decimals: int):
    from decimal import Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = 2000
        d = Decimal(num).scaleb(decimals)
        return int(d) if d == d.to_integral_value() else None


def _parsed(parse, *args):
    try:
        return parse(*args)
    except InputError:
        return None


@given(whole=st.text(_DIGITS, max_size=30), frac=st.none() | st.text(_DIGITS, max_size=30),
       exp=st.none() | st.integers(-99, 99), decimals=st.integers(0, 30))
def test_amounts_parse_as_decimal_would(whole, frac, exp, decimals):
    plain = whole + ("" if frac is None else "." + frac)
    if not plain.strip("."):
        return  # "", ".": not numbers (refused)
    want = _by_decimal(plain, decimals)
    want = None if want is None or want == 0 or want > 2**256 - 1 else want
    assert _parsed(parse_amount, plain, decimals) == want
    if exp is not None and decimals in (0, 9, 18):
        num = f"{plain}e{exp}"
        want = _by_decimal(num, decimals)
        want = None if want is None or want > 2**256 - 1 else want
        unit = {0: "wei", 9: "gwei", 18: "ether"}[decimals]
        assert _parsed(parse_eth_value, num + unit) == want, num


@pytest.mark.parametrize("text,decimals,reason", [
    ("1" * 5000, 6, "too large (above uint256)"),
    ("0." + "0" * 5000 + "1", 6, "more than 6 fractional digits"),
    ("1" * 100 + "." + "0" * 5000, 6, "too large (above uint256)"),
    ("0" * 5000 + "12.5" + "0" * 5000, 6, None),
    ("1" * 5000 + ".5", 0, "more than 0 fractional digits"),
])
def test_amounts_of_thousands_of_digits_are_one_input_error(text, decimals, reason):
    """int() refuses a str of over 4,300 digits: a hostile amount must still be a plain InputError
    (exit 4, one line), as it was with decimal, and zeros around a number do not matter."""
    if reason is None:
        assert parse_amount(text, decimals) == 12_500_000
        return
    with pytest.raises(InputError) as exc:
        parse_amount(text, decimals)
    assert reason in exc.value.message


def test_eth_values_of_thousands_of_digits_are_one_input_error():
    with pytest.raises(InputError) as exc:
        parse_eth_value("9" * 5000 + "gwei")
    assert "too large" in exc.value.message
    assert parse_eth_value("0" * 5000 + "1.5e3gwei") == 1_500 * 10**9
