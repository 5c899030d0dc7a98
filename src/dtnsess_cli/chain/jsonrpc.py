"""A small HTTP JSON-RPC client: one kept-alive connection, batches, read retries, and URLs
that never show their credentials. HTTP/1.1 is the project's own (:mod:`.http11`, shared with
the async client): ``http.client`` costs ~55 ms of import per command, and ``ssl`` is imported
only for an https:// URL.

- :meth:`JsonRpc.call` makes one call and returns its ``result``; a JSON-RPC error object
  raises :class:`RpcResponseError` (``code``, ``message``, ``data``: a revert's data is there).
- :meth:`JsonRpc.batch` sends many calls in ONE HTTP request and returns one reply dict per
  call, in the calls' order (``{"result": ...}`` or ``{"error": {...}}``), leaving per-call
  errors to the caller (a revert in one entry does not hide the others).
- Reads are retried with exponential backoff and jitter while the failure looks transient -- a
  refused or dropped connection, no reply in time, HTTP 429 or 5xx, a body cut off or not JSON,
  a batch reply missing entries, a JSON-RPC "rate limited" error -- until ``retry_seconds`` have
  passed; then one :class:`RpcTransportError` says what failed, in words.
- ``eth_sendRawTransaction`` (and any batch holding one) is sent once and never retried: whether
  the node took the transaction is for the send path to find out by its hash.
  ``RpcTransportError.maybe_sent`` says whether the request may have reached the node.
- ``round_trips`` counts HTTP requests (retries included), for tests and benchmarks.

NOTE: the URL's userinfo (sent as HTTP Basic auth), query and key-looking path segments appear
in no message: every message uses :func:`redact_url`, never library text.
"""

from __future__ import annotations

import _socket  # NOTE: not socket: its enums, selectors and array are ~5 ms of every command
import json
import os
import sys
import time
from urllib.parse import unquote, urlsplit

from ..errors import redact_url  # the one redaction rule of the project (a leaf module)
from . import http11
from .errors import RpcResponseError, RpcTransportError

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any, Callable, Optional, Sequence

DEFAULT_TIMEOUT = 30.0  # one HTTP request (connect, and each wait for bytes)
DEFAULT_RETRY_SECONDS = 20.0  # the total time reads may spend retrying
# Methods that change the chain: sent once, never retried here.
WRITE_METHODS = frozenset({"eth_sendRawTransaction", "eth_sendRawTransactionSync",
                           "eth_sendTransaction"})
# JSON-RPC error codes providers use for "slow down" (HTTP 200 with an error object).
RATE_LIMIT_CODES = frozenset({429, -32005, -32029})
# NOTE: an idle keep-alive connection may have been closed by the server; a read just retries,
# but a send must not find out after writing: it gets a fresh connection past this idle time.
SEND_IDLE_REUSE = 1.0


# ---------------------------------------------------------------------------------- the client

class _Transient(Exception):
    """A failure that the same read may not meet again (retried within the budget)."""

    def __init__(self, reason: str, status: Optional[int] = None) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


class _Fatal(Exception):
    """A failure that asking again will not fix (HTTP 401, a bad host name, ...)."""

    def __init__(self, reason: str, status: Optional[int] = None) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


def _jitter() -> float:
    import random  # NOTE: only when a read is retried (its import cost ~2 ms of every command)

    return random.random()


class JsonRpc:
    """One JSON-RPC endpoint over HTTP(S) with a kept-alive connection. Not thread-safe: one
    per thread (a command is one thread; the connection is the point)."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT,
                 retry_seconds: float = DEFAULT_RETRY_SECONDS, backoff: float = 0.1,
                 max_backoff: float = 2.0, headers: Optional[dict] = None,
                 ssl_context: Any = None, proxy: Optional[str] = None,
                 sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = _jitter) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise RpcTransportError("connect", "the RPC URL is invalid", url="<unparseable url>",
                                    transient=False, maybe_sent=False) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RpcTransportError("connect", "the RPC URL must be http:// or https://host",
                                    url=redact_url(url), transient=False, maybe_sent=False)
        self.url = redact_url(url)  # NOTE: the only form of the URL this object keeps in sight
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        if not self._host.isascii():  # an internationalised name: its ASCII (IDNA) form
            try:
                self._host = self._host.encode("idna").decode()
            except UnicodeError:
                raise RpcTransportError("connect", "the RPC URL is invalid", url=self.url,
                                        transient=False, maybe_sent=False) from None
        self._port = port or (443 if self._https else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not self._path.isascii() or any(c <= " " or c == "\x7f" for c in self._path):
            # not sendable in a request line (a browser would percent-encode it)
            raise RpcTransportError("connect", "the RPC URL is invalid", url=self.url,
                                    transient=False, maybe_sent=False)
        self._authority = http11.authority(self._host, self._port, 443 if self._https else 80)
        # NOTE: identity: a node may compress a reply otherwise, and nothing here inflates it
        self._headers = {"Content-Type": "application/json", "Accept": "application/json",
                         "Accept-Encoding": "identity", "User-Agent": "dtnsess"}
        if parts.username is not None or parts.password is not None:
            import base64

            cred = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        if headers:
            self._headers.update(headers)
        self.timeout = float(timeout)
        self.retry_seconds = float(retry_seconds)
        self.backoff, self.max_backoff = backoff, max_backoff
        self._sleep, self._jitter = sleep, jitter
        self._ssl_context = ssl_context  # None: the system's CAs (ssl.create_default_context)
        # an HTTP proxy (``proxy_for``): plain http goes to it in absolute form, https through
        # a CONNECT tunnel, as curl, requests (web3.py) and cast do
        self._proxy: Optional[tuple] = None
        self.proxy = redact_url(proxy) if proxy else None
        if proxy:
            try:
                pp = urlsplit(proxy if "://" in proxy else "http://" + proxy)
                pport = pp.port
            except ValueError:
                pp, pport = None, None
            if pp is None or pp.scheme != "http" or not pp.hostname:
                raise RpcTransportError("connect", "the proxy must be an http://host[:port] URL",
                                        url=self.url, transient=False, maybe_sent=False)
            auth = {}
            if pp.username is not None or pp.password is not None:
                import base64

                cred = f"{unquote(pp.username or '')}:{unquote(pp.password or '')}"
                auth["Proxy-Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
            self._proxy = (pp.hostname, pport or 80, auth)
            if not self._https:
                netloc = http11.authority(self._host, self._port)
                self._path = f"http://{netloc}{self._path}"
                self._headers.update(auth)
        self._conn: Any = None  # the socket (TLS: an ssl.SSLSocket), kept alive
        self._last_used = 0.0
        self._id = 0
        self.round_trips = 0  # HTTP requests made, retries included
        self.retries = 0  # of which retries
        # a time.monotonic() instant no read may run past (a wait's own deadline): it clips
        # each attempt's timeout and the retry budget; None: no limit beyond those
        self.deadline: Optional[float] = None

    # ------------------------------------------------------------------ public
    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One call; its ``result``. A JSON-RPC error raises :class:`RpcResponseError`."""
        self._id += 1
        req = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)}
        retry = method not in WRITE_METHODS
        rid = self._id
        reply = self._exchange(req, method, retry=retry,
                               check=lambda r: _check_single(r, rid, retry))
        return result_of(reply, method)

    def batch(self, calls: Sequence[tuple]) -> list:
        """Many ``(method, params)`` in one HTTP request; one reply dict per call, in order."""
        if not calls:
            return []
        first = self._id + 1
        reqs = []
        for method, params in calls:
            self._id += 1
            reqs.append({"jsonrpc": "2.0", "id": self._id, "method": method,
                         "params": list(params)})
        methods = [m for m, _ in calls]
        label = methods[0] if len(set(methods)) == 1 else "batch"
        label = f"{label} (batch of {len(calls)})" if len(calls) > 1 else label
        retry = not any(m in WRITE_METHODS for m in methods)
        return self._exchange(reqs, label, retry=retry,
                              check=lambda r: _order_batch(r, first, len(calls), retry))

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def __enter__(self) -> "JsonRpc":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JsonRpc({self.url})"

    # ------------------------------------------------------------------ internals
    def _open(self, timeout: float, fresh: bool) -> None:
        """Connect unless the kept-alive connection can be used (``fresh``: a send, which does
        not reuse one idle for over SEND_IDLE_REUSE); every read on it then waits at most
        ``timeout``. Raises OSError / HttpError."""
        if self._conn is not None and (_readable(self._conn) or fresh and
                                       time.monotonic() - self._last_used > SEND_IDLE_REUSE):
            self.close()
        if self._conn is None:
            self._conn = self._connect(timeout)
        self._conn.settimeout(timeout)

    def _connect(self, timeout: float) -> socket.socket:
        """A socket to the node: directly, to the proxy (plain http), or through the proxy's
        CONNECT tunnel (https); TLS to the node itself for https."""
        host, port = (self._host, self._port) if self._proxy is None else self._proxy[:2]
        # NOTE: as bytes: getaddrinfo passes a str host through the idna codec, whose import
        # (encodings.idna, stringprep, unicodedata) cost ~2.5 ms of every command; the node's
        # host is ASCII already (see __init__), a proxy's may not be
        sock = _dial(host.encode() if host.isascii() else host, port, timeout)
        try:
            # NOTE: head and body go in one write; no Nagle wait for the reply's ACK
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            if not self._https:
                return sock
            if self._proxy is not None:
                sock.sendall(http11.connect(self._host, self._port, self._proxy[2]))
                http11.check_tunnel(_read_reply(sock, http11.Reply(bodyless=True)))
            import ssl

            ctx = self._ssl_context or ssl.create_default_context()
            return ctx.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise

    def _post(self, request: bytes) -> tuple:
        """One HTTP request (``http11.post`` bytes) on the open connection: (status, reason,
        body). Raises OSError / HttpError (the async client's transport does the same on the
        event loop)."""
        reply = _read_reply(self._conn, http11.Reply(), request)
        if not reply.keep_alive:
            self.close()
        return reply.status, reply.reason, reply.body

    def _exchange(self, payload: Any, label: str, *, retry: bool,
                  check: Callable[[Any], Any]) -> Any:
        body = json.dumps(payload, separators=(",", ":")).encode()
        request = http11.post(self._path, self._authority, self._headers, body)
        start = time.monotonic()
        deadline = start + (self.retry_seconds if retry else 0.0)
        # NOTE: only reads obey ``self.deadline``: a send is never cut short
        hard = self.deadline if retry else None
        if hard is not None:
            deadline = min(deadline, hard)
        attempt = 0
        while True:
            attempt += 1
            now = time.monotonic()
            # NOTE: the first attempt has the full timeout; later ones only what is left of the
            # retry budget (at least 1 s), so the total stays bounded
            timeout = self.timeout if attempt == 1 else min(self.timeout, max(deadline - now, 1.0))
            if hard is not None:
                timeout = min(timeout, max(hard - now, 0.05))
            sent = False
            try:
                self._open(timeout, fresh=not retry)
                sent = True  # from here on the node may have the request
                self.round_trips += 1
                status, reason, data = self._post(request)
                self._last_used = time.monotonic()
                return check(_parse(status, reason, data))
            except (_Transient, _Fatal, OSError, http11.HttpError) as exc:
                self.close()
                transient, reason, status = _classify(exc)
                if self.proxy:
                    reason += f" (through the proxy {self.proxy})"
                elapsed = time.monotonic() - start
                if retry and transient:
                    pause = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                    pause *= 0.5 + 0.5 * self._jitter()
                    if time.monotonic() + pause < deadline:
                        self.retries += 1
                        self._sleep(pause)
                        continue
                raise RpcTransportError(label, reason, url=self.url, attempts=attempt,
                                        elapsed=elapsed, transient=transient,
                                        maybe_sent=sent, status=status) from None


def _dial(host: Any, port: int, timeout: float) -> socket.socket:
    """``socket.create_connection`` on the ``_socket`` module: each address of the host in
    turn, ``timeout`` for each connect; the last failure is raised."""
    error: Optional[OSError] = None
    for family, kind, proto, _name, address in _socket.getaddrinfo(host, port, 0,
                                                                   _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error if error is not None else OSError("getaddrinfo returned no address")


def _readable(sock: socket.socket) -> bool:
    """Has an idle kept-alive connection something to read? Then the node closed it (or sent
    what no request asked for): it must not carry the next request, least of all a send."""
    import select  # NOTE: only for a kept-alive connection (~0.3 ms)

    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):  # closed under us
        return True


def _read_reply(sock: socket.socket, reply: http11.Reply, request: bytes = b"") -> http11.Reply:
    """Send ``request`` (if any), then feed ``reply`` what the socket reads until it is whole."""
    if request:
        sock.sendall(request)
    while not reply.done:
        reply.feed(sock.recv(http11.READ_SIZE))
    return reply


def proxy_for(url: str, env: Optional[dict] = None) -> Optional[str]:
    """The proxy the environment names for ``url``, or None: ``http_proxy`` / ``https_proxy``
    (then ``all_proxy``; lower case before upper case) unless ``no_proxy`` matches the host
    (a name, a domain suffix, ``*``, or a CIDR network holding an IP host), as curl, requests
    (so web3.py) and cast read them. ``env``: a mapping to read instead of the environment."""
    parts = urlsplit(url)
    proxies = _proxies(os.environ if env is None else env)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or not parts.hostname:
        return None
    if _no_proxy_names(parts.hostname, parts.port, proxies.get("no")) \
            or _in_no_proxy_network(parts.hostname, proxies.get("no", "")):
        return None
    return proxy


# NOTE: the two rules below are urllib.request's getproxies_environment and
# proxy_bypass_environment, written out: importing urllib.request costs http.client, email and
# ssl (~55 ms) on every command.
def _proxies(env: Any) -> dict:
    """``{scheme: proxy}`` from ``<scheme>_proxy`` variables, lower case winning over upper."""
    proxies = {}
    for name, value in env.items():
        name = name.lower()
        if value and name[-6:] == "_proxy":
            proxies[name[:-6]] = value
    # CVE-2016-1000110: under CGI, HTTP_PROXY may come from a request's "Proxy:" header
    if "REQUEST_METHOD" in env:
        proxies.pop("http", None)
    for name, value in env.items():
        if name[-6:] == "_proxy":
            if value:
                proxies[name[:-6]] = value
            else:
                proxies.pop(name[:-6], None)
    return proxies


def _no_proxy_names(hostname: str, port: Optional[int], no_proxy: Optional[str]) -> bool:
    """Does a name entry of ``no_proxy`` (``*``, a host, a domain suffix, with or without a
    leading dot, or ``host:port``) exempt the host?"""
    if no_proxy is None:
        return False
    if no_proxy == "*":
        return True
    hostonly = hostname.lower()
    host = hostonly if port is None else f"{hostonly}:{port}"
    for name in no_proxy.split(","):
        name = name.strip().lstrip(".").lower()
        if name and (hostonly == name or host == name or hostonly.endswith("." + name)
                     or host.endswith("." + name)):
            return True
    return False


def _in_no_proxy_network(host: str, no_proxy: str) -> bool:
    """Is ``host`` an IP address inside a CIDR entry of ``no_proxy`` (``10.0.0.0/8``,
    ``fd00::/8``)? curl and requests match these; urllib's own rule compares names only."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(host)
    except ValueError:  # a host name: only the name rules apply
        return False
    for entry in no_proxy.replace(" ", "").split(","):
        if "/" not in entry:
            continue
        try:
            if ip in ipaddress.ip_network(entry.strip("[]"), strict=False):
                return True
        except ValueError:  # not a network: an entry for the name rules
            continue
    return False


def _parse(status: int, reason: str, data: bytes) -> Any:
    """The JSON reply of an HTTP response, or the transient/fatal failure it is."""
    reply: Any = None
    try:
        reply = json.loads(data) if data else None
    except ValueError:
        reply = None
    if status == 200:
        if reply is None:
            raise _Transient("the reply is not JSON" if data else "the reply is empty")
        return reply
    text = f"HTTP {status}" + (f" {reason}" if reason and len(reason) < 40 else "")
    if status == 429:
        raise _Transient(text + " (rate limited)", status)
    if status >= 500:
        raise _Transient(text, status)
    if status in (401, 403):  # whatever the body says (providers add a JSON error object)
        raise _Fatal(text + " (check the API key or credentials in the RPC URL)", status)
    # NOTE: some nodes answer a JSON-RPC error with HTTP 400: take the reply when it is one
    if isinstance(reply, (dict, list)) and _looks_jsonrpc(reply):
        return reply
    raise _Fatal(text, status)


def _looks_jsonrpc(reply: Any) -> bool:
    items = reply if isinstance(reply, list) else [reply]
    return bool(items) and all(isinstance(r, dict) and ("result" in r or "error" in r)
                               for r in items)


def _rate_limited(reply: dict) -> bool:
    err = reply.get("error")
    return isinstance(err, dict) and err.get("code") in RATE_LIMIT_CODES


def result_of(reply: dict, method: str) -> Any:
    """A single call's ``result``, or its JSON-RPC error raised as RpcResponseError."""
    if "error" in reply:
        err = reply["error"] if isinstance(reply["error"], dict) else {"message": str(reply["error"])}
        raise RpcResponseError(method, err.get("code"), str(err.get("message", "")),
                               err.get("data"))
    return reply.get("result")


def _check_single(reply: Any, rid: int, retry: bool) -> dict:
    if isinstance(reply, list) and len(reply) == 1:
        reply = reply[0]
    if not isinstance(reply, dict) or not ("result" in reply or "error" in reply):
        raise _Transient("the reply is not a JSON-RPC response")
    if retry and _rate_limited(reply):
        raise _Transient(f"rate limited by the node ({reply['error'].get('message', '')[:60]})")
    if reply.get("id") not in (rid, None) and "error" not in reply:
        raise _Transient("the reply answers another request")
    return reply


def _order_batch(reply: Any, first: int, n: int, retry: bool) -> list:
    if isinstance(reply, dict) and "error" in reply:
        # the node refused the batch as a whole (no batches, too large, ...)
        if retry and _rate_limited(reply):
            raise _Transient("rate limited by the node")
        return [reply] * n
    if not isinstance(reply, list):
        raise _Transient("the reply to a batch is not a list")
    by_id = {}
    for r in reply:
        if isinstance(r, dict) and isinstance(r.get("id"), int):
            by_id[r["id"]] = r
    out = []
    for i in range(first, first + n):
        r = by_id.get(i)
        if r is None or not ("result" in r or "error" in r):
            raise _Transient(f"the batch reply lacks entries ({len(by_id)} of {n})")
        if retry and _rate_limited(r):
            raise _Transient("rate limited by the node")
        out.append(r)
    return out


def _classify(exc: BaseException) -> tuple:
    """(transient?, what happened in words, HTTP status or None)."""
    if isinstance(exc, _Transient):
        return True, exc.reason, exc.status
    if isinstance(exc, _Fatal):
        return False, exc.reason, exc.status
    if isinstance(exc, http11.HttpError):
        return exc.transient, exc.reason, None
    if isinstance(exc, _socket.gaierror):
        return False, "cannot connect (host name not found)", None
    if isinstance(exc, ConnectionRefusedError):
        return True, "cannot connect (connection refused)", None
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return True, "no reply in time (timed out)", None
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return True, "the connection dropped without a reply", None
    ssl = sys.modules.get("ssl")  # NOTE: not imported for http:// (then no error is a TLS one)
    if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
        return False, "TLS certificate verification failed", None
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return True, "TLS error", None
    return True, f"network error ({type(exc).__name__})", None
