#!/usr/bin/env python3
"""Writes seed inputs for the decoding fuzz targets into fuzz/corpus/<target>/seed-*.

Each seed is one selector byte (the frame limit, see rave_fuzz::max_frame_for; 3 = the
production limit) followed by a stream of length-prefixed frames, encoded the way
rmp_serde::to_vec_named encodes rave's messages (enum variants keyed by name, struct fields by
name, byte fields as msgpack bin). Run it through fuzz/scripts/seeds, which installs msgpack.
"""
import hashlib
import os
import struct
import sys

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "corpus")
MAGIC = struct.unpack(">I", b"RAVE")[0]
# rave_transport::PROTOCOL_VERSION (6: `Stats` counts the leader's connections; 5: watches, conditional writes, errors with positions and
# conditions, iterator snapshots; 4: `Sequence` reads the commit sequence; 3: writes are one
# `Write` op, optionally stamped for
# exactly-once delivery; 2: iterator credit counts bytes of entries).
VERSION = 6


def enc(obj):
    return msgpack.packb(obj, use_bin_type=True)


def frames(*bodies):
    return b"".join(struct.pack(">I", len(b)) + b for b in bodies)


def rng(gt=None, gte=None, lt=None, lte=None, reverse=False, limit=None, projection="KeysAndValues"):
    return {"gt": gt, "gte": gte, "lt": lt, "lte": lte, "reverse": reverse, "limit": limit,
            "projection": projection}


hello = enc({"Hello": {"magic": MAGIC, "version": VERSION}})
client = [
    hello,
    enc({"Hello": {"magic": 0xDEADBEEF, "version": VERSION}}),
    enc({"Hello": {"magic": MAGIC, "version": 1}}),
    enc({"Request": {"id": 1, "op": "Ping"}}),
    enc({"Request": {"id": 2, "op": "Stats"}}),
    enc({"Request": {"id": 2, "op": {"Get": {"key": b"k1"}}}}),
    enc({"Request": {"id": 3, "op": {"GetMany": {"keys": [b"k1", b"", b"k2"]}}}}),
    enc({"Request": {"id": 4, "op": {"Write": {"stamp": None, "write": {"Batch": [
        {"Put": {"key": b"k1", "value": b"v1"}}]}}}}}),
    enc({"Request": {"id": 5, "op": {"Write": {"stamp": None, "write": {"Batch": [
        {"Del": {"key": b"k1"}}]}}}}}),
    enc({"Request": {"id": 6, "op": {"Write": {"stamp": {"client": bytes(range(16)), "seq": 3,
                                                        "floor": 2},
                                              "write": {"Batch": [
        {"Put": {"key": b"a", "value": b"1"}}, {"Del": {"key": b"b"}}]}}}}}),
    enc({"Request": {"id": 7, "op": {"Write": {"stamp": None, "write": {
        "Clear": rng(gte=b"a", lt=b"z")}}}}}),
    enc({"IterOpen": {"iter": 1, "range": rng(), "credit": 1048576}}),
    enc({"IterOpen": {"iter": 2, "range": rng(gt=b"a", lte=b"k", reverse=True, limit=10,
                                               projection="KeysOnly"), "credit": 1}}),
    enc({"IterOpen": {"iter": 3, "range": rng(projection="ValuesOnly"), "credit": 0}}),
    enc({"IterCredit": {"iter": 1, "credit": 4294967295}}),
    enc({"IterClose": {"iter": 1}}),
    enc({"Request": {"id": 8, "op": {"Write": {"stamp": None, "write": {"Conditional": {
        "checks": [{"key": b"k", "expected": None}, {"key": b"j", "expected": b"1"}],
        "ops": [{"Put": {"key": b"k", "value": b"v"}}]}}}}}}),
    enc({"WatchOpen": {"watch": 1, "range": rng(gte=b"a"), "from": None, "credit": 1048576}}),
    enc({"WatchOpen": {"watch": 2, "range": rng(), "from": 0, "credit": 1}}),
    enc({"WatchCredit": {"watch": 1, "credit": 4096}}),
    enc({"WatchClose": {"watch": 1}}),
]
server = [
    enc({"Welcome": {"version": VERSION, "epoch": 7, "pid": 4242}}),
    enc({"Refused": {"message": "bad magic"}}),
    enc({"Response": {"id": 1, "result": {"Ok": "Done"}}}),
    enc({"Response": {"id": 2, "result": {"Ok": {"Value": b"v"}}}}),
    enc({"Response": {"id": 2, "result": {"Ok": {"Value": None}}}}),
    enc({"Response": {"id": 3, "result": {"Ok": {"Values": [b"v", None, b""]}}}}),
    enc({"Response": {"id": 4, "result": {"Err": {"kind": "Corruption", "message": "bad block"}}}}),
    enc({"IterChunk": {"iter": 1, "snapshot": 12, "entries": [{"key": b"a", "value": b"1"},
                                              {"key": b"b", "value": b""}], "end": False}}),
    enc({"IterChunk": {"iter": 1, "entries": [], "end": True}}),
    enc({"IterError": {"iter": 2, "error": {"kind": "Io", "message": "disk"}}}),
    enc({"Response": {"id": 5, "result": {"Err": {"kind": "ConditionFailed", "message": "no",
                                                  "condition": {"key": b"k", "current": b"v"}}}}}),
    enc({"WatchEvents": {"watch": 1, "events": [
        {"Progress": {"sequence": 3}},
        {"Commit": {"sequence": 4, "changes": [
            {"Put": {"key": b"a", "value": b"1"}}, {"Del": {"key": b"b"}},
            {"Clear": {"range": rng(gte=b"c", lt=b"d")}}]}}]}}),
    enc({"WatchError": {"watch": 1, "error": {"kind": "Compacted", "message": "old",
                                              "position": 9}}}),
]


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


for target, bodies in (("frame_client", client), ("server_message", server)):
    for i, body in enumerate(bodies):
        write(target, "%02d" % i, b"\x03" + frames(body))
    write(target, "all", b"\x03" + frames(*bodies))
    write(target, "small-limit", b"\x02" + frames(*bodies))
    # A length prefix far over any limit (4 GiB - 1), and a truncated frame.
    write(target, "huge-prefix", b"\x03" + b"\xff\xff\xff\xff" + bodies[0])
    write(target, "truncated", b"\x03" + frames(bodies[0])[:-2])

# The follower target: the bytes a leader writes after its Welcome (the client's ids start at 1).
for i, body in enumerate(server[1:]):
    write("follower", "%02d" % i, frames(body))
write("follower", "all", frames(*server[1:]))
sys.exit(0)
