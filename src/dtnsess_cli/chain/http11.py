"""HTTP/1.1 for the JSON-RPC clients, without I/O: the bytes of a POST and of a proxy's
CONNECT, and :class:`Reply`, a parser fed the bytes of a reply as they come. The synchronous
client (``jsonrpc.JsonRpc``, a socket) and the async one (``aio._HttpConn``, asyncio streams)
only move bytes around these, so both speak the same HTTP.

NOTE: why not ``http.client``: its import costs ~55 ms on every command (it imports ``ssl`` and
the ``email`` package); a JSON-RPC client needs one request shape and three reply framings.

What a reply may be: a body framed by Content-Length, by ``Transfer-Encoding: chunked`` or by
the end of the connection; interim 1xx replies are skipped; ``Connection: close`` (and
HTTP/1.0 without keep-alive) ends the connection's use. A hostile or broken node cannot make
us hold unbounded data: the status line and headers (and a chunked body's trailers) are at most
MAX_HEAD bytes, the body at most MAX_BODY.
"""

from __future__ import annotations

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


MAX_HEAD = 64 * 1024  # status line + headers; http.client's line limit is 64 KiB too
# NOTE: geth caps a batch's reply at 25 MB (--rpc.batch-response-max-size); the largest replies
# here are batched eth_getLogs. Ample room, yet a bounded amount of memory.
MAX_BODY = 128 * 1024 * 1024
MAX_CHUNK_LINE = 4096  # a chunk's size line with its extensions
READ_SIZE = 65536  # bytes asked of the socket per read

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class HttpError(Exception):
    """Raised when a reply is not usable HTTP: cut off, malformed, or over a limit.
    ``reason`` says it in words; ``transient``: whether asking again may get a good reply."""

    def __init__(self, reason: str, transient: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.transient = reason, transient


def post(target: str, host: str, headers: dict, body: bytes) -> bytes:
    """The bytes of ``POST target`` to ``host`` (the Host header's value) with ``body``."""
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return _head(lines) + body


def connect(host: str, port: int, headers: dict) -> bytes:
    """The bytes of ``CONNECT host:port`` to a proxy (``headers``: its Proxy-Authorization)."""
    where = f"{authority(host)}:{port}"
    return _head([f"CONNECT {where} HTTP/1.1", f"Host: {where}"]
                 + [f"{k}: {v}" for k, v in headers.items()])


def authority(host: str, port: Optional[int] = None, default: Optional[int] = None) -> str:
    """``host[:port]`` as a request line and a Host header write it (IPv6 in brackets; the
    scheme's default port left out)."""
    name = f"[{host}]" if ":" in host else host
    return name if port is None or port == default else f"{name}:{port}"


def _head(lines: list) -> bytes:
    text = "\r\n".join(lines) + "\r\n\r\n"
    # NOTE: a CR or LF inside a value would start a header (or a request) of its own
    if text.count("\n") != len(lines) + 1 or text.count("\r") != len(lines) + 1:
        raise ValueError("a request line or header holds a line break")
    return text.encode("latin-1")


def check_tunnel(reply: "Reply") -> None:
    """Raise HttpError (not transient) unless the proxy's reply to CONNECT opened the tunnel."""
    if not 200 <= reply.status < 300:
        raise HttpError(f"the proxy refused the tunnel: {reply.status} {reply.reason}"[:90],
                        transient=False)


class Reply:
    """The parser of one HTTP/1.1 reply. Feed it each read's bytes (``b""`` once the
    connection has ended) until ``done``; then ``status``, ``reason``, ``body`` and
    ``keep_alive`` (whether the connection may carry the next request). ``bodyless``: a reply
    that has no body whatever its headers say (to CONNECT). Raises :class:`HttpError`."""

    def __init__(self, bodyless: bool = False) -> None:
        self.status = 0
        self.reason = ""
        self.body = b""
        self.keep_alive = False
        self._bodyless = bodyless
        self._buf = bytearray()  # bytes read and not yet parsed
        self._parts = bytearray()  # a chunked or close-delimited body so far
        self._state = _HEAD
        self._left = 0  # bytes still to come: of the body (Content-Length) or of the chunk
        self._seen = 0  # bytes of a chunked body's trailers seen, against MAX_HEAD
        self._scan = 0  # where the search for the head's end resumes (a trickled head: O(n))

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> None:
        if self._state == _DONE:
            return
        if not data:
            self._end_of_stream()
            return
        self._buf += data
        while self._state != _DONE and self._step():
            pass

    # ------------------------------------------------------------------ internals
    def _step(self) -> bool:
        """Parse what the buffer holds for the current state; False: more bytes are needed."""
        buf, state = self._buf, self._state
        if state == _HEAD:
            end = _blank_line(buf, self._scan)
            if end < 0 or end > MAX_HEAD:
                if len(buf) > MAX_HEAD:
                    raise HttpError(f"the reply's header is over {MAX_HEAD // 1024} KiB",
                                    transient=False)
                self._scan = max(0, len(buf) - 2)
                return False
            head = bytes(buf[:end])
            del buf[:end]
            self._scan = 0
            self._head(head)
        elif state == _LENGTH:
            if len(buf) < self._left:
                return False
            with memoryview(buf) as view:  # one copy of the body, not two
                self._finish(bytes(view[:self._left]))
            if len(buf) > self._left:  # more than the reply: the connection is out of step
                self.keep_alive = False
        elif state == _CHUNK_SIZE:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_CHUNK_LINE:
                    raise HttpError("the reply's chunk size line is too long", transient=False)
                return False
            line = bytes(buf[:nl]).split(b";", 1)[0].strip()
            del buf[:nl + 1]
            if not line or line.strip(b"0123456789abcdefABCDEF"):
                raise HttpError("the reply is not valid HTTP (bad chunk size)")
            size = int(line, 16)
            if len(self._parts) + size > MAX_BODY:
                raise HttpError(_too_large(), transient=False)
            self._left = size
            self._state = _CHUNK_DATA if size else _TRAILERS
        elif state == _CHUNK_DATA:
            if not buf:
                return False
            take = min(self._left, len(buf))
            self._parts += buf[:take]
            del buf[:take]
            self._left -= take
            if not self._left:
                self._state = _CHUNK_END
        elif state == _CHUNK_END:
            if buf[:2] == b"\r\n" or buf[:1] == b"\n":
                del buf[:2 if buf[:1] == b"\r" else 1]
                self._state = _CHUNK_SIZE
            elif buf in (b"", b"\r"):
                return False
            else:
                raise HttpError("the reply is not valid HTTP (chunk without its line end)")
        elif state == _TRAILERS:
            nl = buf.find(b"\n")
            if nl < 0:
                if self._seen + len(buf) > MAX_HEAD:
                    raise HttpError(f"the reply's trailers are over {MAX_HEAD // 1024} KiB",
                                    transient=False)
                return False
            self._seen += nl + 1
            blank = not bytes(buf[:nl]).strip()
            del buf[:nl + 1]
            if blank:
                self._finish(bytes(self._parts))
                if buf:
                    self.keep_alive = False
            elif self._seen > MAX_HEAD:
                raise HttpError(f"the reply's trailers are over {MAX_HEAD // 1024} KiB",
                                transient=False)
        elif state == _UNTIL_CLOSE:
            self._parts += buf
            buf.clear()
            if len(self._parts) > MAX_BODY:
                raise HttpError(_too_large(), transient=False)
            return False
        return True

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\n")
        version, _, rest = lines[0].rstrip("\r").partition(" ")
        code, _, reason = rest.strip().partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isascii() \
                or not code.isdigit():
            raise HttpError("the reply is not valid HTTP")
        status = int(code)
        if 100 <= status < 200:  # an interim reply (100 Continue, 103 ...): the reply follows
            return
        fields: dict = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon and name and not name[0].isspace():
                name = name.strip().lower()
                fields[name] = f"{fields[name]}, {value.strip()}" if name in fields \
                    else value.strip()
        self.status = status
        # NOTE: the reason phrase is the node's text: printable characters only, shown short
        self.reason = "".join(c for c in reason.strip() if c.isprintable())[:60]
        tokens = {t.strip().lower() for t in fields.get("connection", "").split(",")}
        self.keep_alive = "close" not in tokens if version == "HTTP/1.1" else "keep-alive" in tokens
        coding = fields.get("transfer-encoding", "").split(",")[-1].strip().lower()
        if self._bodyless or status in (204, 304):
            self._finish(b"")
        elif coding == "chunked":
            self._state = _CHUNK_SIZE
        elif "transfer-encoding" not in fields and "content-length" in fields:
            sizes = {v.strip() for v in fields["content-length"].split(",")}
            size = sizes.pop() if len(sizes) == 1 else ""
            if not size.isascii() or not size.isdigit():
                raise HttpError("the reply is not valid HTTP (bad Content-Length)")
            if int(size) > MAX_BODY:
                raise HttpError(_too_large(), transient=False)
            self._left = int(size)
            self._state = _LENGTH
        else:  # the body ends with the connection
            self.keep_alive = False
            self._state = _UNTIL_CLOSE

    def _finish(self, body: bytes) -> None:
        self.body = body
        self._state = _DONE
        self._buf = bytearray()
        self._parts = bytearray()

    def _end_of_stream(self) -> None:
        if self._state == _UNTIL_CLOSE:
            self._finish(bytes(self._parts))
        elif self._state == _HEAD and not self._buf:
            raise HttpError("the connection dropped without a reply")
        elif self._state == _HEAD:
            raise HttpError("the reply was cut off in its header")
        else:
            raise HttpError("the reply was cut off mid-body")


def _blank_line(buf: bytearray, start: int) -> int:
    """The end of the first empty line (CRLF or LF) in ``buf`` from ``start``, or -1."""
    ends = [i for i in (buf.find(b"\n\r\n", start), buf.find(b"\n\n", start)) if i >= 0]
    if not ends:
        return -1
    i = min(ends)
    return i + (3 if buf[i + 1:i + 2] == b"\r" else 2)


def _too_large() -> str:
    return f"the reply is over {MAX_BODY // (1024 * 1024)} MiB"
