#!/usr/bin/env python3
"""Independent check of the vserv v1 test vectors, written from the spec's text alone.

Run from anywhere:

    pip install cryptography        # AES, ECDH and ECDSA verification over secp256k1
    python3 spec/reference/check_vectors.py

It recomputes, from the inputs recorded in spec/vectors/handshake.json (server identity scalar
and every byte each side drew from its RNG), every derived value of the handshake, re-seals
every record of the session byte for byte, opens it again as the receiver would, decodes the
command-layer messages, and compares the two complete streams. It checks the ECDSA signature
with `cryptography` and also re-derives it with a small RFC 6979 implementation below. For
spec/vectors/records.json it seals and opens every case and asserts that every `invalid`
record is rejected. From spec/datagrams.md it rebuilds every sealed datagram exchange of
spec/vectors/datagrams.json (key schedule, padding, the answer or the too-large record), and
from spec/transit.md every token and wrapped secret of spec/vectors/transit.json. HKDF, HMAC
framing, PKCS#7, base64url, the transcript and all encodings are implemented here from the spec
text (only the block cipher and curve operations come from
`cryptography`). Exit status 0 and a final "OK" line mean everything matched.
"""

import hashlib
import hmac
import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

VECTORS = Path(__file__).resolve().parent.parent / "vectors"

# --- spec §1: primitives -------------------------------------------------------------------

P = 2**256 - 2**32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)


def H(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def HMAC(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return HMAC(salt, ikm)


def hkdf_expand(prk: bytes, info: bytes, length: int = 32) -> bytes:
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = HMAC(prk, t, info, bytes([i]))
        out += t
        i += 1
    return out[:length]


def u16(x: int) -> bytes:
    return x.to_bytes(2, "big")


def u32(x: int) -> bytes:
    return x.to_bytes(4, "big")


def u64(x: int) -> bytes:
    return x.to_bytes(8, "big")


# --- spec §6.2: labels ---------------------------------------------------------------------

LABELS = {
    "extract_salt": b"vserv/1 handshake",
    "client_hs": b"vserv/1 c hs",
    "server_hs": b"vserv/1 s hs",
    "client_ap": b"vserv/1 c ap",
    "server_ap": b"vserv/1 s ap",
    "session_id": b"vserv/1 session id",
    "key": b"vserv/1 key",
    "mac": b"vserv/1 mac",
    "finished": b"vserv/1 finished",
    "key_update": b"vserv/1 key update",
    "signature_context": b"vserv/1 server signature",
}


def expand(secret: bytes, label: str, context: bytes = b"") -> bytes:
    return hkdf_expand(secret, LABELS[label] + context, 32)


# --- curve operations ----------------------------------------------------------------------


def scalar_ok(b: bytes) -> bool:
    return 1 <= int.from_bytes(b, "big") < N


def private_key(scalar: bytes) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256K1())


def compressed(scalar: bytes) -> bytes:
    return private_key(scalar).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )


def load_point(b: bytes) -> ec.EllipticCurvePublicKey:
    assert len(b) == 33 and b[0] in (2, 3), "points are 33-byte compressed SEC1"
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), b)


def ecdh(scalar: bytes, peer: bytes) -> bytes:
    # spec §6.1: the 32-byte x-coordinate of d·P
    return private_key(scalar).exchange(ec.ECDH(), load_point(peer))


def ecdsa_verify(point: bytes, msg: bytes, sig: bytes) -> bool:
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if not (1 <= r < N and 1 <= s <= N // 2):  # fixed width, low-S (spec §1)
        return False
    try:
        load_point(point).verify(encode_dss_signature(r, s), msg, ec.ECDSA(hashes.SHA256()))
        return True
    except Exception:
        return False


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], -1, P) % P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return (x, (lam * (a[0] - x) - a[1]) % P)


def _mul(k, pt):
    acc = None
    while k:
        if k & 1:
            acc = _add(acc, pt)
        pt = _add(pt, pt)
        k >>= 1
    return acc


def rfc6979_sign(secret: bytes, msg: bytes) -> bytes:
    """Deterministic ECDSA-SHA256 (RFC 6979 §3.2, no additional data), low-S, r || s."""
    x = int.from_bytes(secret, "big")
    h1 = H(msg)
    z = int.from_bytes(h1, "big")  # qlen = hlen = 256: bits2int is the plain integer
    x_oct, h_oct = secret, (z % N).to_bytes(32, "big")
    v, k = b"\x01" * 32, b"\x00" * 32
    k = HMAC(k, v, b"\x00", x_oct, h_oct)
    v = HMAC(k, v)
    k = HMAC(k, v, b"\x01", x_oct, h_oct)
    v = HMAC(k, v)
    while True:
        v = HMAC(k, v)
        nonce = int.from_bytes(v, "big")
        if 1 <= nonce < N:
            r = _mul(nonce, G)[0] % N
            s = pow(nonce, -1, N) * (z + r * x) % N
            if r and s:
                if s > N // 2:
                    s = N - s
                return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        k = HMAC(k, v, b"\x00")
        v = HMAC(k, v)


# --- spec §7: records ----------------------------------------------------------------------

MAX_PAYLOAD = 16384
MAX_FRAME_BODY = 16 + ((1 + MAX_PAYLOAD) // 16 + 1) * 16 + 32


class BadRecord(Exception):
    pass


class Keys:
    """One direction's traffic keys (spec §6.3, §7.2, §8)."""

    def __init__(self, secret: bytes):
        self.secret = secret
        self.key = expand(secret, "key")
        self.mac = expand(secret, "mac")
        self.seq = 0

    def next_generation(self) -> "Keys":
        return Keys(expand(self.secret, "key_update"))

    def seal(self, content_type: int, payload: bytes, iv: bytes) -> bytes:
        assert len(payload) <= MAX_PAYLOAD and len(iv) == 16
        p = bytes([content_type]) + payload
        k = 16 - len(p) % 16
        p += bytes([k]) * k
        enc = Cipher(algorithms.AES(self.key), modes.CBC(iv)).encryptor()
        ct = enc.update(p) + enc.finalize()
        length = 16 + len(ct) + 32
        tag = HMAC(self.mac, u64(self.seq), u32(length), iv, ct)
        self.seq += 1
        return u32(length) + iv + ct + tag

    def open(self, frame: bytes):
        length = int.from_bytes(frame[:4], "big")
        body = frame[4:]
        assert length == len(body), "frame length prefix"
        if not (64 <= length <= MAX_FRAME_BODY) or (length - 48) % 16:
            raise BadRecord("length")
        iv, ct, tag = body[:16], body[16:-32], body[-32:]
        if not hmac.compare_digest(HMAC(self.mac, u64(self.seq), u32(length), iv, ct), tag):
            raise BadRecord("tag")
        dec = Cipher(algorithms.AES(self.key), modes.CBC(iv)).decryptor()
        p = dec.update(ct) + dec.finalize()
        k = p[-1]
        if not (1 <= k <= 16) or p[-k:] != bytes([k]) * k:
            raise BadRecord("padding")
        p = p[:-k]
        if not p:
            raise BadRecord("empty")
        self.seq += 1
        return p[0], p[1:]


def keys_at(secret: bytes, seq: int) -> Keys:
    k = Keys(secret)
    k.seq = seq
    return k


# --- spec §4, §9, §12: encodings -----------------------------------------------------------


def fields(items) -> bytes:
    return u16(len(items)) + b"".join(u32(len(f)) + f for f in items)


def request(rid: int, name: str, args) -> bytes:
    return b"\x01" + u32(rid) + bytes([len(name)]) + name.encode() + fields(args)


def response_ok(rid: int, items) -> bytes:
    return b"\x02" + u32(rid) + b"\x00" + fields(items)


def close_body(code: int, reason: str) -> bytes:
    r = reason.encode()
    return u16(code) + u16(len(r)) + r


def frame(body: bytes) -> bytes:
    return u32(len(body)) + body


class Stream:
    """Hands out an endpoint's recorded RNG bytes in order (spec §5.4)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        assert self.pos + n <= len(self.data), "RNG stream exhausted"
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def scalar(self) -> bytes:
        while True:
            b = self.take(32)
            if scalar_ok(b):
                return b

    def done(self) -> bool:
        return self.pos == len(self.data)


def x(s: str) -> bytes:
    return bytes.fromhex(s)


checks = 0


def eq(name: str, got, want):
    global checks
    checks += 1
    if got != want:
        g = got.hex() if isinstance(got, bytes) else got
        w = want.hex() if isinstance(want, bytes) else want
        sys.exit(f"MISMATCH {name}:\n  computed {g}\n  expected {w}")


# --- handshake.json ------------------------------------------------------------------------


def check_handshake():
    v = json.loads((VECTORS / "handshake.json").read_text())
    for name, label in LABELS.items():
        eq(f"label {name}", v["labels"][name].encode(), label)
    inp, ks, pub = v["inputs"], v["key_schedule"], v["public"]
    crng = Stream(b"".join(x(d["bytes"]) for d in inp["client_rng"]))
    srng = Stream(b"".join(x(d["bytes"]) for d in inp["server_rng"]))
    identity = x(inp["server_identity_secret"])
    assert scalar_ok(identity)

    # Client: ClientHello (spec §4.1, §5.2, §5.4).
    client_random = crng.take(32)
    c = crng.scalar()
    C = compressed(c)
    CH = b"\x01" + b"VSRV" + u16(1) + client_random + C
    assert len(CH) == 72
    # Server: ServerHello.
    server_random = srng.take(32)
    s = srng.scalar()
    S = compressed(s)
    SH = b"\x02" + u16(1) + server_random + S
    assert len(SH) == 68
    static = compressed(identity)
    for k, want in [
        ("client_random", client_random), ("client_ephemeral_secret", c),
        ("client_ephemeral_public", C), ("server_random", server_random),
        ("server_ephemeral_secret", s), ("server_ephemeral_public", S),
        ("server_static_public", static),
    ]:
        eq(f"public.{k}", want, x(pub[k]))
    eq("fingerprint", "SHA256:" + H(static).hex(), pub["server_fingerprint"])

    # Key schedule (spec §6).
    shared = ecdh(c, S)
    eq("ECDH symmetric", ecdh(s, C), shared)
    prk = hkdf_extract(LABELS["extract_salt"], shared)
    th1 = H(CH, SH)
    client_hs = expand(prk, "client_hs", th1)
    server_hs = expand(prk, "server_hs", th1)
    th_sig = H(CH, SH, b"\x03", static)
    signed = LABELS["signature_context"] + b"\x00" + th_sig
    assert len(signed) == 57
    signature = x(ks["signature"])
    assert ecdsa_verify(static, signed, signature), "signature does not verify"
    r, s_ = signature[:32], int.from_bytes(signature[32:], "big")
    assert not ecdsa_verify(static, signed, r + (N - s_).to_bytes(32, "big")), "high-S accepted"
    eq("signature (RFC 6979)", rfc6979_sign(identity, signed), signature)
    th_sfin = H(CH, SH, b"\x03", static, signature)
    server_finished = HMAC(expand(server_hs, "finished"), th_sfin)
    SA = b"\x03" + static + signature + server_finished
    th_cfin = H(CH, SH, SA)
    client_finished = HMAC(expand(client_hs, "finished"), th_cfin)
    CF = b"\x04" + client_finished
    th_app = H(CH, SH, SA, CF)
    client_ap = expand(prk, "client_ap", th_app)
    server_ap = expand(prk, "server_ap", th_app)
    session_id = expand(prk, "session_id", th_app)
    client_ap1 = expand(client_ap, "key_update")
    computed = {
        "shared_secret": shared, "prk": prk, "th1": th1,
        "th_signature": th_sig, "signed_message": signed, "signature": signature,
        "th_server_finished": th_sfin, "server_finished": server_finished,
        "th_client_finished": th_cfin, "client_finished": client_finished, "th_app": th_app,
        "session_id": session_id,
    }
    for name, secret in [("client_hs", client_hs), ("server_hs", server_hs),
                         ("client_ap", client_ap), ("server_ap", server_ap)]:
        computed[f"{name}_secret"] = secret
        computed[f"{name}_key"] = expand(secret, "key")
        computed[f"{name}_mac"] = expand(secret, "mac")
        if name.endswith("_hs"):
            computed[f"{name}_finished_key"] = expand(secret, "finished")
    computed["client_ap_secret_gen1"] = client_ap1
    computed["client_ap_key_gen1"] = expand(client_ap1, "key")
    computed["client_ap_mac_gen1"] = expand(client_ap1, "mac")
    eq("key_schedule names", sorted(computed), sorted(ks))
    for name, value in computed.items():
        eq(f"key_schedule.{name}", value, x(ks[name]))

    # The session (spec §5.2, §8, §9, §12), sealed with the recorded IVs in sending order.
    c_hs, s_hs = Keys(client_hs), Keys(server_hs)
    c_ap, s_ap = Keys(client_ap), Keys(server_ap)
    ping1, ping2 = inp["first_ping_payload"].encode(), inp["second_ping_payload"].encode()
    produced = [("client_to_server", frame(CH)), ("server_to_client", frame(SH))]
    produced.append(("server_to_client", s_hs.seal(0x03, SA[1:], srng.take(16))))
    produced.append(("client_to_server", c_hs.seal(0x04, CF[1:], crng.take(16))))
    produced.append(("client_to_server", c_ap.seal(0x17, request(1, "ping", [ping1]), crng.take(16))))
    produced.append(("server_to_client", s_ap.seal(0x17, response_ok(1, [ping1]), srng.take(16))))
    produced.append(("client_to_server", c_ap.seal(0x10, b"", crng.take(16))))
    c_ap = c_ap.next_generation()
    assert c_ap.seq == 0 and c_ap.secret == client_ap1
    produced.append(("client_to_server", c_ap.seal(0x17, request(2, "ping", [ping2]), crng.take(16))))
    produced.append(("server_to_client", s_ap.seal(0x17, response_ok(2, [ping2]), srng.take(16))))
    close = close_body(inp["close_code"], inp["close_reason"])
    produced.append(("client_to_server", c_ap.seal(0x11, close, crng.take(16))))
    assert crng.done() and srng.done(), "RNG streams not consumed exactly"

    msgs = v["messages"]
    eq("message count", len(produced), len(msgs))
    for (direction, wire), m in zip(produced, msgs):
        eq(f"{m['name']}: direction", direction, m["direction"])
        eq(f"{m['name']}: wire", wire, x(m["wire"]))
    for d in ("client_to_server", "server_to_client"):
        eq(f"stream {d}", b"".join(w for dd, w in produced if dd == d), x(v["streams"][d]))

    # Open every record as its receiver would, with fresh receive state per secret.
    secrets = {"client_hs": client_hs, "server_hs": server_hs, "client_ap": client_ap,
               "server_ap": server_ap, "client_ap_gen1": client_ap1}
    receivers = {}
    for m in msgs:
        if m["framing"] == "plaintext":
            eq(f"{m['name']}: frame", frame(x(m["body"])), x(m["wire"]))
            continue
        rk = receivers.setdefault(m["keys"], Keys(secrets[m["keys"]]))
        eq(f"{m['name']}: seq", rk.seq, m["seq"])
        ct, payload = rk.open(x(m["wire"]))
        eq(f"{m['name']}: content type", ct, m["content_type"])
        eq(f"{m['name']}: payload", payload, x(m["payload"]))
        eq(f"{m['name']}: IV", x(m["wire"])[4:20], x(m["iv"]))
        dec = m["decoded"]
        if dec["kind"] == "request":
            eq(f"{m['name']}: request", payload,
               request(dec["id"], dec["name"], [x(a) for a in dec["args"]]))
        elif dec["kind"] == "response":
            eq(f"{m['name']}: response", payload,
               response_ok(dec["id"], [x(f) for f in dec["fields"]]))
        elif dec["kind"] == "close":
            eq(f"{m['name']}: close", payload, close_body(dec["code"], dec["reason"]))
        elif dec["kind"] == "key_update":
            eq(f"{m['name']}: key update", payload, b"")
        # A replay of the same record at the next sequence number must fail.
        try:
            keys_at(secrets[m["keys"]], m["seq"] + 1).open(x(m["wire"]))
            sys.exit(f"{m['name']}: accepted at the wrong sequence number")
        except BadRecord:
            pass

    for r in v["refuse_frames"]:
        eq(f"refuse {r['code']}", frame(b"\x15" + u16(r["code"])), x(r["wire"]))


# --- records.json --------------------------------------------------------------------------


def check_records():
    v = json.loads((VECTORS / "records.json").read_text())
    secret = x(v["traffic_secret"])
    eq("records key", expand(secret, "key"), x(v["key"]))
    eq("records mac", expand(secret, "mac"), x(v["mac"]))
    for c in v["cases"]:
        if "payload" in c:
            payload = x(c["payload"])
        else:
            pat = c["payload_pattern"]
            assert pat["rule"] == "byte i = i mod 251"
            payload = bytes(i % 251 for i in range(pat["len"]))
        wire = keys_at(secret, c["seq"]).seal(c["content_type"], payload, x(c["iv"]))
        eq(f"{c['name']}: length", len(wire), c["wire_len"])
        eq(f"{c['name']}: body length", len(wire) - 4,
           16 + ((1 + len(payload)) // 16 + 1) * 16 + 32)
        if "wire" in c:
            eq(f"{c['name']}: wire", wire, x(c["wire"]))
        else:
            eq(f"{c['name']}: wire sha256", H(wire), x(c["wire_sha256"]))
            eq(f"{c['name']}: wire prefix", wire[: len(x(c["wire_prefix"]))], x(c["wire_prefix"]))
        eq(f"{c['name']}: open", keys_at(secret, c["seq"]).open(wire), (c["content_type"], payload))
    for bad in v["invalid"]:
        try:
            keys_at(secret, bad["seq"]).open(x(bad["wire"]))
        except BadRecord as e:
            print(f"  rejected as required ({e}): {bad['name']}")
            continue
        sys.exit(f"invalid record accepted: {bad['name']}")
    return len(v["cases"]), len(v["invalid"])


# --- datagrams.json (spec/datagrams.md) ----------------------------------------------------

DATAGRAM_SALT = b"vserv/1 datagram"
MAX_DATAGRAM = 8192
AMPLIFICATION_FACTOR = 3


def seal_body(keys: Keys, content_type: int, payload: bytes, iv: bytes) -> bytes:
    """A datagram's body: one record of sequence 0 without its length prefix (§2)."""
    return keys.seal(content_type, payload, iv)[4:]


def open_body(keys: Keys, body: bytes):
    return keys.open(u32(len(body)) + body)


def check_datagrams():
    v = json.loads((VECTORS / "datagrams.json").read_text())
    server_secret, server_key = x(v["server_secret"]), x(v["server_key"])
    eq("datagrams: server key", compressed(server_secret), server_key)
    eq("datagrams: key query", x(v["key_query"]), b"\xd0" + bytes(63))
    eq("datagrams: key answer", x(v["key_answer"]), b"\xd3" + server_key)
    for c in v["cases"]:
        name = c["name"]
        rng = Stream(x(c["random"]))
        eph = rng.scalar()
        nonce, iv = rng.take(16), rng.take(16)
        assert rng.done(), f"{name}: unused random bytes"
        header = b"\xd1" + compressed(eph) + nonce + u64(c["time"])
        eq(f"{name}: header", header, x(c["header"]))
        # §3, computed from both ends: the client's ephemeral scalar, the server's identity scalar
        shared = ecdh(eph, server_key)
        eq(f"{name}: ECDH agrees", ecdh(server_secret, compressed(eph)), shared)
        sched = c["schedule"]
        eq(f"{name}: shared", shared, x(sched["shared_secret"]))
        prk = hkdf_extract(DATAGRAM_SALT, shared)
        eq(f"{name}: prk", prk, x(sched["prk"]))
        context = H(header, server_key)
        eq(f"{name}: context", context, x(sched["context"]))
        secrets = {}
        for side in ("request", "response"):
            secret = hkdf_expand(prk, b"vserv/1 datagram " + side.encode() + context)
            secrets[side] = secret
            eq(f"{name}: {side} secret", secret, x(sched[side]["secret"]))
            eq(f"{name}: {side} key", expand(secret, "key"), x(sched[side]["key"]))
            eq(f"{name}: {side} mac", expand(secret, "mac"), x(sched[side]["mac"]))
        # §2.1: the sealed request, padded with zeros so the datagram is at least pad_to bytes
        req = x(c["request"])
        fixed = 58 + 16 + 32
        blocks = max(1, -(-max(c["pad_to"] - fixed, 0) // 16))
        while blocks > 1 and fixed + 16 * blocks > MAX_DATAGRAM:
            blocks -= 1
        payload = u16(len(req)) + req
        payload += bytes(max(0, 16 * blocks - 2 - len(payload)))
        datagram = header + seal_body(Keys(secrets["request"]), 0x51, payload, iv)
        eq(f"{name}: request datagram", datagram, x(c["request_datagram"]))
        assert len(datagram) >= max(122, c["pad_to"]) and len(datagram) <= MAX_DATAGRAM
        # the server's side: open, check the padding, read the request back
        ctype, opened = open_body(Keys(secrets["request"]), datagram[58:])
        n = int.from_bytes(opened[:2], "big")
        eq(f"{name}: request type", ctype, 0x51)
        eq(f"{name}: request opened", opened[2 : 2 + n], req)
        assert not any(opened[2 + n :]), f"{name}: padding must be zeros"
        # §6: the answer, or the too-large record when 3x the request is not enough
        resp = x(c["response"])
        riv = x(c["response_iv"])
        full = b"\xd2" + nonce + seal_body(Keys(secrets["response"]), 0x52, resp, riv)
        if len(full) <= min(AMPLIFICATION_FACTOR * len(datagram), MAX_DATAGRAM):
            eq(f"{name}: answer kind", c["answer"], "response")
            answer = full
        else:
            needed = -(-len(full) // AMPLIFICATION_FACTOR) if len(full) <= MAX_DATAGRAM else 8193
            eq(f"{name}: needed", {"too_large_needed": needed}, c["answer"])
            answer = b"\xd2" + nonce + seal_body(Keys(secrets["response"]), 0x53, u16(needed), riv)
            eq(f"{name}: too-large answer length", len(answer), 81)
        eq(f"{name}: response datagram", answer, x(c["response_datagram"]))
        # a wrong server key gives other keys: the request no longer opens
        other = hkdf_expand(hkdf_extract(DATAGRAM_SALT, shared), b"vserv/1 datagram request"
                            + H(header, compressed(b"\x44" * 32)))
        try:
            open_body(Keys(other), datagram[58:])
        except BadRecord:
            pass
        else:
            sys.exit(f"{name}: a request opened under another server's keys")
    return len(v["cases"])


# --- transit.json (spec/transit.md) --------------------------------------------------------

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 §5), written out so nothing here trusts a library's
    padding rules."""
    bits = "".join(f"{b:08b}" for b in data)
    bits += "0" * (-len(bits) % 6)
    return "".join(B64URL[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


def cbc_hmac_seal(enc: bytes, mac: bytes, iv: bytes, data: bytes, covered: bytes) -> bytes:
    k = 16 - len(data) % 16
    enc_ = Cipher(algorithms.AES(enc), modes.CBC(iv)).encryptor()
    ct = enc_.update(data + bytes([k]) * k) + enc_.finalize()
    return iv + ct + HMAC(mac, covered, iv, ct)


def check_transit():
    v = json.loads((VECTORS / "transit.json").read_text())
    for t in v["tokens"]:
        m = x(t["material"])
        enc = hkdf_expand(m, b"vserv/1 transit enc")
        mac = hkdf_expand(m, b"vserv/1 transit mac")
        header = f"vserv:v1:{t['key_name']}:{t['version']}:"
        body = cbc_hmac_seal(enc, mac, x(t["iv"]), x(t["data"]), header.encode())
        eq(f"transit {t['name']}: token", header + b64url(body), t["token"])
    prk = hkdf_extract(b"vserv/1 master", x(v["master_key"]))
    for w in v["wrapped"]:
        ctx = w["context"]
        if "transit" in ctx:
            c = ctx["transit"]
            info = (b"transit\x00" + c["user"].encode() + b"\x00" + c["name"].encode() + b"\x00"
                    + u32(c["version"]))
        else:
            info = b"totp\x00" + ctx["totp"]["user"].encode()
        eq(f"transit {w['name']}: info", info, x(w["info"]))
        enc = hkdf_expand(prk, b"vserv/1 wrap enc" + info)
        mac = hkdf_expand(prk, b"vserv/1 wrap mac" + info)
        eq(f"transit {w['name']}: wrapped",
           cbc_hmac_seal(enc, mac, x(w["iv"]), x(w["secret"]), info), x(w["wrapped"]))
    return len(v["tokens"]), len(v["wrapped"])


if __name__ == "__main__":
    check_handshake()
    n_ok, n_bad = check_records()
    n_datagrams = check_datagrams()
    n_tokens, n_wrapped = check_transit()
    print(f"OK: handshake.json, records.json, datagrams.json and transit.json reproduced "
          f"({checks} comparisons, {n_ok} record cases, {n_bad} invalid records rejected, "
          f"{n_datagrams} datagram exchanges, {n_tokens} transit tokens, "
          f"{n_wrapped} wrapped secrets)")
