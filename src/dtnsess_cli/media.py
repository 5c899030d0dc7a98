"""Images and IPFS answers: image sizes, sniffing image bytes, CIDs, and fetching a CID through
an HTTP gateway, checked against the CID: a raw block by hashing it, a CIDv0 or dag-pb file
through a trustless gateway's CAR, block by block.

Stdlib only: this module is on the command path (``request --image``, ``response``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import struct
from pathlib import Path

from .errors import DtnsessError, ExitCode, InputError
from .record import record

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

# What `--image WxH` accepts: gpt-image-1 makes 1024x1024, 1536x1024 and 1024x1536; the API
# takes any uint64, so the bounds are ours: at least 16 pixels, at most 4096 a side.
MIN_SIDE = 16
MAX_SIDE = 4096
# A fetched answer larger than this is refused (a gateway could stream forever).
MAX_FETCH_BYTES = 64 * 1024 * 1024
FETCH_TIMEOUT = 60.0

IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}


class GatewayError(DtnsessError):
    """Raised when an IPFS gateway cannot be reached, fails, or serves bytes that do not match
    the CID asked for."""

    exit_code = ExitCode.ERROR


def parse_size(text: str) -> tuple:
    """``"1024x768"`` -> (1024, 768); bounded, else InputError naming ``--image``."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*[xX×]\s*(\d{1,6})\s*", text or "")
    if not m:
        raise InputError("--image", text, "expected WIDTHxHEIGHT in pixels, e.g. 1024x1024")
    w, h = int(m.group(1)), int(m.group(2))
    for side, v in (("width", w), ("height", h)):
        if not MIN_SIDE <= v <= MAX_SIDE:
            raise InputError("--image", text, f"{side} {v} is outside {MIN_SIDE}..{MAX_SIDE} "
                             f"pixels", hint="gpt-image-1 makes 1024x1024, 1536x1024 or 1024x1536")
    return w, h


# ------------------------------------------------------------------------------ image bytes

@record
class ImageInfo:
    type: str  # png | jpeg | webp | gif
    mime: str
    size: int  # bytes
    width: Optional[int] = None
    height: Optional[int] = None

    def human(self) -> str:
        dims = f"{self.width}x{self.height}, " if self.width and self.height else ""
        return f"{self.type.upper()} image, {dims}{self.size:,} bytes"


def sniff_image(data: bytes) -> Optional[ImageInfo]:
    """The image type of ``data`` by its magic bytes (PNG, JPEG, WebP, GIF), else None.
    Width and height are read where the header holds them plainly (PNG, GIF)."""
    data = bytes(data)
    n = len(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        w = h = None
        if n >= 24 and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
        return ImageInfo("png", IMAGE_TYPES["png"], n, w, h)
    if data[:3] == b"\xff\xd8\xff":
        return ImageInfo("jpeg", IMAGE_TYPES["jpeg"], n)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageInfo("webp", IMAGE_TYPES["webp"], n)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        w = h = None
        if n >= 10:
            w, h = struct.unpack("<HH", data[6:10])
        return ImageInfo("gif", IMAGE_TYPES["gif"], n, w, h)
    return None


def write_output(path: Path, data: bytes, force: bool = False) -> None:
    """Write ``data`` to ``path``. An existing file is refused unless ``force`` (an answer was
    paid for, but a file the user had may be worth more). Written whole or not at all."""
    path = Path(path)
    if path.is_dir():
        raise InputError("--out", str(path), "is a directory")
    if path.exists() and not force:
        raise InputError("--out", str(path), "exists", hint="pass --force to overwrite it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError("--out", str(path), exc.strerror or "cannot write") from None


def check_output(path: Optional[Path], force: bool) -> None:
    """Refuse an unusable ``--out`` before anything is sent."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise InputError("--out", str(path), "is a directory")
    if path.exists() and not force:
        raise InputError("--out", str(path), "exists", hint="pass --force to overwrite it")
    if not path.parent.is_dir():
        raise InputError("--out", str(path), f"directory {path.parent} does not exist")


# ------------------------------------------------------------------------------------ CIDs

CODEC_RAW = 0x55
MH_SHA2_256 = 0x12
_CIDV0 = re.compile(r"^Qm[1-9A-HJ-NP-Za-km-z]{44}$")
_CIDV1_B32 = re.compile(r"^b[a-z2-7]{10,200}$")
CODECS = {0x55: "raw", 0x70: "dag-pb", 0x71: "dag-cbor", 0x0129: "dag-json"}


def cid_of(data: bytes) -> str:
    """The CIDv1 of ``data`` as a raw block: raw codec, sha2-256, base32 (``b...``), as
    ``ipfs add --cid-version 1 --raw-leaves`` gives for a file of one block."""
    digest = hashlib.sha256(bytes(data)).digest()
    raw = bytes([0x01, CODEC_RAW, MH_SHA2_256, len(digest)]) + digest
    return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")


def _varint(buf: bytes, pos: int) -> tuple:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7


@record
class Cid:
    text: str
    version: int
    codec: Optional[int]  # None for CIDv0 (dag-pb implied)
    hash_code: int
    digest: bytes

    @property
    def verifiable(self) -> bool:
        """Can the content be checked by hashing it? Only a raw block: other codecs hash an
        encoded DAG node, not the file."""
        return self.codec == CODEC_RAW and self.hash_code == MH_SHA2_256 and len(self.digest) == 32

    @property
    def codec_name(self) -> str:
        return "dag-pb" if self.codec is None else CODECS.get(self.codec, hex(self.codec))

    def matches(self, data: bytes) -> bool:
        return hashlib.sha256(bytes(data)).digest() == self.digest


def parse_cid(text: str) -> Optional[Cid]:
    """A CID (CIDv0 ``Qm...`` or CIDv1 in base32 ``b...``), or None when ``text`` is not one."""
    if not isinstance(text, str):
        return None
    if _CIDV0.match(text):
        mh = _b58decode(text)  # a bare multihash: sha2-256, 32 bytes
        if len(mh) != 34 or mh[:2] != bytes([MH_SHA2_256, 32]):
            return None
        return Cid(text, 0, None, MH_SHA2_256, mh[2:])
    if not _CIDV1_B32.match(text):
        return None
    body = text[1:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
        version, pos = _varint(raw, 0)
        codec, pos = _varint(raw, pos)
        code, pos = _varint(raw, pos)
        length, pos = _varint(raw, pos)
    except (ValueError, base64.binascii.Error):
        return None
    digest = raw[pos:]
    if version != 1 or len(digest) != length or not 1 <= length <= 64:
        return None
    return Cid(text, 1, codec, code, digest)


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58decode(text: str) -> bytes:
    n = 0
    for ch in text:
        n = n * 58 + _B58.index(ch)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


# ------------------------------------------------------------ CAR: verified block by block

CODEC_DAG_PB = 0x70
CAR_MIME = "application/vnd.ipld.car"
MAX_DAG_DEPTH = 32


def _cid_at(buf: bytes, pos: int) -> tuple:
    """(codec, multihash code, digest, end) of the binary CID at ``pos`` (CIDv0: a bare
    sha2-256 multihash, dag-pb)."""
    if buf[pos:pos + 2] == bytes([MH_SHA2_256, 32]):
        return CODEC_DAG_PB, MH_SHA2_256, buf[pos + 2:pos + 34], pos + 34
    version, pos = _varint(buf, pos)
    if version != 1:
        raise ValueError(f"CID version {version}")
    codec, pos = _varint(buf, pos)
    code, pos = _varint(buf, pos)
    length, pos = _varint(buf, pos)
    if pos + length > len(buf):
        raise ValueError("truncated CID")
    return codec, code, buf[pos:pos + length], pos + length


def _protobuf(buf: bytes) -> list:
    """(field number, value) pairs of a protobuf message: ints for varints, bytes for
    length-delimited fields (dag-pb and UnixFS use no other wire types)."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("truncated protobuf field")
            value, pos = buf[pos:pos + n], pos + n
        else:
            raise ValueError(f"protobuf wire type {wire}")
        out.append((field, value))
    return out


def car_blocks(car: bytes) -> dict:
    """The blocks of a CARv1, each checked against its CID: {sha2-256 digest: (codec, data)}.
    A block that does not hash to its CID, or one hashed otherwise, raises ValueError."""
    header_len, pos = _varint(car, 0)
    pos += header_len  # dag-cbor {roots, version}: the root we want is the CID we asked for
    if pos > len(car):
        raise ValueError("truncated CAR header")
    blocks = {}
    while pos < len(car):
        size, pos = _varint(car, pos)
        end = pos + size
        if end > len(car):
            raise ValueError("truncated CAR block")
        codec, code, digest, start = _cid_at(car, pos)
        data = car[start:end]
        if code != MH_SHA2_256 or hashlib.sha256(data).digest() != digest:
            raise ValueError(f"a block does not hash to its CID ({len(data)} bytes)")
        blocks[bytes(digest)] = (codec, data)
        pos = end
    return blocks


def car_content(cid: "Cid", car: bytes, max_bytes: int = MAX_FETCH_BYTES) -> bytes:
    """The file ``cid`` names, rebuilt from a CAR whose every block is checked against its CID:
    a raw block, or a UnixFS file in dag-pb (its own data, then its links' content in order).
    Raises ValueError when a block is missing, does not hash to its CID, or is not a file."""
    blocks = car_blocks(car)
    out = bytearray()

    def walk(codec: Optional[int], digest: bytes, depth: int) -> None:
        if depth > MAX_DAG_DEPTH:
            raise ValueError("DAG too deep")
        block = blocks.get(bytes(digest))
        if block is None:
            raise ValueError("a block of the file is missing from the CAR")
        codec = block[0] if codec is None else codec
        data = block[1]
        if codec == CODEC_RAW:
            out.extend(data)
        elif codec == CODEC_DAG_PB:
            fields = _protobuf(data)
            links = [dict(_protobuf(v)) for f, v in fields if f == 2]
            unixfs = dict(_protobuf(next((v for f, v in fields if f == 1), b"")))
            if unixfs.get(1, 2) not in (0, 2):  # Raw or File
                raise ValueError(f"not a file (UnixFS type {unixfs.get(1)})")
            out.extend(unixfs.get(2, b""))
            for link in links:
                c, code, d, _ = _cid_at(link.get(1, b""), 0)
                if code != MH_SHA2_256:
                    raise ValueError("a link is not hashed with sha2-256")
                walk(c, d, depth + 1)
        else:
            raise ValueError(f"codec {CODECS.get(codec, hex(codec))} is not a file")
        if len(out) > max_bytes:
            raise ValueError(f"more than {max_bytes:,} bytes")

    walk(CODEC_DAG_PB if cid.codec is None else cid.codec, cid.digest, 0)
    return bytes(out)


def gateway_url(gateway: str, cid: str) -> str:
    """``https://gw.example`` or ``https://gw.example/ipfs/`` + CID -> the content's URL."""
    base = gateway.strip().rstrip("/")
    if not base.endswith("/ipfs"):
        base += "/ipfs"
    return f"{base}/{cid}"


def fetch_cid(gateway: str, cid: Cid, *, max_bytes: int = MAX_FETCH_BYTES,
              timeout: float = FETCH_TIMEOUT) -> tuple:
    """The content of ``cid`` through an HTTP ``gateway``: (bytes, verified). A raw/sha2-256
    CID is verified by hashing the bytes; any other sha2-256 CID (CIDv0, a chunked dag-pb file)
    is asked as a trustless gateway's CAR and rebuilt from blocks each checked against its CID.
    Bytes that fail a check are refused (the gateway is not trusted); a gateway that answers
    a CAR request with the plain file gives bytes that come back with ``verified`` False."""
    from .errors import redact_url

    if not re.match(r"^https?://", gateway.strip(), re.I):
        raise InputError("IPFS gateway", gateway, "expected an http(s) URL, e.g. https://ipfs.io",
                         hint="set DTNSESS_IPFS_GATEWAY")
    url = gateway_url(gateway, cid.text)
    shown = redact_url(gateway.strip())  # NOTE: redaction would hide the CID in the path
    if cid.verifiable:
        # NOTE: trustless gateways serve a raw block as application/vnd.ipld.raw; others the file
        data, _ = _get(url, "application/vnd.ipld.raw, */*;q=0.5", shown, cid, max_bytes, timeout)
        if not cid.matches(data):
            raise GatewayError(f"IPFS gateway {shown} sent {len(data):,} bytes that do not hash "
                               f"to {cid.text}; refused",
                               hint="the gateway is wrong or hostile: use another one")
        return data, True
    if cid.codec not in (None, CODEC_DAG_PB) or cid.hash_code != MH_SHA2_256:
        return _get(url, "*/*", shown, cid, max_bytes, timeout)[0], False  # not a file we rebuild
    data, mime = _get(url + "?format=car", f"{CAR_MIME};version=1, */*;q=0.1", shown, cid,
                      max_bytes, timeout)
    if not mime.startswith(CAR_MIME):
        return data, False  # the plain file: nothing to check it against
    try:
        return car_content(cid, data, max_bytes), True
    except ValueError as exc:
        raise GatewayError(f"IPFS gateway {shown} sent a CAR for {cid.text} that fails "
                           f"verification: {exc}; refused",
                           hint="the gateway is wrong or hostile: use another one") from None


def _get(url: str, accept: str, shown: str, cid: Cid, max_bytes: int, timeout: float) -> tuple:
    """(body, content type) of a GET, at most ``max_bytes``; GatewayError otherwise."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "dtnsess"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) only
            data = resp.read(max_bytes + 1)
            mime = resp.headers.get("Content-Type", "") or ""
    except urllib.error.HTTPError as exc:
        raise GatewayError(f"IPFS gateway {shown} answered HTTP {exc.code} for {cid.text}",
                           hint="check DTNSESS_IPFS_GATEWAY, or try another gateway") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise GatewayError(f"IPFS gateway {shown} unreachable: {reason}",
                           hint="check DTNSESS_IPFS_GATEWAY") from None
    if len(data) > max_bytes:
        raise GatewayError(f"IPFS gateway {shown} sent more than {max_bytes:,} bytes for "
                           f"{cid.text}; refused")
    return data, mime.strip().lower()
