#!/usr/bin/env python3
"""Check the hand-written Swift codec (Sources/EtcdAPI) against Protos/etcd with protoc.

RoundTripTests writes the encoding of each of its fully populated sample messages to
$LATTICE_PROTO_DUMP/<Message>[-n].bin. This script compiles Protos/etcd/*.proto with protoc
(PyPI `grpcio-tools`) and, for every dumped file, parses it with the generated Python classes and
checks that:
  - it parses, with no unknown fields at any depth (every field number and wire type the Swift
    code writes is the one the .proto declares);
  - every field of the message is set (the sample covers the whole message; a oneof counts once);
  - protobuf's own serialization of the parsed message is byte-identical (same field order,
    packing and default elision as Go's encoder).
It also reports messages of the .proto files that no sample covers.

    pip install grpcio-tools
    mkdir -p /tmp/dump && LATTICE_PROTO_DUMP=/tmp/dump swift test --filter RoundTripTests
    python3 scripts/check-protos.py /tmp/dump
"""

import glob
import importlib
import os
import re
import sys
import tempfile

from grpc_tools import protoc
from google.protobuf import unknown_fields

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTOS = os.path.join(ROOT, "Protos")


def compile_protos(out):
    files = sorted(glob.glob(os.path.join(PROTOS, "etcd", "*.proto")))
    args = ["protoc", f"-I{PROTOS}", f"-I{os.path.dirname(protoc.__file__)}/_proto", f"--python_out={out}"] + files
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    return [importlib.import_module(f"etcd.{os.path.basename(f)[:-6]}_pb2") for f in files]


def unknown(msg, path):
    """Paths of unknown fields in msg and its sub-messages."""
    found = []
    if len(unknown_fields.UnknownFieldSet(msg)):
        found.append(path)
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        values = value if field.is_repeated else [value]
        for i, v in enumerate(values):
            found += unknown(v, f"{path}.{field.name}[{i}]")
    return found


def unset_fields(msg):
    present = {f.name for f, _ in msg.ListFields()}
    missing = []
    for field in msg.DESCRIPTOR.fields:
        if field.containing_oneof is not None:
            if msg.WhichOneof(field.containing_oneof.name) is None:
                missing.append(field.containing_oneof.name)
        elif field.name not in present:
            missing.append(field.name)
    return sorted(set(missing))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    dump = sys.argv[1]
    with tempfile.TemporaryDirectory() as out:
        modules = compile_protos(out)
        classes = {}
        for mod in modules:
            for name, desc in mod.DESCRIPTOR.message_types_by_name.items():
                classes[name] = getattr(mod, name)
        failures, checked, covered = [], 0, set()
        for path in sorted(glob.glob(os.path.join(dump, "*.bin"))):
            base = os.path.basename(path)[:-4]
            name = re.sub(r"-\d+$", "", base)
            cls = classes.get(name)
            if cls is None:
                failures.append(f"{base}: no message {name} in Protos/etcd")
                continue
            data = open(path, "rb").read()
            msg = cls()
            try:
                msg.ParseFromString(data)
            except Exception as e:
                failures.append(f"{base}: does not parse: {e}")
                continue
            checked += 1
            covered.add(name)
            for p in unknown(msg, name):
                failures.append(f"{base}: unknown fields in {p}")
            missing = unset_fields(msg)
            if missing:
                failures.append(f"{base}: fields not set by the sample: {', '.join(missing)}")
            again = msg.SerializeToString(deterministic=True)
            if again != data:
                failures.append(f"{base}: protobuf re-encodes differently:\n  swift {data.hex()}\n  proto {again.hex()}")
        uncovered = sorted(set(classes) - covered)
        for f in failures:
            print("FAIL", f)
        if uncovered:
            print("no sample for:", ", ".join(uncovered))
        print(f"{checked} encodings checked, {len(failures)} failures, {len(classes)} messages, {len(uncovered)} without a sample")
        sys.exit(1 if failures or uncovered else 0)


if __name__ == "__main__":
    main()
