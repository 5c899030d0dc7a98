"""The one HTTP JSON-RPC provider of the client: reads retry, writes never do.

A read (any method but a transaction send), alone or in a JSON-RPC batch, is retried with
exponential backoff and jitter (tenacity) while the failure looks transient: a dropped
connection, no reply in time, HTTP 429 or 5xx, a body that is not JSON or was cut off, or a
JSON-RPC "rate limited" error. It gives up after ``DTNSESS_RPC_RETRY_SECONDS`` (default 20; each
attempt's timeout is clipped to what is left) and raises one :class:`RpcError` naming the
method and what failed, never library text.

A send (``eth_sendRawTransaction``) is made once and its exception is left as it is: whether
the node took the transaction is for the sending side to find out (by its hash); resending
blindly could pay twice.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Optional

from web3 import HTTPProvider
from web3._utils.batching import sort_batch_response_by_response_ids
from web3._utils.caching import handle_request_caching

from .errors import ConfigError, RpcError

ENV_RETRY_SECONDS = "DTNSESS_RPC_RETRY_SECONDS"
ENV_TIMEOUT = "DTNSESS_RPC_TIMEOUT"
DEFAULT_RETRY_SECONDS = 20.0
DEFAULT_TIMEOUT = 30.0
# Methods that change the chain: made once, never retried here.
WRITE_METHODS = frozenset({"eth_sendRawTransaction", "eth_sendTransaction"})
# JSON-RPC error codes providers use for "slow down" (HTTP 200 with an error object).
RATE_LIMIT_CODES = frozenset({429, -32005, -32029})


class BadReply(Exception):
    """The node answered with something that is not a JSON-RPC reply (a transient failure)."""


def _seconds(name: str, default: float, low: float, hint: str,
             env: Optional[dict] = None) -> float:
    raw = (os.environ if env is None else env).get(name, "").strip()
    if not raw:
        return default
    try:
        v = float(raw)
    except ValueError:
        v = -1.0
    if not low <= v <= 3600:
        raise ConfigError(f"{name}={raw[:20]!r} is not a number of seconds ({low:g}..3600)",
                          hint=hint)
    return v


def retry_seconds(env: Optional[dict] = None) -> float:
    """The total time reads may spend retrying (``DTNSESS_RPC_RETRY_SECONDS``)."""
    return _seconds(ENV_RETRY_SECONDS, DEFAULT_RETRY_SECONDS, 0, "e.g. 20; 0 disables retries",
                    env)


def request_timeout(env: Optional[dict] = None) -> float:
    """How long one HTTP request may wait for its reply (``DTNSESS_RPC_TIMEOUT``)."""
    return _seconds(ENV_TIMEOUT, DEFAULT_TIMEOUT, 0.1, "e.g. 30", env)


def describe(exc: BaseException) -> str:
    """What went wrong on the wire, in words (never the library's text, which may hold the
    URL with its credentials)."""
    import requests

    if isinstance(exc, RpcError):
        return exc.reason
    if isinstance(exc, BadReply):
        return str(exc)
    if isinstance(exc, requests.HTTPError):
        resp = exc.response
        code = getattr(resp, "status_code", None)
        reason = (getattr(resp, "reason", "") or "").strip()
        text = f"HTTP {code}" + (f" {reason}" if reason and len(reason) < 40 else "")
        if code in (401, 403):
            text += " (check the API key or credentials in the RPC URL)"
        elif code == 429:
            text += " (rate limited)"
        return text
    if isinstance(exc, requests.Timeout):
        return "no reply in time (timed out)"
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ContentDecodingError)):
        return "the reply was cut off mid-body"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        if "Connection refused" in text or "NewConnectionError" in text:
            return "cannot connect (connection refused)"
        if "Name or service not known" in text or "nodename nor servname" in text \
                or "NameResolutionError" in text:
            return "cannot connect (host name not found)"
        return "the connection dropped without a reply"
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema)):
        return "the RPC URL is invalid"
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return "the reply is not JSON"
    return f"unexpected failure ({type(exc).__name__})"


def is_transient(exc: BaseException) -> bool:
    """May the same read succeed if asked again?"""
    import requests

    if isinstance(exc, BadReply):
        return True
    if isinstance(exc, requests.HTTPError):
        code = getattr(exc.response, "status_code", None)
        return code == 429 or (code is not None and code >= 500)
    return isinstance(exc, (requests.ConnectionError, requests.Timeout,
                            requests.exceptions.ChunkedEncodingError,
                            requests.exceptions.ContentDecodingError))


def _check_reply(resp: Any, batch: bool) -> Any:
    """A decoded reply, or BadReply when it is not one a JSON-RPC node gives (or says: later)."""
    if batch and isinstance(resp, list):
        if not all(isinstance(r, dict) for r in resp):
            raise BadReply("the batch reply holds something that is not a JSON-RPC reply")
        return resp
    if not isinstance(resp, dict) or not ("result" in resp or "error" in resp):
        raise BadReply("the reply is not a JSON-RPC reply")
    err = resp.get("error")
    if isinstance(err, dict) and err.get("code") in RATE_LIMIT_CODES:
        raise BadReply("rate limited (JSON-RPC error "
                       f"{err.get('code')})")
    return resp


class RetryingHTTPProvider(HTTPProvider):
    """web3's HTTPProvider with one retry policy for reads (see the module doc)."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 retry_for: float = DEFAULT_RETRY_SECONDS, **kwargs: Any) -> None:
        # NOTE: web3's own retry is off: it retries one attempt at most, skips batches, and
        # would retry a send; this class decides instead.
        super().__init__(url, request_kwargs={"timeout": timeout},
                         exception_retry_configuration=None, **kwargs)
        self.timeout = timeout
        self.retry_for = retry_for

    def _post(self, data: bytes, timeout: float) -> bytes:
        kw = dict(self.get_request_kwargs(), timeout=timeout)
        return self._request_session_manager.make_post_request(self.endpoint_uri, data, **kw)

    def _read(self, what: str, data: bytes, batch: bool) -> Any:
        """POST ``data`` and decode the reply, retrying transient failures within the budget."""
        from tenacity import (Retrying, retry_if_exception, stop_before_delay,
                              wait_exponential, wait_random)

        start = time.monotonic()
        deadline = start + self.retry_for
        attempts = 0

        def once() -> Any:
            nonlocal attempts
            attempts += 1
            left = deadline - time.monotonic()
            raw = self._post(data, min(self.timeout, max(left, 1.0)))
            try:
                resp = self.decode_rpc_response(raw)
            except (ValueError, UnicodeDecodeError):
                raise BadReply("the reply is not JSON") from None
            return _check_reply(resp, batch)

        try:
            for attempt in Retrying(
                    stop=stop_before_delay(self.retry_for),
                    wait=wait_exponential(multiplier=0.2, max=3.0) + wait_random(0, 0.3),
                    retry=retry_if_exception(is_transient), reraise=True):
                with attempt:
                    return once()
        except Exception as exc:  # noqa: BLE001 - every failure becomes one clean line
            took = time.monotonic() - start
            tries = (f" (gave up after {attempts} attempts in {took:.0f}s)" if attempts > 1
                     else "")
            err = RpcError(self.endpoint_uri, f"{what}: {describe(exc)}{tries}",
                           default_hint=is_transient(exc))
            raise err from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @handle_request_caching
    def make_request(self, method: Any, params: Any) -> Any:
        data = self.encode_rpc_request(method, params)
        if method in WRITE_METHODS:
            # once, and what happened is left to the sender (tx.py): it may have arrived
            return self.decode_rpc_response(self._post(data, self.timeout))
        return self._read(str(method), data, batch=False)

    def make_batch_request(self, batch_requests: Any) -> Any:
        data = self.encode_batch_rpc_request(batch_requests)
        methods = [str(m) for m, _ in batch_requests]
        if WRITE_METHODS.intersection(methods):
            resp = self.decode_rpc_response(self._post(data, self.timeout))
        else:
            what = "batch of " + (methods[0] if len(set(methods)) == 1
                                  else f"{len(methods)} reads")
            resp = self._read(what, data, batch=True)
        if not isinstance(resp, list):
            return resp  # the node refused the batch: one error object
        return sort_batch_response_by_response_ids(resp)


def make_web3(url: str, *, timeout: Optional[float] = None,
              retry_for: Optional[float] = None, cache_chain_id: bool = True) -> Any:
    """A Web3 on ``url`` with the retrying provider."""
    from web3 import Web3

    kw: dict = {}
    if cache_chain_id:
        # NOTE: web3 asks eth_chainId before every contract call (twice with its validation);
        # the chain id of one run is fixed (the client checks it), so cache it. (No validation
        # threshold: it costs an eth_chainId of its own, and only block-dependent requests use it.)
        kw = dict(cache_allowed_requests=True, cacheable_requests={"eth_chainId"},
                  request_cache_validation_threshold=None)
    provider = RetryingHTTPProvider(
        url, timeout=request_timeout() if timeout is None else timeout,
        retry_for=retry_seconds() if retry_for is None else retry_for, **kw)
    return Web3(provider)
