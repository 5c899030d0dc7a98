"""Images and IPFS answers: image sizes, sniffing image bytes, CIDs, and fetching a CID through
an HTTP gateway (checked against the CID when it names raw bytes hashed with sha2-256).

Stdlib only: this module is on the command path (``request --image``, ``response``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import DtnsessError, ExitCode, InputError

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

@dataclass
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


@dataclass
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
        return Cid(text, 0, None, MH_SHA2_256, b"")  # digest: base58, not needed to verify
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


def gateway_url(gateway: str, cid: str) -> str:
    """``https://gw.example`` or ``https://gw.example/ipfs/`` + CID -> the content's URL."""
    base = gateway.strip().rstrip("/")
    if not base.endswith("/ipfs"):
        base += "/ipfs"
    return f"{base}/{cid}"


def fetch_cid(gateway: str, cid: Cid, *, max_bytes: int = MAX_FETCH_BYTES,
              timeout: float = FETCH_TIMEOUT) -> tuple:
    """The content of ``cid`` through an HTTP ``gateway``: (bytes, verified). A raw/sha2-256
    CID is verified (bytes that do not hash to it are refused: the gateway is not trusted);
    other CIDs cannot be checked here and come back with ``verified`` False."""
    import urllib.error
    import urllib.request

    from .errors import redact_url

    if not re.match(r"^https?://", gateway.strip(), re.I):
        raise InputError("IPFS gateway", gateway, "expected an http(s) URL, e.g. https://ipfs.io",
                         hint="set DTNSESS_IPFS_GATEWAY")
    url = gateway_url(gateway, cid.text)
    shown = redact_url(gateway.strip())  # NOTE: redaction would hide the CID in the path
    # NOTE: trustless gateways serve a raw block as application/vnd.ipld.raw; others the file
    req = urllib.request.Request(url, headers={"Accept": "application/vnd.ipld.raw, */*;q=0.5",
                                               "User-Agent": "dtnsess"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) only
            data = resp.read(max_bytes + 1)
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
    if cid.verifiable:
        if not cid.matches(data):
            raise GatewayError(f"IPFS gateway {shown} sent {len(data):,} bytes that do not hash "
                               f"to {cid.text}; refused",
                               hint="the gateway is wrong or hostile: use another one")
        return data, True
    return data, False
