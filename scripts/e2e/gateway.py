#!/usr/bin/env python3
"""etcd's JSON gateway (HTTP/1.1 on the client port), Lattice against etcd 3.5.1, with curl.

The same sequence of requests goes to a fresh etcd 3.5.1 and a fresh Lattice: puts, ranges with
every option, deletes, transactions (compares by name and by number, nested txns), compaction,
leases (grant, keep-alive stream, time-to-live, list, revoke), maintenance, member list, watch
streams (history, prev_kv, a compacted start revision), and errors (validation, bad JSON, wrong
types, unknown paths and methods, oversized bodies). For each: the HTTP status, Content-Type,
the Grpc-Metadata-Content-Type header and the body must be equal, after masking what differs by
nature (cluster and member ids, raft term, hashes, a status's sizes and versions, member URLs,
Go's JSON syntax-error text). Auth: users and roles, enable, authenticate, and calls with the
token in the Authorization header (each server's own token), then disable.

Prints each difference and "N passed, M failed".
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from differential import find_etcd_binary, free_ports, stop_processes  # noqa: E402


def b64(s: str) -> str:
    import base64
    return base64.b64encode(s.encode()).decode()


FOO, BAR = b64("foo"), b64("bar")

# (name, path, body, options). Options: stream=seconds (read a streamed answer for that long),
# mask_error (Go's JSON syntax-error text differs), method (default POST).
CASES = [
    ("put", "/v3/kv/put", {"key": FOO, "value": BAR}, {}),
    ("put prev_kv", "/v3/kv/put", {"key": FOO, "value": b64("baz"), "prev_kv": True}, {}),
    ("put camelCase prevKv", "/v3/kv/put", {"key": FOO, "value": b64("qux"), "prevKv": True}, {}),
    ("put unknown lease", "/v3/kv/put", {"key": FOO, "value": BAR, "lease": "12345"}, {}),
    ("put ignore_value missing key", "/v3/kv/put", {"key": b64("nokey"), "ignore_value": True}, {}),
    ("put no key", "/v3/kv/put", {"value": BAR}, {}),
    ("put unknown field ignored", "/v3/kv/put", {"key": b64("u"), "value": BAR, "bogus": 1}, {}),
    ("put empty value", "/v3/kv/put", {"key": b64("empty")}, {}),
    *[(f"put a{i}", "/v3/kv/put", {"key": b64(f"a{i}"), "value": b64(f"v{i}")}, {}) for i in range(5)],
    ("range", "/v3/kv/range", {"key": FOO}, {}),
    ("range missing", "/v3/kv/range", {"key": b64("missing")}, {}),
    ("range prefix", "/v3/kv/range", {"key": b64("a"), "range_end": b64("b")}, {}),
    ("range limit", "/v3/kv/range", {"key": b64("a"), "range_end": b64("b"), "limit": 2}, {}),
    ("range count_only", "/v3/kv/range", {"key": b64("a"), "range_end": b64("b"), "count_only": True}, {}),
    ("range keys_only", "/v3/kv/range", {"key": b64("a"), "range_end": b64("b"), "keys_only": True}, {}),
    ("range serializable", "/v3/kv/range", {"key": FOO, "serializable": True}, {}),
    ("range revision number", "/v3/kv/range", {"key": FOO, "revision": 2}, {}),
    ("range revision string", "/v3/kv/range", {"key": FOO, "revision": "3"}, {}),
    ("range sort DESCEND by name", "/v3/kv/range", {"key": b64("a"), "range_end": b64("b"), "sort_order": "DESCEND"}, {}),
    ("range sort by number", "/v3/kv/range", {"key": b64("a"), "range_end": b64("b"), "sort_order": 2, "sort_target": "MOD"}, {}),
    ("range all keys", "/v3/kv/range", {"key": "AA==", "range_end": "AA=="}, {}),
    ("range future revision", "/v3/kv/range", {"key": FOO, "revision": "1000"}, {}),
    ("range bad enum", "/v3/kv/range", {"key": FOO, "sort_order": "SIDEWAYS"}, {"mask_error": True}),
    ("range v3beta prefix", "/v3beta/kv/range", {"key": FOO}, {}),
    ("deleterange", "/v3/kv/deleterange", {"key": b64("a0")}, {}),
    ("deleterange prev_kv", "/v3/kv/deleterange", {"key": b64("a1"), "range_end": b64("a3"), "prev_kv": True}, {}),
    ("deleterange missing", "/v3/kv/deleterange", {"key": b64("zzz")}, {}),
    ("txn compare by name", "/v3/kv/txn", {
        "compare": [{"target": "VALUE", "result": "EQUAL", "key": FOO, "value": b64("qux")},
                    {"target": "VERSION", "result": "GREATER", "key": FOO, "version": "1"}],
        "success": [{"request_put": {"key": FOO, "value": b64("t1")}}, {"request_range": {"key": FOO}}],
        "failure": [{"request_range": {"key": b64("a4")}}]}, {}),
    ("txn compare by number fails", "/v3/kv/txn", {
        "compare": [{"target": 2, "result": 2, "key": FOO, "mod_revision": "1"}],
        "success": [{"request_delete_range": {"key": FOO}}],
        "failure": [{"request_range": {"key": FOO, "keys_only": True}},
                    {"request_txn": {"success": [{"request_put": {"key": b64("nested"), "value": BAR}}]}}]}, {}),
    ("txn create compare", "/v3/kv/txn", {
        "compare": [{"target": "CREATE", "result": "EQUAL", "key": b64("never"), "create_revision": "0"}],
        "success": [{"request_put": {"key": b64("never"), "value": BAR, "prev_kv": True}}]}, {}),
    ("txn duplicate key", "/v3/kv/txn", {
        "success": [{"request_put": {"key": FOO, "value": BAR}}, {"request_put": {"key": FOO, "value": BAR}}]}, {}),
    ("txn empty", "/v3/kv/txn", {}, {}),
    ("compaction", "/v3/kv/compaction", {"revision": "4"}, {}),
    ("compaction physical", "/v3/kv/compaction", {"revision": 5, "physical": True}, {}),
    ("range compacted revision", "/v3/kv/range", {"key": FOO, "revision": 3}, {}),
    ("compaction future", "/v3/kv/compaction", {"revision": "1000"}, {}),
    ("compaction compacted", "/v3/kv/compaction", {"revision": "2"}, {}),
    ("lease grant with id", "/v3/lease/grant", {"TTL": "60", "ID": "1000"}, {}),
    ("lease grant number", "/v3/lease/grant", {"TTL": 30, "ID": 1001}, {}),
    ("lease grant duplicate", "/v3/lease/grant", {"TTL": 30, "ID": "1000"}, {}),
    ("put with lease", "/v3/kv/put", {"key": b64("leased"), "value": BAR, "lease": "1000"}, {}),
    ("lease timetolive keys", "/v3/lease/timetolive", {"ID": "1000", "keys": True}, {"mask": ["TTL"]}),
    ("lease timetolive old path", "/v3/kv/lease/timetolive", {"ID": "1001"}, {"mask": ["TTL"]}),
    ("lease timetolive missing", "/v3/lease/timetolive", {"ID": "999"}, {}),
    ("lease leases", "/v3/lease/leases", {}, {}),
    ("lease keepalive stream", "/v3/lease/keepalive", {"ID": "1001"}, {"stream": 1.5}),
    ("lease keepalive missing", "/v3/lease/keepalive", {"ID": "999"}, {"stream": 1.5}),
    ("lease revoke", "/v3/lease/revoke", {"ID": "1001"}, {}),
    ("lease revoke old path", "/v3/kv/lease/revoke", {"ID": "1000"}, {}),
    ("lease revoke missing", "/v3/lease/revoke", {"ID": "1000"}, {}),
    ("range leased key gone", "/v3/kv/range", {"key": b64("leased")}, {}),
    ("alarm get", "/v3/maintenance/alarm", {"action": "GET"}, {}),
    ("maintenance hash", "/v3/maintenance/hash", {}, {"mask": ["hash"]}),
    ("maintenance defragment", "/v3/maintenance/defragment", {}, {}),
    ("member list", "/v3/cluster/member/list", {}, {"mask": ["members"]}),
    ("member list linearizable", "/v3/cluster/member/list", {"linearizable": True}, {"mask": ["members"]}),
    ("watch history", "/v3/watch", {"create_request": {"key": FOO, "start_revision": "5"}}, {"stream": 1.5}),
    ("watch prefix prev_kv", "/v3/watch", {"create_request": {"key": b64("a"), "range_end": b64("b"), "start_revision": 6,
                                                              "prev_kv": True}}, {"stream": 1.5}),
    ("watch filters", "/v3/watch", {"create_request": {"key": "AA==", "range_end": "AA==", "start_revision": 6,
                                                       "filters": ["NOPUT"]}}, {"stream": 1.5}),
    ("watch compacted start", "/v3/watch", {"create_request": {"key": FOO, "start_revision": "2"}}, {"stream": 1.5}),
    ("watch bad range", "/v3/watch", {"create_request": {"key": b64("b"), "range_end": b64("a")}}, {"stream": 1.5}),
    ("watch invalid JSON", "/v3/watch", '{"create_request": {"key": ', {"stream": 1.5, "mask_error": True}),
    ("status", "/v3/maintenance/status", {}, {"mask": ["version", "dbSize", "leader", "raftIndex", "raftTerm", "raftAppliedIndex",
                                                       "dbSizeInUse", "isLearner", "errors"]}),
    ("invalid JSON", "/v3/kv/put", "not json", {"mask_error": True}),
    ("wrong type", "/v3/kv/put", {"key": 123}, {}),
    ("wrong bool type", "/v3/kv/range", {"key": FOO, "serializable": "yes"}, {}),
    ("bad base64", "/v3/kv/put", {"key": "!!!", "value": BAR}, {"mask_error": True}),
    ("empty body", "/v3/kv/range", "", {}),
    ("GET method", "/v3/kv/range", {"key": FOO}, {"method": "GET"}),
    ("unknown path", "/v3/kv/nope", {}, {}),
    ("unknown service path", "/v3/nothing", {}, {}),
    # Auth (options: save_token keeps the answer's token, token=True sends it as Authorization,
    # token="..." sends that text).
    ("auth status", "/v3/auth/status", {}, {}),
    ("auth enable without root", "/v3/auth/enable", {}, {}),
    ("user add root", "/v3/auth/user/add", {"name": "root", "password": "rootpw"}, {}),
    ("user grant root", "/v3/auth/user/grant", {"user": "root", "role": "root"}, {}),
    ("role add", "/v3/auth/role/add", {"name": "r"}, {}),
    ("role grant permission", "/v3/auth/role/grant", {"name": "r", "perm": {"permType": "READWRITE", "key": FOO}}, {}),
    ("role grant without perm", "/v3/auth/role/grant", {"name": "r"}, {}),
    ("user list", "/v3/auth/user/list", {}, {}),
    ("auth enable", "/v3/auth/enable", {}, {}),
    ("range without token", "/v3/kv/range", {"key": FOO}, {}),
    ("range with a bogus token", "/v3/kv/range", {"key": FOO}, {"token": "bogus.1"}),
    ("authenticate wrong password", "/v3/auth/authenticate", {"name": "root", "password": "x"}, {}),
    ("authenticate", "/v3/auth/authenticate", {"name": "root", "password": "rootpw"}, {"save_token": True, "mask": ["token"]}),
    ("range with token", "/v3/kv/range", {"key": FOO}, {"token": True}),
    ("role get with token", "/v3/auth/role/get", {"role": "r"}, {"token": True}),
    ("hash with a bogus token", "/v3/maintenance/hash", {}, {"token": "bogus.1"}),
    ("auth status with token", "/v3/auth/status", {}, {"token": True}),
    ("auth disable", "/v3/auth/disable", {}, {"token": True}),
    ("auth status after disable", "/v3/auth/status", {}, {}),
]


def run(base: str, path: str, body, options: dict, token: str | None = None) -> dict:
    data = body if isinstance(body, str) else json.dumps(body)
    argv = ["curl", "-s", "-i", "-X", options.get("method", "POST"), base + path, "--data-binary", data]
    sent = options.get("token")
    if sent:
        argv += ["-H", f"Authorization: {token if sent is True else sent}"]
    if "stream" in options:
        argv[1:1] = ["-N", "--max-time", str(options["stream"])]
    r = subprocess.run(argv, capture_output=True, timeout=60)
    raw = r.stdout.decode(errors="replace").replace("\r\n", "\n")
    head, _, payload = raw.partition("\n\n")
    lines = head.split("\n")
    status = lines[0].split(" ", 2)[1] if lines and " " in lines[0] else "?"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    out = {"status": status, "content-type": headers.get("content-type"),
           "grpc-metadata-content-type": headers.get("grpc-metadata-content-type")}
    if "stream" in options:
        out["body"] = [normalise(line, options) for line in payload.split("\n") if line.strip()]
    else:
        out["body"] = normalise(payload, options)
    if options.get("save_token"):
        try:
            out["_token"] = json.loads(payload).get("token")
        except (json.JSONDecodeError, AttributeError):
            out["_token"] = None
    return out


def normalise(text: str, options: dict):
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    masks = set(options.get("mask", []))

    def walk(v):
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                if k in ("cluster_id", "member_id", "raft_term") or k in masks:
                    out[k] = "<masked>"
                else:
                    out[k] = walk(x)
            return out
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    value = walk(value)
    # etcd lists leases in its map's order: compare them as a set.
    if isinstance(value, dict) and isinstance(value.get("leases"), list):
        value["leases"] = sorted(value["leases"], key=json.dumps)
    if options.get("mask_error") and isinstance(value, dict):
        for k in ("error", "message"):
            if isinstance(value.get(k), str):
                value[k] = "<masked>"
    return value


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lattice-bin", default=".build/release/lattice")
    args = parser.parse_args()
    etcd = find_etcd_binary("etcd")
    work = Path(tempfile.mkdtemp(prefix="lattice-gateway-"))
    procs: list[subprocess.Popen] = []
    passed = failed = 0
    try:
        ec, ep, lc = free_ports(3)
        procs.append(subprocess.Popen([etcd, "--data-dir", str(work / "etcd"), "--listen-client-urls", f"http://127.0.0.1:{ec}",
                                       "--advertise-client-urls", f"http://127.0.0.1:{ec}",
                                       "--listen-peer-urls", f"http://127.0.0.1:{ep}",
                                       "--initial-advertise-peer-urls", f"http://127.0.0.1:{ep}",
                                       "--initial-cluster", f"default=http://127.0.0.1:{ep}", "--log-level", "error"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([args.lattice_bin, "--data-dir", str(work / "lattice"), "--listen-client-urls",
                                       f"http://127.0.0.1:{lc}", "--log-level", "warn"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        bases = {"etcd": f"http://127.0.0.1:{ec}", "lattice": f"http://127.0.0.1:{lc}"}
        for name, base in bases.items():
            deadline = time.time() + 30
            while time.time() < deadline:
                r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", base + "/health"], capture_output=True, text=True)
                if r.stdout == "200":
                    break
                time.sleep(0.2)
            else:
                print(f"FAIL {name} did not start")
                return 1
        tokens: dict[str, str | None] = {target: None for target in bases}
        for name, path, body, options in CASES:
            results = {target: run(base, path, body, options, tokens[target]) for target, base in bases.items()}
            for target, result in results.items():
                if "_token" in result:
                    tokens[target] = result.pop("_token")
            same = results["etcd"] == results["lattice"]
            print(f"{'ok  ' if same else 'FAIL'} {name}")
            if not same:
                print(f"     etcd:    {json.dumps(results['etcd'])[:1500]}")
                print(f"     lattice: {json.dumps(results['lattice'])[:1500]}")
            passed, failed = (passed + 1, failed) if same else (passed, failed + 1)
        # A body larger than the request limit is refused, and the connection still serves.
        big = json.dumps({"key": FOO, "value": b64("x" * (3 << 20))})
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", bases["lattice"] + "/v3/kv/put",
                            "--data-binary", "@-"], input=big.encode(), capture_output=True, timeout=60)
        ok = r.stdout.decode() in ("400", "429", "413")
        print(f"{'ok  ' if ok else 'FAIL'} an oversized body is refused ({r.stdout.decode()})")
        passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
    finally:
        stop_processes(procs)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
