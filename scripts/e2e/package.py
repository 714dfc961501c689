#!/usr/bin/env python3
"""The Debian package: builds it (scripts/package) from the release binary, installs it with
apt like an operator would, and checks what an edge node gets:

  * `lattice --version` runs from /usr/bin with the Swift runtime shipped in the package,
  * the `lattice` system user and /var/lib/lattice (mode 0700, owned by it) exist,
  * /etc/lattice/lattice.conf.yml is a conffile that the binary accepts,
  * the unit passes `systemd-analyze verify` with no warning,
  * the installed binary serves etcdctl as the `lattice` user with the shipped configuration
    (its client URL moved to a free port),
  * `apt-get purge` removes the binary and the unit but keeps the data directory.

Needs root (CI runs as root). Prints "N passed, M failed".
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from differential import find_etcd_binary, free_ports  # noqa: E402


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, **kw)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lattice-bin", default=".build/release/lattice")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[2]
    passed = failed = 0

    def check(ok: bool, what: str, detail: str = "") -> None:
        nonlocal passed, failed
        print(f"{'ok  ' if ok else 'FAIL'} {what}{'' if ok or not detail else ': ' + detail.strip()[:400]}", flush=True)
        passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)

    if os.geteuid() != 0 or shutil.which("dpkg-deb") is None:
        print("needs root and dpkg (Debian)")
        print("0 passed, 1 failed")
        return 1
    if Path("/usr/lib/lattice").exists():
        print("a lattice package is already installed here; not touching it")
        print("0 passed, 1 failed")
        return 1
    out = Path(tempfile.mkdtemp(prefix="lattice-package-"))
    r = run(str(root / "scripts/package"), "--binary", args.lattice_bin, "--out", str(out))
    deb = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else ""
    check(r.returncode == 0 and deb.endswith(".deb") and Path(deb).exists(), "scripts/package builds a .deb", r.stderr)
    if not deb:
        print(f"{passed} passed, {failed} failed")
        return 1
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = None
    try:
        r = run("apt-get", "install", "-y", "-q", "--no-install-recommends", deb, env=env)
        check(r.returncode == 0, "apt-get install ./lattice_*.deb", r.stdout[-400:] + r.stderr)
        r = run("/usr/bin/lattice", "--version")
        check(r.returncode == 0 and "etcd API Version: 3.5" in r.stdout, "/usr/bin/lattice --version", r.stdout + r.stderr)
        r = run("getent", "passwd", "lattice")
        check(r.returncode == 0, "the lattice system user exists", r.stderr)
        st = os.stat("/var/lib/lattice") if Path("/var/lib/lattice").is_dir() else None
        check(st is not None and (st.st_mode & 0o777) == 0o700 and st.st_uid == int(r.stdout.split(":")[2] or -1),
              "/var/lib/lattice exists, 0700, owned by lattice")
        r = run("dpkg-query", "--control-show", "lattice", "conffiles")
        check("/etc/lattice/lattice.conf.yml" in r.stdout, "/etc/lattice/lattice.conf.yml is a conffile", r.stdout + r.stderr)
        r = run("systemd-analyze", "verify", "/lib/systemd/system/lattice.service")
        check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), "systemd-analyze verify lattice.service",
              r.stdout + r.stderr)
        # The shipped configuration, moved to free ports, run as the service would run it.
        (port,) = free_ports(1)
        conf = Path("/etc/lattice/lattice.conf.yml").read_text()
        conf = conf.replace("http://127.0.0.1:2379", f"http://127.0.0.1:{port}")
        data = Path(tempfile.mkdtemp(prefix="lattice-package-data-"))
        shutil.chown(data, "lattice", "lattice")
        conf = conf.replace("/var/lib/lattice", str(data))
        test_conf = Path(tempfile.mkdtemp(prefix="lattice-package-conf-")) / "lattice.conf.yml"
        test_conf.parent.chmod(0o755)
        test_conf.write_text(conf)
        proc = subprocess.Popen(["runuser", "-u", "lattice", "--", "/usr/bin/lattice", "--config-file", str(test_conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        etcdctl = find_etcd_binary("etcdctl")
        ok = False
        deadline = time.time() + 30
        while time.time() < deadline and not ok:
            r = run(etcdctl, f"--endpoints=127.0.0.1:{port}", "--dial-timeout=2s", "put", "installed", "yes")
            ok = r.returncode == 0
            if not ok:
                time.sleep(0.2)
        proc.terminate()
        proc.wait(timeout=30)
        check(ok, "the installed binary serves etcdctl as the lattice user with the shipped configuration", proc.stderr.read())
        proc = None
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(test_conf.parent, ignore_errors=True)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        r = run("apt-get", "purge", "-y", "-q", "lattice", env=env)
        check(r.returncode == 0 and not Path("/usr/bin/lattice").exists() and not Path("/lib/systemd/system/lattice.service").exists(),
              "apt-get purge removes the binary and the unit", r.stderr)
        check(Path("/var/lib/lattice").is_dir(), "purge keeps /var/lib/lattice (the member's data)")
        shutil.rmtree("/var/lib/lattice", ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
