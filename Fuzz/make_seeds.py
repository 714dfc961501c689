#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target into Fuzz/corpus/<target>/ (valid inputs the
fuzzers start from and mutate). Re-run after a format change."""

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts" / "e2e"))
from grpc_differential import f_bytes, f_msg, f_varint, put, rng, txn, op_put, op_range, compare, delete  # noqa: E402

ROOT = Path(__file__).resolve().parent / "corpus"


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def write(target: str, name: str, data: bytes) -> None:
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


# FuzzEtcdMessages: a selector byte (index into the harness's type list) and the message.
messages = {
    0: rng("key", "kez", limit=10, revision=3, sort_order=1, keys_only=True),
    2: put("key", "value", lease=7, prev_kv=True),
    4: delete("a", "b", prev_kv=True),
    6: txn([compare("k", 0, 4, value=b"v")], [op_put(put("k", "w")), op_range(rng("k"))], [op_range(rng("j"))]),
    8: f_varint(1, 12) + f_varint(2, 1),
    9: f_msg(1, f_bytes(1, "w") + f_bytes(2, "x") + f_varint(3, 5) + f_varint(4, 1) + f_varint(6, 1)),
    11: f_varint(1, 60) + f_varint(2, 99),
    12: f_varint(1, 99),
    16: f_bytes(1, "http://127.0.0.1:2380") + f_varint(2, 1),
    19: f_varint(1, 1) + f_varint(2, 1),
    21: f_varint(1, 5),
    23: f_bytes(1, "root") + f_bytes(2, "pw"),
}
for selector, body in messages.items():
    write("FuzzEtcdMessages", f"seed-{selector}", bytes([selector]) + body)

# FuzzWAL: first byte even = version 2 (batch frames), odd = version 1 (bare records).
def record(rtype: int, payload: bytes) -> bytes:
    return struct.pack("<II", len(payload), crc32c(bytes([rtype]) + payload)) + bytes([rtype]) + payload


def frame(records: list[bytes], file_offset: int) -> bytes:
    body = b"".join(records)
    zero = 0
    start = 0
    while start < len(body):
        end = min(((file_offset + 28 + start) // 512 + 1) * 512 - file_offset - 28, len(body))
        if not any(body[start:end]):
            zero += 1
        start = end
    head = b"LTBF" + struct.pack("<IQII", len(records), len(body), zero, crc32c(body))
    return head + struct.pack("<I", crc32c(head)) + body


recs = [record(1, b"first"), record(2, bytes(700)), record(3, b"x" * 40)]
v2 = frame(recs[:1], 24)
v2 += frame(recs[1:], 24 + len(v2))
write("FuzzWAL", "seed-v2", b"\x00" + v2)
write("FuzzWAL", "seed-v2-torn", b"\x00" + v2[:-30] + bytes(30))
write("FuzzWAL", "seed-v1", b"\x01" + b"".join(recs))

# FuzzSnapshotFile: a valid snapshot of index 7.
payload = b"snapshot payload " * 20
head = b"LTSNAP01" + struct.pack("<IIQQI", 1, 0, 7, len(payload), crc32c(payload))
write("FuzzSnapshotFile", "seed-valid", head + struct.pack("<I", crc32c(head)) + payload)

# FuzzReplicaState: the body after magic and version (the harness frames it): member 1,
# vector {1: 2}, one key with one version.
dot = f_varint(1, 1) + f_varint(2, 1)
version = f_msg(1, dot) + f_bytes(4, b'{"a":1}')
write("FuzzReplicaState", "seed-state", f_varint(1, 1) + f_msg(2, f_msg(1, f_varint(1, 1) + f_varint(2, 2)))
      + f_msg(5, f_bytes(1, "/k") + f_msg(2, version)))

# FuzzJSONMerge: base, then concurrent versions, separated by 0xFF.
docs = [
    [b'{"metadata":{"name":"p","labels":{"a":"1"}},"spec":{"containers":[{"name":"c","image":"i:1"}]}}',
     b'{"metadata":{"name":"p","labels":{"a":"1","b":"2"}},"spec":{"containers":[{"name":"c","image":"i:1"}]}}',
     b'{"metadata":{"name":"p","labels":{"a":"3"}},"spec":{"containers":[{"name":"c","image":"i:2"},{"name":"d"}]}}'],
    [b'{"items":[1,2,3],"n":1.5e3}', b'{"items":[1,2,3,4],"n":1500}', b'{"items":[0,1,3],"x":null}'],
    [b'{}', b'{"a":[1,{"b":true}]}', b'{"a":"s\\u00e9"}'],
]
for i, parts in enumerate(docs):
    write("FuzzJSONMerge", f"seed-{i}", b"\xff".join(parts))
print("seeds written to", ROOT)

# FuzzGRPCServer: programs of (opcode, operands) bytes; see the target for the opcodes.
# 0: headers (pick, flags, path, content-type, timeout, encoding); 2: a message (pick, flags,
# length/4, payload); 4: a raw frame; 5: reset; 6: window update; 7: time passes.
def headers(flags: int, path: int, ct: int = 0, timeout: int = 0, enc: int = 0) -> bytes:
    return bytes([0, 0, flags, path, ct, timeout, enc])

def message(pick: int, flags: int, payload: bytes) -> bytes:
    assert len(payload) % 4 == 0
    return bytes([2, pick, flags, len(payload) // 4]) + payload

grpc_seeds = {
    "unary-echo": headers(0x40, 0) + message(0, 1, b"abcd" * 3),
    "unary-gzip": headers(0x40, 0, enc=1) + message(0, 0x11, b"zzzz" * 8),
    "stream-echo": headers(0x40, 2) + message(0, 0, b"ping") + message(0, 0, b"pong") + message(0, 1, b"end!"),
    "deadline": headers(0x40, 0, timeout=2) + bytes([7, 0, 200]),
    "reset": headers(0x40, 2) + message(0, 0, b"once") + bytes([5, 0, 8]),
    "partial-many": b"".join(headers(0x40, 0) for _ in range(6)) + b"".join(message(i, 0x40, b"xxxx" * 60) for i in range(6)),
    "big-unread": headers(0x40, 1) + message(0, 1, bytes([200, 0, 0, 0])) + bytes([6, 0, 255, 20, 0]),
    "bad-headers": headers(0x40, 0, ct=3) + headers(0, 3, timeout=6) + headers(0x40, 4, enc=3),
    "raw-frames": bytes([4, 0, 6, 0, 0, 8]) + b"\0" * 8 + bytes([4, 0, 1, 5, 1, 4, 0x82, 0x86, 0x84, 0x41]),
}
for name, data in grpc_seeds.items():
    write("FuzzGRPCServer", name, data)


# FuzzBoltFile: a small bbolt database as etcd writes it (512-byte pages): a `key` bucket whose
# tree is a branch page over two leaf pages (revision → mvccpb.KeyValue, one a tombstone), and
# an inline `lease` bucket.
def fnv1a64(data: bytes) -> int:
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


PAGE = 512


def page_header(pgid: int, flags: int, count: int) -> bytes:
    return struct.pack("<QHHI", pgid, flags, count, 0)


def leaf(entries: list[tuple[int, bytes, bytes]], pgid: int = 0) -> bytes:
    out = page_header(pgid, 0x02, len(entries))
    data = b""
    for i, (flags, k, v) in enumerate(entries):
        pos = 16 * (len(entries) - i) + len(data)
        out += struct.pack("<IIII", flags, pos, len(k), len(v))
        data += k + v
    return out + data


def branch(children: list[tuple[bytes, int]], pgid: int) -> bytes:
    out = page_header(pgid, 0x01, len(children))
    data = b""
    for i, (k, child) in enumerate(children):
        pos = 16 * (len(children) - i) + len(data)
        out += struct.pack("<IIQ", pos, len(k), child)
        data += k
    return out + data


def rev(main: int, tomb: bool = False) -> bytes:
    return struct.pack(">Q", main) + b"_" + struct.pack(">Q", 0) + (b"t" if tomb else b"")


def kv(key: bytes, value: bytes, r: int, lease: int = 0) -> bytes:
    body = f_bytes(1, key) + f_varint(2, r) + f_varint(3, r) + f_varint(4, 1) + f_bytes(5, value)
    return body + (f_varint(6, lease) if lease else b"")


def meta(pgid: int, txid: int) -> bytes:
    m = struct.pack("<IIII", 0xED0CDAED, 2, PAGE, 0) + struct.pack("<QQ", 3, 0) + struct.pack("<QQQ", 2, 7, txid)
    return page_header(pgid, 0x04, 0) + m + struct.pack("<Q", fnv1a64(m))


def pad(p: bytes) -> bytes:
    assert len(p) <= PAGE
    return p + b"\0" * (PAGE - len(p))


lease_inline = struct.pack("<QQ", 0, 0) + leaf([(0, struct.pack(">q", 42), f_varint(1, 42) + f_varint(2, 600))])
root = leaf([(1, b"key", struct.pack("<QQ", 5, 0)), (1, b"lease", lease_inline)], 3)
left = leaf([(0, rev(2), kv(b"/a", b"1", 2)), (0, rev(3), kv(b"/b", b"2", 3, lease=42))], 4)
right = leaf([(0, rev(4, tomb=True), kv(b"/a", b"", 4)), (0, rev(5), kv(b"/c", b"3", 5))], 6)
db = b"".join(pad(p) for p in [meta(0, 1), meta(1, 2), page_header(2, 0x10, 0), root, left,
                                branch([(rev(2), 4), (rev(4), 6)], 5), right])
write("FuzzBoltFile", "seed-etcd-like", db)
