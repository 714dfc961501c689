#!/usr/bin/env python3
"""Backup, restore and migration from etcd, with the real etcd/etcdctl 3.5.1.

  * etcd → Lattice, from etcd 3.5.1 and from etcd 3.4.23 (Debian's etcd-server): keys written,
    overwritten, compacted and deleted (one attached to a lease), `etcdctl snapshot save`,
    `lattice snapshot status` (etcdutl's hash, revision, key count and size for the same file),
    `lattice snapshot restore` (3.5.1) or `lattice migrate --from-etcd-snapshot` (3.4.23) into a
    new data directory; Lattice then serves every key with etcd's value, create revision, mod
    revision, version and lease, the lease with its TTL, and the next write takes the revision
    after etcd's.
  * Lattice → Lattice: `etcdctl snapshot save` against Lattice, restore, same keyspace with the
    same revisions and versions.
  * Auth comes over from etcd 3.5.1: users (etcd's bcrypt hashes log in with the same
    passwords, a no-password user stays one), roles, key permissions and the enabled flag; and
    through a Lattice snapshot of that Lattice again.
  * A damaged snapshot, an existing data directory and a file that is no snapshot are refused.

Prints "N passed, M failed".
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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lattice-bin", default=".build/release/lattice")
    args = parser.parse_args()
    etcd, etcdctl = find_etcd_binary("etcd"), find_etcd_binary("etcdctl")
    etcdutl = Path(etcdctl).with_name("etcdutl")
    work = Path(tempfile.mkdtemp(prefix="lattice-restore-"))
    passed = failed = 0
    procs: list[subprocess.Popen] = []

    def check(ok: bool, what: str, detail: str = "") -> None:
        nonlocal passed, failed
        print(f"{'ok  ' if ok else 'FAIL'} {what}{'' if ok or not detail else ': ' + detail.strip()[:400]}", flush=True)
        passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)

    def ctl(port: int, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run([etcdctl, f"--endpoints=127.0.0.1:{port}", "--dial-timeout=3s", *command],
                              capture_output=True, text=True, timeout=60)

    def wait_ready(port: int) -> bool:
        deadline = time.time() + 30
        while time.time() < deadline:
            if ctl(port, "endpoint", "health").returncode == 0:
                return True
            time.sleep(0.2)
        return False

    def keyspace(port: int) -> dict:
        r = ctl(port, "get", "", "--prefix", "-w", "json")
        kvs = json.loads(r.stdout).get("kvs", []) if r.returncode == 0 else []
        return {kv["key"]: (kv.get("value", ""), kv.get("create_revision", 0), kv.get("mod_revision", 0), kv.get("version", 0),
                            kv.get("lease", 0)) for kv in kvs}

    def lattice(data: Path) -> int:
        (port,) = free_ports(1)
        procs.append(subprocess.Popen([args.lattice_bin, "--data-dir", str(data), "--listen-client-urls",
                                       f"http://127.0.0.1:{port}", "--log-level", "warn"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_ready(port)
        return port

    try:
        def migrate_from(etcd_bin: str, label: str, use_migrate: bool) -> int:
            """Fills an etcd, snapshots it, moves it to Lattice; returns the Lattice's port."""
            client, peer = free_ports(2)
            procs.append(subprocess.Popen([etcd_bin, "--data-dir", str(work / label), "--listen-client-urls", f"http://127.0.0.1:{client}",
                                           "--advertise-client-urls", f"http://127.0.0.1:{client}",
                                           "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                                           "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                                           "--initial-cluster", f"default=http://127.0.0.1:{peer}", "--log-level", "error"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            check(wait_ready(client), f"{label} started")
            # A keyspace with history: overwrites, deletes, a compaction, a lease, an empty and a
            # large value, many keys.
            sections = [
                [f"put /registry/configmaps/default/cm-{i:04d} value-{i}" for i in range(1500)],
                [f"put /registry/configmaps/default/cm-{i:04d} overwritten-{i}" for i in range(0, 1500, 7)],
                [f"del /registry/configmaps/default/cm-{i:04d}" for i in range(0, 1500, 11)],
                [f"put /registry/configmaps/default/cm-{i:04d} again-{i}" for i in range(0, 1500, 13)],
            ]
            r = subprocess.CompletedProcess([], 0, "", "")
            for n, lines in enumerate(sections):
                for chunk in range(0, len(lines), 100):
                    body = "\n".join(lines[chunk:chunk + 100])
                    # `etcdctl txn` reads compares, success ops and failure ops, each ended by a blank line.
                    r = subprocess.run([etcdctl, f"--endpoints=127.0.0.1:{client}", "txn"], input=f"\n{body}\n\n\n",
                                       capture_output=True, text=True, timeout=60)
                    if r.returncode != 0:
                        break
                if n == 1:
                    rev = json.loads(ctl(client, "get", "x", "-w", "json").stdout)["header"]["revision"]
                    ctl(client, "compact", str(rev))
            check(r.returncode == 0, f"keys written, overwritten, compacted and deleted on {label}", r.stderr)
            lease = ctl(client, "lease", "grant", "900").stdout.split()[1]
            ctl(client, "put", "/registry/events/default/e1", "event", f"--lease={lease}")
            ctl(client, "put", "/empty", "")
            ctl(client, "put", "/big", "x" * 20000)  # larger than a page: an overflow page
            expected = keyspace(client)
            etcd_revision = json.loads(ctl(client, "get", "x", "-w", "json").stdout)["header"]["revision"]
            snap = work / f"{label}.db"
            r = ctl(client, "snapshot", "save", str(snap))
            check(r.returncode == 0 and snap.exists(), f"etcdctl snapshot save ({label})", r.stderr)

            ours = subprocess.run([args.lattice_bin, "snapshot", "status", str(snap), "-w", "json"], capture_output=True, text=True)
            theirs = subprocess.run([str(etcdutl) if etcdutl.exists() else etcdctl, "snapshot", "status", str(snap), "-w", "json"],
                                    capture_output=True, text=True)
            try:
                a, b = json.loads(ours.stdout), json.loads(theirs.stdout)
                same = all(a[k] == b[k] for k in ("hash", "revision", "totalKey", "totalSize"))
            except (json.JSONDecodeError, KeyError):
                same = False
            check(same, f"lattice snapshot status matches etcdutl's (hash, revision, keys, size) for {label}",
                  ours.stdout + theirs.stdout + ours.stderr)

            target = work / f"from-{label}"
            command = ["migrate", "--from-etcd-snapshot", str(snap)] if use_migrate else ["snapshot", "restore", str(snap)]
            r = subprocess.run([args.lattice_bin, *command, "--data-dir", str(target)], capture_output=True, text=True, timeout=120)
            check(r.returncode == 0, f"lattice {' '.join(command[:2])} of the {label} snapshot", r.stdout + r.stderr)
            port = lattice(target)
            got = keyspace(port)
            check({k: v[0] for k, v in got.items()} == {k: v[0] for k, v in expected.items()} and len(got) > 1000,
                  f"every key and value of {label}'s keyspace ({len(expected)} keys) is served by Lattice",
                  f"{len(got)} keys vs {len(expected)}")
            differ = [k for k in expected if got.get(k, (None,))[1:] != expected[k][1:]]
            check(not differ, "every key keeps its create revision, mod revision, version and lease",
                  f"{len(differ)} differ, e.g. {differ[:1]} {[got.get(k) for k in differ[:1]]} vs {[expected[k] for k in differ[:1]]}")
            leased = [v[4] for k, v in got.items() if k == expected_key("/registry/events/default/e1")]
            ttl = ctl(port, "lease", "timetolive", format(int(leased[0]), "x")).stdout if leased and leased[0] else ""
            check("granted with TTL(900s)" in ttl, "the lease comes over with its id and TTL", ttl)
            put = ctl(port, "put", "/after-migration", "x", "-w", "json")
            after = json.loads(put.stdout)["header"]["revision"] if put.returncode == 0 else None
            check(after == etcd_revision + 1, f"the next write takes etcd's revision + 1 ({etcd_revision} + 1)", f"{after}")
            return port

        port = migrate_from(etcd, "etcd-3.5.1", use_migrate=False)
        if Path("/usr/bin/etcd").exists():
            migrate_from("/usr/bin/etcd", "etcd-3.4.23", use_migrate=True)
        else:
            check(False, "etcd 3.4.23 (Debian's etcd-server) is installed")
        expected = keyspace(port)

        # Lattice → Lattice.
        snap2 = work / "lattice.db"
        r = ctl(port, "snapshot", "save", str(snap2))
        check(r.returncode == 0, "etcdctl snapshot save (Lattice)", r.stderr)
        r = subprocess.run([args.lattice_bin, "snapshot", "restore", str(snap2), "--data-dir", str(work / "from-lattice")],
                           capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, "lattice snapshot restore of a Lattice snapshot", r.stdout + r.stderr)
        port2 = lattice(work / "from-lattice")
        got2 = keyspace(port2)
        check(got2 == expected, "the restored Lattice serves the same keyspace, revisions and versions", f"{len(got2)} keys")

        # etcd with auth enabled → Lattice: the same users, roles and permissions, auth on.
        client, peer = free_ports(2)
        procs.append(subprocess.Popen([etcd, "--data-dir", str(work / "etcd-auth"), "--listen-client-urls", f"http://127.0.0.1:{client}",
                                       "--advertise-client-urls", f"http://127.0.0.1:{client}",
                                       "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                                       "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                                       "--initial-cluster", f"default=http://127.0.0.1:{peer}", "--log-level", "error"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        check(wait_ready(client), "etcd 3.5.1 for the auth migration started")
        setup = [["user", "add", "root:rootpw"], ["role", "add", "root"], ["user", "grant-role", "root", "root"],
                 ["user", "add", "alice:alicepw"], ["user", "add", "bob", "--no-password"], ["role", "add", "app"],
                 ["role", "grant-permission", "app", "readwrite", "app/", "--prefix"],
                 ["role", "grant-permission", "app", "read", "config"], ["user", "grant-role", "alice", "app"],
                 ["user", "grant-role", "bob", "app"], ["auth", "enable"],
                 ["--user", "root:rootpw", "put", "app/x", "1"], ["--user", "root:rootpw", "put", "config", "c"]]
        bad = [(c, r.stderr) for c in setup if (r := ctl(client, *c)).returncode != 0]
        check(not bad, "users, roles, permissions and auth enable on etcd 3.5.1", str(bad[:1]))
        reads = [["--user", "root:rootpw", "user", "list"], ["--user", "root:rootpw", "role", "list"],
                 ["--user", "root:rootpw", "role", "get", "app"], ["--user", "root:rootpw", "user", "get", "bob"],
                 ["--user", "root:rootpw", "auth", "status"]]
        etcd_answers = [ctl(client, *c).stdout for c in reads]
        snap3 = work / "etcd-auth.db"
        r = ctl(client, "--user", "root:rootpw", "snapshot", "save", str(snap3))
        check(r.returncode == 0, "etcdctl snapshot save with auth on (etcd 3.5.1)", r.stderr)
        r = subprocess.run([args.lattice_bin, "snapshot", "restore", str(snap3), "--data-dir", str(work / "from-etcd-auth")],
                           capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, "lattice snapshot restore of the snapshot with auth", r.stdout + r.stderr)
        port3 = lattice(work / "from-etcd-auth")
        r = ctl(port3, "get", "app/x")
        check("etcdserver: user name is empty" in r.stderr, "auth is enabled after the restore", r.stdout + r.stderr)
        r = ctl(port3, "--user", "alice:alicepw", "get", "app/x", "--print-value-only")
        check(r.stdout.strip() == "1", "alice logs in with her etcd password and reads her prefix", r.stderr)
        r = ctl(port3, "--user", "alice:alicepw", "put", "config", "x")
        check("etcdserver: permission denied" in r.stderr, "alice's read-only grant on config stays read-only", r.stdout + r.stderr)
        r = ctl(port3, "--user", "bob:anything", "get", "app/x")
        check("password was given for no password user" in r.stderr, "bob stays a user without a password", r.stdout + r.stderr)
        lattice_answers = [ctl(port3, *c).stdout for c in reads]
        differ = [(c, a, b) for c, a, b in zip(reads, etcd_answers, lattice_answers)
                  if a != b and c[-1] != "status"]  # the auth revision counts changes, which differ after a restore
        check(not differ and "Authentication Status: true" in lattice_answers[-1],
              "user list, role list, role get, user get and auth status read as on etcd", str(differ[:1]))

        snap4 = work / "lattice-auth.db"
        r = ctl(port3, "--user", "root:rootpw", "snapshot", "save", str(snap4))
        r2 = subprocess.run([args.lattice_bin, "snapshot", "restore", str(snap4), "--data-dir", str(work / "from-lattice-auth")],
                            capture_output=True, text=True, timeout=120)
        check(r.returncode == 0 and r2.returncode == 0, "a Lattice snapshot with auth on: saved by root, restored",
              r.stderr + r2.stdout + r2.stderr)
        port4 = lattice(work / "from-lattice-auth")
        r = ctl(port4, "--user", "alice:alicepw", "get", "app/x", "--print-value-only")
        r2 = ctl(port4, "get", "app/x")
        check(r.stdout.strip() == "1" and "user name is empty" in r2.stderr,
              "restored from Lattice's own snapshot: auth on, alice's password and grant kept", r.stderr + r2.stdout)

        # Refusals.
        r = subprocess.run([args.lattice_bin, "snapshot", "restore", str(snap2), "--data-dir", str(work / "from-lattice")],
                           capture_output=True, text=True)
        check(r.returncode == 1 and "exists" in r.stderr, "an existing data directory is refused", r.stderr)
        damaged = work / "damaged.db"
        data = bytearray(snap2.read_bytes())
        data[len(data) // 2] ^= 0xFF
        damaged.write_bytes(bytes(data))
        r = subprocess.run([args.lattice_bin, "snapshot", "restore", str(damaged), "--data-dir", str(work / "damaged")],
                           capture_output=True, text=True)
        check(r.returncode == 1 and "hash mismatch" in r.stderr and not (work / "damaged").exists(),
              "a damaged Lattice snapshot is refused (hash mismatch)", r.stderr)
        junk = work / "junk.db"
        junk.write_bytes(b"not a snapshot at all" * 100)
        r = subprocess.run([args.lattice_bin, "snapshot", "restore", str(junk), "--data-dir", str(work / "junk")],
                           capture_output=True, text=True)
        check(r.returncode == 1 and "not a snapshot" in r.stderr, "a file that is no snapshot is refused", r.stderr)
    finally:
        stop_processes(procs)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def expected_key(key: str) -> str:
    import base64
    return base64.b64encode(key.encode()).decode()


if __name__ == "__main__":
    sys.exit(main())
