"""Image requests and IPFS answers (issue 10, section 3): the devnet registers DTN's Base models,
its responder answers image requests with a PNG of the asked size and IPFS requests with a CID it
serves itself; `request --image/--ipfs/--out`, `response`, `models` and the model check of
`doctor`, on a real Anvil, with the CLI in process."""

from __future__ import annotations

import hashlib
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cli_helpers import assert_error, assert_ok, create_via_cli, load_json, nonce
from dtnsess_cli import media
from dtnsess_cli.chain.abi import encode
from dtnsess_cli.config import CliOptions, resolve_settings
from dtnsess_cli.devnet import localdtn
from dtnsess_cli.devnet.responder import Gateway, IpfsStore
from dtnsess_cli.errors import ExitCode
from dtnsess_cli.manager.base import decode_answer
from dtnsess_cli.models import DTN_MODELS
from helpers import fund, next_second

FOUR = ["model.system.openai-gpt-5-nano", "model.system.openai-gpt-5-mini",
        "model.system.openai-gpt-5", "model.system.openai-gpt-image-1"]


def read_png(data: bytes) -> tuple:
    """(width, height) of a PNG, after checking what a decoder checks: the signature, every
    chunk's CRC, IHDR first and IEND last, and that the image data inflates to exactly the
    rows the header promises."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    w, h, depth, color = struct.unpack(">IIBB", chunks[0][1][:10])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    assert len(raw) == h * (1 + (w * depth * channels + 7) // 8), "image data of the wrong size"
    return w, h


# -------------------------------------------------------------------------- without a chain

@pytest.mark.parametrize("text,size", [("1024x1024", (1024, 1024)), ("1536X1024", (1536, 1024)),
                                       (" 16x4096 ", (16, 4096))])
def test_image_sizes_parse(text, size):
    assert media.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1024", "1024x", "x1024", "0x0", "15x100", "4097x16",
                                  "-5x10", "10.5x20", "axb", "1024x1024x3"])
def test_bad_image_sizes_are_refused(text):
    with pytest.raises(media.InputError):
        media.parse_size(text)


def test_cid_of_matches_ipfs_and_parses_back():
    # `ipfs add --cid-version 1 --raw-leaves` of the five bytes "hello"
    cid = media.cid_of(b"hello")
    assert cid == "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
    parsed = media.parse_cid(cid)
    assert parsed.verifiable and parsed.matches(b"hello") and not parsed.matches(b"hellO")
    v0 = media.parse_cid("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG")
    assert v0 is not None and not v0.verifiable
    for text in ("hello", "b", "bafkrei!", cid.upper(), cid + " ", "Qm123", cid[:-4]):
        assert media.parse_cid(text) is None, text


@pytest.mark.parametrize("data,kind", [
    (localdtn.make_png(20, 30), "png"), (b"\xff\xd8\xff\xe0" + b"\0" * 20, "jpeg"),
    (b"RIFF\x10\0\0\0WEBPVP8 " + b"\0" * 10, "webp"), (b"GIF89a\x05\x00\x07\x00" + b"\0" * 8, "gif"),
])
def test_images_are_sniffed_by_magic_bytes(data, kind):
    info = media.sniff_image(data)
    assert info.type == kind and info.size == len(data)
    if kind in ("png", "gif"):
        assert (info.width, info.height) == ((20, 30) if kind == "png" else (5, 7))
    assert media.sniff_image(b"hello world") is None


@pytest.mark.parametrize("w,h", [(16, 16), (17, 33), (1024, 1024), (1536, 1024), (4096, 4096)])
def test_generated_pngs_are_valid_and_small(w, h):
    data = localdtn.make_png(w, h, b"a prompt")
    assert read_png(data) == (w, h)
    assert len(data) < 16 * 1024  # an answer the chain can carry at any allowed size


def test_answers_decode_by_kind():
    png = localdtn.make_png(32, 32)
    cid = media.cid_of(b"x")
    assert decode_answer(encode(["string"], ["plain text"])) == ("text", "plain text")
    assert decode_answer(encode(["bytes"], [png])) == ("image", png)
    assert decode_answer(encode(["string"], [cid])) == ("cid", cid)
    assert decode_answer(encode(["bytes"], [b"\xff\x00\xfe"])) == ("bytes", b"\xff\x00\xfe")
    assert decode_answer(b"\x01\x02") == ("raw", b"\x01\x02")
    gif = b"GIF89a\x05\x00\x07\x00\x00\x00\x00"
    assert decode_answer(encode(["bytes"], [gif])) == ("image", gif)
    talk = "GIF89a is the animated one"  # text that starts like a GIF is still text
    assert decode_answer(encode(["string"], [talk])) == ("text", talk)


def test_the_base_preset_uses_a_registered_model(tmp_path):
    s = resolve_settings(CliOptions(network="base"), env={}, cwd=tmp_path)
    assert s.model == "model.system.openai-gpt-5-nano" and s.sources["model"] == "preset base"
    assert s.models == FOUR
    assert [m.name for m in DTN_MODELS] == FOUR


# -------------------------------------------------------------------------- gateways

class _Lying(BaseHTTPRequestHandler):
    """A gateway that serves the same wrong bytes for every CID."""

    def do_GET(self):  # noqa: N802
        body = b"\x89PNG\r\n\x1a\nnot what you asked for"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def lying_gateway():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Lying)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_verifies_the_cid(tmp_path, lying_gateway):
    store = IpfsStore(tmp_path / "ipfs")
    cid = store.put(b"the real content")
    gw = Gateway(store).start()
    try:
        data, verified = media.fetch_cid(gw.url, media.parse_cid(cid))
        assert (data, verified) == (b"the real content", True)
        with pytest.raises(media.GatewayError, match="HTTP 404"):
            media.fetch_cid(gw.url, media.parse_cid(media.cid_of(b"unknown")))
    finally:
        gw.stop()
    with pytest.raises(media.GatewayError, match="do not hash to"):
        media.fetch_cid(lying_gateway, media.parse_cid(cid))


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pb(field: int, value) -> bytes:
    """One protobuf field: a varint (int) or length-delimited (bytes)."""
    if isinstance(value, int):
        return _uvarint(field << 3) + _uvarint(value)
    return _uvarint(field << 3 | 2) + _uvarint(len(value)) + value


def _b58(data: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n, out = int.from_bytes(data, "big"), ""
    while n:
        n, r = divmod(n, 58)
        out = alphabet[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def chunked_file(content: bytes, chunk: int = 1000) -> tuple:
    """(CIDv0 text, CAR bytes) of ``content`` as `ipfs add --raw-leaves` lays out a file of
    several chunks: raw leaves (CIDv1) under a dag-pb UnixFS File root (CIDv0, sha2-256), as
    written independently of dtnsess_cli.media from the dag-pb, UnixFS and CARv1 specs."""
    import hashlib

    blocks, links = [], b""
    for i in range(0, len(content), chunk):
        leaf = content[i:i + chunk]
        cid = bytes([1, 0x55, 0x12, 32]) + hashlib.sha256(leaf).digest()
        blocks.append((cid, leaf))
        links += _pb(2, _pb(1, cid) + _pb(2, b"") + _pb(3, len(leaf)))
    unixfs = _pb(1, 2) + _pb(3, len(content))
    for i in range(0, len(content), chunk):
        unixfs += _pb(4, len(content[i:i + chunk]))
    root = links + _pb(1, unixfs)  # dag-pb: Links (2) before Data (1)
    root_mh = bytes([0x12, 32]) + hashlib.sha256(root).digest()
    header = b"\xa2eroots\x81\xd8*X#\x00" + root_mh + b"gversion\x01"  # dag-cbor
    car = _uvarint(len(header)) + header
    for cid, data in [(root_mh, root)] + blocks:
        car += _uvarint(len(cid) + len(data)) + cid + data
    return _b58(root_mh), car


def _car_gateway(car: bytes, mime: str = "application/vnd.ipld.car"):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            wants_car = "vnd.ipld.car" in self.headers.get("Accept", "")
            self.send_response(200)
            self.send_header("Content-Type", mime if wants_car else "text/plain")
            self.send_header("Content-Length", str(len(car)))
            self.end_headers()
            self.wfile.write(car)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_a_chunked_file_is_verified_block_by_block_through_a_car():
    content = bytes(range(256)) * 12  # 3,072 bytes: 4 leaves
    cid_text, car = chunked_file(content)
    cid = media.parse_cid(cid_text)
    assert cid is not None and cid.version == 0 and not cid.verifiable
    server, url = _car_gateway(car)
    try:
        assert media.fetch_cid(url, cid) == (content, True)
    finally:
        server.shutdown()
        server.server_close()
    # one byte of one leaf changed: refused, whichever block it is
    bad = car[:-10] + bytes([car[-10] ^ 1]) + car[-9:]
    server, url = _car_gateway(bad)
    try:
        with pytest.raises(media.GatewayError, match="does not hash to its CID"):
            media.fetch_cid(url, cid)
    finally:
        server.shutdown()
        server.server_close()
    # a CAR of another file (its blocks are fine, but not the ones this CID names)
    _, other = chunked_file(b"something else entirely" * 100)
    server, url = _car_gateway(other)
    try:
        with pytest.raises(media.GatewayError, match="missing"):
            media.fetch_cid(url, cid)
    finally:
        server.shutdown()
        server.server_close()
    # a gateway that sends the plain file instead: given, but marked unverified
    server, url = _car_gateway(content, mime="text/plain")
    try:
        assert media.fetch_cid(url, cid) == (content, False)
    finally:
        server.shutdown()
        server.server_close()


# -------------------------------------------------------------------------- on the chain

@pytest.fixture
def node(make_node, system6):
    """The devnet's responder and its IPFS gateway, running in threads for one test."""
    return make_node(system6)


@pytest.fixture
def cli(make_cli, system6, user, node, monkeypatch):
    monkeypatch.setenv("DTNSESS_IPFS_GATEWAY", node.gateway_url)
    c = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(c, "20")
    return c


def _requests(system, user) -> int:
    return system.manager.functions.getUserRequests(user, 0, 1).call()[1]


def test_an_image_request_goes_over_ipfs_and_writes_the_verified_png(cli, system6, user,
                                                                     tmp_path):
    """`--image` sends call type IPFS (DTN's node cannot answer a DIRECT image); `--out` writes
    the image fetched through the gateway, checked against its CID. The network decides the
    size: DTN's image processor (and so the devnet) makes 1024x1024 whatever the call asks."""
    out = tmp_path / "fox.png"
    doc = cli.json("request", "a red fox", "--image", "320x200", "--out", str(out), "--wait",
                   "--yes")
    assert doc["model"] == "model.system.openai-gpt-image-1" and doc["calltype"] == "ipfs"
    ans = doc["response"]
    assert ans["kind"] == "cid" and media.cid_of(out.read_bytes()) == ans["cid"]
    assert ans["content"]["verified"] is True and ans["content"]["format"] == "png"
    assert read_png(out.read_bytes()) == (1024, 1024)
    assert doc["out"] == {"path": str(out), "size": out.stat().st_size}
    # the call the node got: abi.encode(string[] lines, uint64 w, uint64 h), call type IPFS
    stored = system6.router.functions.getRequest(bytes.fromhex(doc["request_id"][2:])).call()
    lines, width, height = localdtn.decode_call(localdtn.spec_of_id(stored[1]), stored[8][0])
    assert (list(lines), width, height, stored[8][2]) == (["a red fox"], 320, 200,
                                                          localdtn.CALL_IPFS)
    # human output: the sniffed type and size; an existing file is not overwritten...
    next_second(system6.w3)
    r = cli("request", "a blue fox", "--image", "64x48", "--out", str(out), "--wait", "--yes")
    assert_error(r, ExitCode.INPUT, "exists")
    # ...unless --force
    r = cli("request", "a blue fox", "--image", "64x48", "--out", str(out), "--wait", "--yes",
            "--force")
    assert_ok(r)
    assert "image: PNG, 1024x1024" in r.stdout and f"to {out}" in r.stdout
    assert "verified: hashes to the CID" in r.stdout


def test_a_direct_image_request_is_refused_and_never_answered(cli, w3, system6, user, node):
    """The API refuses a DIRECT image request before sending; one made anyway (straight to the
    contract) stays pending on the devnet, as on the real network, and the node says why."""
    import time

    from dtnsess_cli import Client, signer_from_key
    from dtnsess_cli.errors import InputError

    client = Client(cli.url, system6.manager.address, signer=signer_from_key(cli.key()))
    before = nonce(w3, user)
    with pytest.raises(InputError, match="cannot answer an image request with call type DIRECT"):
        client.make_ai_request("a cat", image=(64, 64), ipfs=False)
    call = encode(["string[]", "uint64", "uint64"], [["a cat"], 64, 64])
    with pytest.raises(InputError, match="DIRECT"):
        client.make_ai_request(None, call=call, model=localdtn.IMAGE_MODEL)
    assert nonce(w3, user) == before

    r = localdtn.transact(w3, system6.manager.functions.makeAIRequestWithCall(
        0, call, localdtn.CALL_DIRECT, localdtn.IMAGE_MODEL,
        ([localdtn.SYSTEM_TRUST_NAMESPACE], [], 1, 8, 0)), user, value=300_000)
    from web3.logs import DISCARD

    (ev,) = system6.router.events.RequestCreated().process_receipt(r, errors=DISCARD)
    rid = "0x" + ev["args"]["requestId"].hex()
    deadline = time.monotonic() + 20
    while not any(rid in line for line in node.log.lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    (line,) = [ln for ln in node.log.lines if rid in ln]
    assert "skipped" in line and "bytes output cannot be encoded" in line
    assert cli.json("response", rid)["status"] == "pending"


def test_ipfs_answers_are_cids_whose_gateway_bytes_hash_to_them(cli, node, tmp_path):
    import urllib.request

    doc = cli.json("request", "what is DTN?", "--ipfs", "--wait", "--yes")
    assert doc["calltype"] == "ipfs"
    ans = doc["response"]
    assert ans["kind"] == "cid" and ans["ipfs_url"] == "ipfs://" + ans["cid"]
    assert ans["content"]["verified"] is True and ans["content"]["type"] == "text"
    assert ans["content"]["text"].startswith("[devnet answer] You asked: what is DTN?")
    with urllib.request.urlopen(f"{node.gateway_url}/ipfs/{ans['cid']}") as resp:
        body = resp.read()
    assert media.cid_of(body) == ans["cid"]  # an independent hash of what the gateway serves

    out = tmp_path / "owl.png"
    next_second(cli.system.w3)
    doc = cli.json("request", "an owl", "--ipfs", "--image", "100x80", "--out", str(out),
                   "--wait", "--yes")
    ans = doc["response"]
    assert ans["kind"] == "cid" and ans["content"]["type"] == "image"
    assert media.cid_of(out.read_bytes()) == ans["cid"]
    assert read_png(out.read_bytes()) == (1024, 1024)  # the network decides the size
    # human output shows the CID and its ipfs:// URL
    r = cli("response", doc["request_id"])
    assert_ok(r)
    assert f"cid: {ans['cid']}" in r.stdout and f"url: ipfs://{ans['cid']}" in r.stdout
    assert "verified" in r.stdout and "image: PNG, 1024x1024" in r.stdout


def test_a_gateway_that_serves_wrong_bytes_is_refused(cli, tmp_path, lying_gateway):
    doc = cli.json("request", "an owl", "--ipfs", "--image", "100x80", "--wait", "--yes")
    rid = doc["request_id"]
    out = tmp_path / "owl.png"
    r = cli("response", rid, "--out", str(out), env={"DTNSESS_IPFS_GATEWAY": lying_gateway})
    assert r.exit_code == int(ExitCode.ERROR)
    assert "do not hash to" in r.stderr and doc["response"]["cid"] in r.stderr
    assert not out.exists()
    # the same through request --wait --out: the request is made, nothing is written
    next_second(cli.system.w3)
    r = cli("request", "a lark", "--ipfs", "--image", "100x80", "--wait", "--yes", "--out",
            str(out), env={"DTNSESS_IPFS_GATEWAY": lying_gateway})
    assert r.exit_code == int(ExitCode.ERROR) and "do not hash to" in r.stderr
    assert not out.exists()


def test_an_unverifiable_cid_is_written_but_reported_unverified(cli, system6, tmp_path,
                                                                 lying_gateway):
    """A CIDv0 (dag-pb) cannot be checked against the bytes: they are written, and both the
    human and the JSON output say they are not verified."""
    cid_v0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
    doc = cli.json("request", "a moth", "--ipfs", "--yes")
    localdtn.respond(system6, bytes.fromhex(doc["request_id"][2:]), worker=system6.worker,
                     node=system6.node_id, text=cid_v0)
    out = tmp_path / "moth.png"
    env = {"DTNSESS_IPFS_GATEWAY": lying_gateway}
    r = cli("response", doc["request_id"], "--out", str(out), env=env)
    assert_ok(r)
    assert "not verified" in r.stdout and "UNVERIFIED" in r.stdout and out.exists()
    got = cli.json("response", doc["request_id"], env=env)
    assert got["cid"] == cid_v0 and got["content"]["verified"] is False


@pytest.mark.parametrize("args,code,fragment", [
    (["--image", "0x0"], ExitCode.INPUT, "outside 16..4096"),
    (["--image", "5000x100"], ExitCode.INPUT, "outside 16..4096"),
    (["--image", "wide"], ExitCode.INPUT, "WIDTHxHEIGHT"),
    (["--image", "64x64", "--model", "model.system.openai-gpt-5"], ExitCode.INPUT, "text model"),
    (["--model", "model.system.openai-gpt-image-1"], ExitCode.INPUT, "--image"),
    (["--image", "64x64", "--out", "x.png"], ExitCode.INPUT, "needs --wait"),
    (["--image", "64x64", "--file", "prompts.txt"], None, None),
    (["--file", "prompts.txt", "--model", "model.system.openai-gpt-image-1"], ExitCode.INPUT,
     "image model"),
    (["--ipfs", "--out", "x.txt", "--wait"], ExitCode.CONFIG, "gateway"),
    (["--image", "64x64", "--out", "x.png", "--wait"], ExitCode.CONFIG, "gateway"),
])
def test_bad_image_requests_send_nothing(cli, w3, system6, user, tmp_path, args, code, fragment):
    (tmp_path / "prompts.txt").write_text("one\n")
    before = (nonce(w3, user), _requests(system6, user))
    prompt = [] if "--file" in args else ["a cat"]
    env = {"DTNSESS_IPFS_GATEWAY": None} if "--out" in args and "--wait" in args else None
    r = cli("request", *prompt, *args, "--yes", env=env)
    if code is None:
        assert r.exit_code != 0 and "--image" in r.stderr
    else:
        assert_error(r, code, fragment)
    assert (nonce(w3, user), _requests(system6, user)) == before


def test_an_existing_out_file_sends_nothing(cli, w3, system6, user, tmp_path):
    out = tmp_path / "keep.png"
    out.write_bytes(b"mine")
    before = nonce(w3, user)
    assert_error(cli("request", "a cat", "--image", "64x64", "--out", str(out), "--wait",
                     "--yes"), ExitCode.INPUT, "exists")
    assert nonce(w3, user) == before and out.read_bytes() == b"mine"


def test_response_decodes_each_kind(make_cli, system6, user, tmp_path):
    from cli_helpers import create_via_cli as create

    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create(cli, "20")
    png = localdtn.make_png(48, 32, b"x")
    cid = media.cid_of(png)
    hostile = "[bold]not bold[/] [link=http://x]y[/link]"
    payloads = {"text": encode(["string"], [hostile]), "image": encode(["bytes"], [png]),
                "cid": encode(["string"], [cid]), "bytes": encode(["bytes"], [b"\xff\xfe"])}
    for kind, payload in payloads.items():
        next_second(system6.w3)  # one request per session, user and second
        doc = cli.json("request", f"give me {kind}", "--yes")
        rid = bytes.fromhex(doc["request_id"][2:])
        localdtn.respond(system6, rid, worker=system6.worker, node=system6.node_id,
                         payload=payload)
        got = cli.json("response", doc["request_id"])
        assert got["kind"] == kind
        r = cli("response", doc["request_id"])
        assert_ok(r)
        if kind == "text":
            assert got["answer"] == hostile and hostile in r.stdout  # markup printed as written
        elif kind == "image":
            assert got["content"] == {"type": "image", "format": "png", "mime": "image/png",
                                      "size": len(png), "width": 48, "height": 32}
            assert "image: PNG, 48x32" in r.stdout
            out = tmp_path / "answer.png"
            assert_ok(cli("response", doc["request_id"], "--out", str(out)))
            assert out.read_bytes() == png
        elif kind == "cid":
            assert got["cid"] == cid and got["ipfs_url"] == f"ipfs://{cid}"
            assert got["content"] is None  # no gateway configured: shown, not fetched
            assert f"cid: {cid}" in r.stdout and "DTNSESS_IPFS_GATEWAY" in r.stdout
            r = cli("response", doc["request_id"], "--out", str(tmp_path / "n.png"))
            assert r.exit_code == int(ExitCode.CONFIG) and "gateway" in r.stderr
            assert not (tmp_path / "n.png").exists()
        else:
            assert got["content"] == {"type": "bytes", "size": 2}
            assert "not text or a known image type" in r.stdout


def test_doctor_fails_on_an_unregistered_model(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    # no session yet: the model cannot be checked, which is not a failure
    doc = cli.json("doctor")
    (check,) = [c for c in doc["checks"] if c["name"] == "model"]
    assert check["ok"] is None and "not checked" in check["detail"]
    create_via_cli(cli, "20")
    doc = cli.json("doctor")
    (check,) = [c for c in doc["checks"] if c["name"] == "model"]
    assert check["ok"] is True and "model.system.openai-gpt-5-nano" in check["detail"]
    r = cli("doctor", "--json", env={"DTNSESS_MODEL": "model.system.openai-gpt-4"})
    assert r.exit_code != 0
    (check,) = [c for c in load_json(r)["checks"] if c["name"] == "model"]
    assert check["ok"] is False
    assert "model.system.openai-gpt-4" in check["detail"] and "Model does not exist" in check["detail"]


def test_models_reads_what_the_chain_registered(make_cli, system6, deployer):
    """`models` lists the router's model manager's models and APIs, not a preset: a model
    registered on the chain shows up; the preset list is only a fallback that says so."""
    cli = make_cli(system6)
    doc = cli.json("models")
    assert doc["source"] == "chain" and doc["note"] is None
    assert [m["name"] for m in doc["models"]] == FOUR
    assert [m["kind"] for m in doc["models"]] == ["text", "text", "text", "image"]
    assert doc["models"][3]["api"] == "api.system.llm-simpleimage"
    assert doc["models"][3]["specs"] == "string[], uint64, uint64 -> bytes"
    assert [m["default"] for m in doc["models"]] == [True, False, False, False]
    localdtn.transact(system6.w3, system6.router.functions.registerModel(
        "model.acme.llama-70b", "api.system.llm-simpletext"), deployer)
    doc = cli.json("models")
    assert doc["models"][-1] == {"name": "model.acme.llama-70b", "api": "api.system.llm-simpletext",
                                 "specs": "string[] -> string", "kind": "text",
                                 "default": False, "listed": True}
    r = cli("models")
    assert_ok(r)
    assert "5 models (registered on the chain)" in r.stdout and "model.acme.llama-70b" in r.stdout
    # no contract to read: the preset's list, saying so
    doc = cli.json("models", "--network", "base",
                   env={"DTNSESS_RPC_URL": None, "DTNSESS_CONTRACT": None})
    assert [m["name"] for m in doc["models"]] == FOUR
    assert doc["source"] == "preset base" and "may differ" in doc["note"]


def test_the_devnet_registers_the_four(system6):
    """deploy_system registers DTN's Base models; model_specs is what the devnet state holds."""
    logs = system6.router.events.ModelRegistered().get_logs(from_block=0)
    names = {e["args"]["name"] for e in logs if e["address"] == system6.router.address}
    assert set(FOUR) <= names
    assert [m["name"] for m in localdtn.model_specs()] == FOUR
    assert localdtn.DEFAULT_MODEL == FOUR[0] == system6.model


def test_the_responder_refuses_a_call_its_model_cannot_decode(w3, system6, user, node):
    """A prompt sent as abi.encode(string[]) to the image model: the node decodes calls with the
    model's input types, cannot, and answers FAILURE (as a DTN node's decoding error would)."""
    import time

    fund(system6, user, 100)
    localdtn.transact(w3, system6.manager.functions.createSession(20 * system6.unit), user)
    r = localdtn.transact(w3, system6.manager.functions.makeAIRequest(
        "a cat", localdtn.IMAGE_MODEL, []), user, value=300_000)
    from web3.logs import DISCARD

    (ev,) = system6.router.events.RequestCreated().process_receipt(r, errors=DISCARD)
    rid = ev["args"]["requestId"]
    deadline = time.monotonic() + 20
    while not system6.router.functions.getRequest(rid).call()[6] and time.monotonic() < deadline:
        time.sleep(0.05)
    status, message, _ = system6.router.functions.fetchResponse(rid).call()
    assert status == localdtn.STATUS_FAILURE
    assert "call is not abi.encode(string[], uint64, uint64)" in message
