#!/usr/bin/env python3
"""TLS and mTLS on the client port, with certificates made here by openssl, the real etcdctl
3.5.1 and curl.

  * https:// with --cert-file/--key-file: etcdctl --cacert works; the health and metrics
    endpoints answer over HTTP/1.1 and HTTP/2 (ALPN).
  * --client-cert-auth with --trusted-ca-file: a client with a certificate from the CA is served;
    no certificate, a certificate from another CA, or an expired certificate is refused.
  * Certificate files replaced on disk are used for the next connection, without a restart.
  * Two members replicate over https:// peer URLs with --peer-client-cert-auth; the peer port
    refuses connections without a certificate from the peer CA.
  * --auto-tls / --peer-auto-tls: self-signed certificates made in the data directory (reused
    after a restart); etcdctl skipping verification is served, one verifying is refused; two
    members replicate over generated peer certificates.
  * The JSON gateway over TLS, on HTTP/1.1 and HTTP/2.
  * Certificate identity: with --client-cert-auth and auth enabled, a call without a token is
    made by the user the certificate's common name names (root administers, a user reaches
    only its granted keys, an unknown name is denied); a token overrides it; a cleartext call
    has no identity; the JSON gateway refuses certificates with a common name, as etcd does.
  * https:// without a certificate, and other bad TLS flags: start-up fails with a clear message.
  * A cleartext http:// URL beside the https:// one keeps serving.

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


def sh(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
       "-days", "30", "-subj", f"/CN={name}", cwd=d)


def make_cert(d: Path, ca: str, name: str, cn: str, server: bool = False, expired: bool = False) -> None:
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
       "-subj", f"/CN={cn}", cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else "extendedKeyUsage=clientAuth\n")
    if not expired:
        sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
           "-CAcreateserial", "-out", f"{name}.crt", "-days", "30", "-extfile", ext.name, cwd=d)
        return
    # `openssl ca` can date a certificate in the past.
    db = d / f"{name}-db"
    db.mkdir()
    (db / "index.txt").write_text("")
    (db / "serial").write_text("1000\n")
    conf = d / f"{name}-ca.cnf"
    conf.write_text(f"""[ ca ]
default_ca = a
[ a ]
database = {db}/index.txt
new_certs_dir = {db}
serial = {db}/serial
default_md = sha256
policy = p
x509_extensions = e
[ p ]
commonName = supplied
[ e ]
extendedKeyUsage = clientAuth
""")
    sh("openssl", "ca", "-batch", "-config", conf.name, "-cert", f"{ca}.crt", "-keyfile", f"{ca}.key", "-in", f"{name}.csr",
       "-out", f"{name}.crt", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-notext", cwd=d)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lattice-bin", default=".build/release/lattice")
    args = parser.parse_args()
    etcdctl = find_etcd_binary("etcdctl")
    work = Path(tempfile.mkdtemp(prefix="lattice-tls-"))
    passed = failed = 0

    def check(ok: bool, what: str, detail: str = "") -> None:
        nonlocal passed, failed
        print(f"{'ok  ' if ok else 'FAIL'} {what}{'' if ok or not detail else ': ' + detail.strip()[:300]}", flush=True)
        passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)

    certs = work / "certs"
    certs.mkdir()
    make_ca(certs, "ca")
    make_ca(certs, "other-ca")
    make_cert(certs, "ca", "server", "lattice", server=True)
    make_cert(certs, "ca", "client", "root")
    make_cert(certs, "ca", "alice", "alice")
    make_cert(certs, "ca", "nobody", "nobody")
    make_cert(certs, "other-ca", "stranger", "root")
    make_cert(certs, "ca", "expired", "root", expired=True)
    make_ca(certs, "ca2")
    make_cert(certs, "ca2", "server2", "lattice", server=True)
    # The files the server reads, replaced later.
    shutil.copy(certs / "server.crt", certs / "live.crt")
    shutil.copy(certs / "server.key", certs / "live.key")

    def ctl(endpoint: str, *command: str, ca: str = "ca", cert: str | None = "client") -> subprocess.CompletedProcess:
        flags = [f"--endpoints={endpoint}", "--dial-timeout=3s", "--command-timeout=3s", f"--cacert={certs / (ca + '.crt')}"]
        if cert:
            flags += [f"--cert={certs / (cert + '.crt')}", f"--key={certs / (cert + '.key')}"]
        return subprocess.run([etcdctl, *flags, *command], capture_output=True, text=True, timeout=30)

    def curl(url: str, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(["curl", "-s", "-m", "5", "--cacert", str(certs / "ca.crt"), "--cert", str(certs / "client.crt"),
                               "--key", str(certs / "client.key"), *extra, url], capture_output=True, text=True, timeout=30)

    secure, plain, bad = free_ports(3)
    proc = subprocess.Popen([args.lattice_bin, "--data-dir", str(work / "data"),
                             "--listen-client-urls", f"https://127.0.0.1:{secure},http://127.0.0.1:{plain}",
                             "--cert-file", str(certs / "live.crt"), "--key-file", str(certs / "live.key"),
                             "--trusted-ca-file", str(certs / "ca.crt"), "--client-cert-auth=true", "--log-level", "warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    endpoint = f"https://127.0.0.1:{secure}"
    try:
        deadline = time.time() + 30
        while ctl(endpoint, "endpoint", "health").returncode != 0 and time.time() < deadline:
            time.sleep(0.2)
        r = ctl(endpoint, "put", "greeting", "hello")
        check(r.returncode == 0 and r.stdout.strip() == "OK", "mTLS: etcdctl --cacert --cert --key put", r.stderr)
        r = ctl(endpoint, "get", "greeting", "--print-value-only")
        check(r.stdout.strip() == "hello", "mTLS: etcdctl get reads it back", r.stderr)
        r = ctl(endpoint, "get", "greeting", cert=None)
        check(r.returncode != 0, "no client certificate: refused", r.stdout)
        r = ctl(endpoint, "get", "greeting", cert="stranger")
        check(r.returncode != 0, "a client certificate from another CA: refused", r.stdout)
        r = ctl(endpoint, "get", "greeting", cert="expired")
        check(r.returncode != 0, "an expired client certificate: refused", r.stdout)
        r = ctl(endpoint, "get", "greeting", ca="other-ca")
        check(r.returncode != 0, "a client that does not trust the server's CA: refused", r.stdout)
        r = subprocess.run([etcdctl, f"--endpoints=127.0.0.1:{plain}", "get", "greeting", "--print-value-only"],
                           capture_output=True, text=True, timeout=30)
        check(r.stdout.strip() == "hello", "the http:// URL beside it serves in cleartext", r.stderr)
        for flag, label in ((["--http1.1"], "HTTP/1.1"), (["--http2"], "HTTP/2 (ALPN h2)")):
            r = curl(f"{endpoint}/health", *flag)
            check(r.stdout == '{"health":"true","reason":""}', f"/health over TLS, {label}", r.stdout + r.stderr)
        r = curl(f"{endpoint}/metrics")
        check("grpc_server_handled_total" in r.stdout, "/metrics over TLS", r.stderr)
        # The JSON gateway over TLS, on both HTTP versions (a unary call and a watch stream).
        for flag, label in ((["--http1.1"], "HTTP/1.1"), (["--http2"], "HTTP/2 (ALPN h2)")):
            r = curl(f"{endpoint}/v3/kv/range", *flag, "-d", '{"key":"Z3JlZXRpbmc="}')
            try:
                value = json.loads(r.stdout)["kvs"][0]["value"]
            except (json.JSONDecodeError, KeyError, IndexError):
                value = None
            check(value == "aGVsbG8=", f"JSON gateway /v3/kv/range over TLS, {label}", r.stdout + r.stderr)
            r = curl(f"{endpoint}/v3/watch", *flag, "-N", "-m", "2", "-d", '{"create_request":{"key":"Z3JlZXRpbmc=","start_revision":"1"}}')
            check(r.stdout.count('"result"') == 2 and "aGVsbG8=" in r.stdout, f"JSON gateway watch stream over TLS, {label}",
                  r.stdout + r.stderr)
        r = subprocess.run(["curl", "-s", "-m", "5", "--cacert", str(certs / "ca.crt"), f"{endpoint}/health"],
                           capture_output=True, text=True)
        check(r.returncode != 0, "/health without a client certificate: refused", r.stdout)

        # Certificate identity (auth enabled): the common name is the user, as in etcd.
        for command in (["user", "add", "root:rootpw"], ["role", "add", "root"], ["user", "grant-role", "root", "root"],
                        ["user", "add", "alice:alicepw"], ["role", "add", "app"],
                        ["role", "grant-permission", "app", "readwrite", "app/", "--prefix"],
                        ["user", "grant-role", "alice", "app"], ["auth", "enable"]):
            r = ctl(endpoint, *command)
            check(r.returncode == 0, f"auth set-up by certificate (CN=root), before auth is on: {' '.join(command)}", r.stderr)
        r = ctl(endpoint, "user", "list")
        check(r.stdout.split() == ["alice", "root"], "auth on: CN=root without a password administers (user list)", r.stderr)
        r = ctl(endpoint, "put", "app/one", "1", cert="alice")
        check(r.stdout.strip() == "OK", "CN=alice writes under its granted prefix", r.stderr)
        r = ctl(endpoint, "put", "greeting", "hi", cert="alice")
        check("etcdserver: permission denied" in r.stderr, "CN=alice outside its prefix: permission denied", r.stdout + r.stderr)
        r = ctl(endpoint, "user", "list", cert="alice")
        check("etcdserver: permission denied" in r.stderr, "CN=alice cannot administer", r.stdout + r.stderr)
        r = ctl(endpoint, "get", "app/one", cert="nobody")
        check("etcdserver: permission denied" in r.stderr, "CN=nobody (no such user): permission denied", r.stdout + r.stderr)
        r = ctl(endpoint, "user", "list", cert="nobody")
        check("etcdserver: user name not found" in r.stderr, "CN=nobody administering: user name not found", r.stdout + r.stderr)
        r = ctl(endpoint, "--user", "root:rootpw", "put", "greeting", "hello", cert="alice")
        check(r.stdout.strip() == "OK", "a token (root's) overrides the certificate's name (alice)", r.stderr)
        r = subprocess.run([etcdctl, f"--endpoints=127.0.0.1:{plain}", "get", "app/one"], capture_output=True, text=True, timeout=30)
        check("etcdserver: user name is empty" in r.stderr, "cleartext, no token: user name is empty", r.stdout + r.stderr)
        for flag, label in ((["--http1.1"], "HTTP/1.1"), (["--http2"], "HTTP/2")):
            r = curl(f"{endpoint}/v3/kv/range", *flag, "-w", " %{http_code}", "-d", '{"key":"Z3JlZXRpbmc="}')
            check(r.stdout == "CommonName of client sending a request against gateway will be ignored and not used as expected\n 400",
                  f"JSON gateway with auth on refuses a certificate with a common name, {label}", r.stdout + r.stderr)
        r = ctl(endpoint, "auth", "disable", cert="alice")
        check("etcdserver: permission denied" in r.stderr, "CN=alice cannot disable auth", r.stdout + r.stderr)
        r = ctl(endpoint, "auth", "disable")
        check(r.stdout.strip() == "Authentication Disabled", "CN=root disables auth", r.stdout + r.stderr)

        # Renewed certificates: replace the files; the next connection uses them.
        shutil.copy(certs / "server2.crt", certs / "live.crt")
        shutil.copy(certs / "server2.key", certs / "live.key")
        r = ctl(endpoint, "get", "greeting", "--print-value-only", ca="ca2")
        check(r.stdout.strip() == "hello", "certificate files replaced on disk are served without a restart", r.stderr)
        r = ctl(endpoint, "get", "greeting", ca="ca")
        check(r.returncode != 0, "the replaced certificate is no longer served", r.stdout)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    # Two members replicating over TLS between peers, each requiring the other's certificate.
    (c1, p1, c2, p2) = free_ports(4)
    cluster = f"a=https://127.0.0.1:{p1},b=https://127.0.0.1:{p2}"
    members = []
    for name, client, peer in (("a", c1, p1), ("b", c2, p2)):
        members.append(subprocess.Popen(
            [args.lattice_bin, "--name", name, "--data-dir", str(work / f"peer-{name}"),
             "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
             "--listen-peer-urls", f"https://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"https://127.0.0.1:{peer}",
             "--initial-cluster", cluster, "--initial-cluster-token", "tls-test",
             "--peer-cert-file", str(certs / "server.crt"), "--peer-key-file", str(certs / "server.key"),
             "--peer-trusted-ca-file", str(certs / "ca.crt"), "--peer-client-cert-auth", "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        def plain(port: int, *command: str) -> subprocess.CompletedProcess:
            return subprocess.run([etcdctl, f"--endpoints=127.0.0.1:{port}", "--dial-timeout=3s", "--command-timeout=3s", *command],
                                  capture_output=True, text=True, timeout=30)
        deadline = time.time() + 30
        while plain(c1, "put", "from-a", "1").returncode != 0 and time.time() < deadline:
            time.sleep(0.2)
        plain(c2, "put", "from-b", "2")
        seen = {}
        deadline = time.time() + 20
        while time.time() < deadline:
            seen = {"a": plain(c1, "get", "from-b", "--print-value-only").stdout.strip(),
                    "b": plain(c2, "get", "from-a", "--print-value-only").stdout.strip()}
            if seen == {"a": "2", "b": "1"}:
                break
            time.sleep(0.2)
        check(seen == {"a": "2", "b": "1"}, "peers replicate both ways over https:// peer URLs with peer mTLS", str(seen))
        r = subprocess.run(["curl", "-s", "-m", "5", "--cacert", str(certs / "ca.crt"), f"https://127.0.0.1:{p1}/"],
                           capture_output=True, text=True)
        # curl's exits for a handshake the server ended: 35 (handshake), 55/56 (send/receive).
        check(r.returncode in (35, 55, 56), "the peer port refuses a connection without a certificate",
              f"curl exit {r.returncode}")
        r = subprocess.run(["curl", "-s", "-m", "5", "--cacert", str(certs / "ca.crt"), "--cert", str(certs / "stranger.crt"),
                            "--key", str(certs / "stranger.key"), f"https://127.0.0.1:{p1}/"], capture_output=True, text=True)
        check(r.returncode in (35, 55, 56), "the peer port refuses a certificate from another CA", f"curl exit {r.returncode}")
    finally:
        stop_processes(members)

    # --auto-tls and --peer-auto-tls: self-signed certificates in the data directory, reused
    # after a restart; two members replicate over https:// peer URLs with generated certificates.
    (c1, p1, c2, p2) = free_ports(4)
    cluster = f"a=https://127.0.0.1:{p1},b=https://127.0.0.1:{p2}"

    def auto_member(name: str, client: int, peer: int) -> subprocess.Popen:
        return subprocess.Popen(
            [args.lattice_bin, "--name", name, "--data-dir", str(work / f"auto-{name}"),
             "--listen-client-urls", f"https://127.0.0.1:{client}", "--advertise-client-urls", f"https://127.0.0.1:{client}",
             "--listen-peer-urls", f"https://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"https://127.0.0.1:{peer}",
             "--initial-cluster", cluster, "--initial-cluster-token", "auto-tls", "--auto-tls", "--peer-auto-tls",
             "--log-level", "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def skip_verify(port: int, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run([etcdctl, f"--endpoints=https://127.0.0.1:{port}", "--insecure-transport=false",
                               "--insecure-skip-tls-verify", "--dial-timeout=3s", "--command-timeout=3s", *command],
                              capture_output=True, text=True, timeout=30)

    def fingerprint(path: Path) -> str:
        return subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-fingerprint", "-sha256", "-ext", "subjectAltName"],
                              capture_output=True, text=True).stdout

    members = [auto_member("a", c1, p1), auto_member("b", c2, p2)]
    try:
        deadline = time.time() + 30
        while skip_verify(c1, "put", "auto-a", "1").returncode != 0 and time.time() < deadline:
            time.sleep(0.2)
        r = skip_verify(c2, "put", "auto-b", "2")
        check(r.returncode == 0, "--auto-tls: etcdctl over TLS (skipping verification) writes", r.stderr)
        cert = work / "auto-a" / "fixtures" / "client" / "cert.pem"
        first = fingerprint(cert)
        check("IP Address:127.0.0.1" in first and (work / "auto-a" / "fixtures" / "peer" / "cert.pem").exists(),
              "--auto-tls: a self-signed certificate for the listener's address in <data-dir>/fixtures", first)
        r = subprocess.run([etcdctl, f"--endpoints=https://127.0.0.1:{c1}", "--insecure-transport=false", "--dial-timeout=3s",
                            "--command-timeout=3s", "get", "auto-a"], capture_output=True, text=True, timeout=30)
        check(r.returncode != 0, "--auto-tls: a client that verifies the certificate refuses it (self-signed)", r.stdout)
        seen = {}
        deadline = time.time() + 20
        while time.time() < deadline:
            seen = {"a": skip_verify(c1, "get", "auto-b", "--print-value-only").stdout.strip(),
                    "b": skip_verify(c2, "get", "auto-a", "--print-value-only").stdout.strip()}
            if seen == {"a": "2", "b": "1"}:
                break
            time.sleep(0.2)
        check(seen == {"a": "2", "b": "1"}, "--peer-auto-tls: peers replicate both ways over generated certificates", str(seen))
        members[0].terminate()
        members[0].wait(timeout=10)
        members[0] = auto_member("a", c1, p1)
        deadline = time.time() + 30
        while skip_verify(c1, "get", "auto-a").returncode != 0 and time.time() < deadline:
            time.sleep(0.2)
        check(fingerprint(cert) == first and skip_verify(c1, "get", "auto-a", "--print-value-only").stdout.strip() == "1",
              "--auto-tls: a restarted member serves the certificate it made before")
    finally:
        stop_processes(members)

    # Start-up refusals, with etcd's message where etcd has one.
    for extra, expect, what in (
        ([], "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1", "https:// without a certificate"),
        (["--cert-file", str(certs / "server.crt"), "--key-file", str(certs / "server.key"), "--client-cert-auth"],
         "--client-cert-auth needs --trusted-ca-file", "--client-cert-auth without a CA"),
        (["--cert-file", str(certs / "missing.crt"), "--key-file", str(certs / "server.key")], "cannot load", "a missing certificate file"),
        (["--cert-file", str(certs / "server.crt"), "--key-file", str(certs / "server.key"), "--tls-min-version", "TLS1.1"],
         "unexpected TLS version", "--tls-min-version TLS1.1"),
        (["--listen-client-urls", f"http://127.0.0.1:{bad}", "--listen-peer-urls", f"https://127.0.0.1:{bad + 1}",
          "--initial-cluster", f"default=https://127.0.0.1:{bad + 1},other=https://127.0.0.1:{bad + 2}"],
         "TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url https://127.0.0.1",
         "https:// peer URLs without a peer certificate"),
        (["--auto-tls", "--self-signed-cert-validity", "0"], "--self-signed-cert-validity must be positive",
         "--auto-tls with a validity of 0 years"),
    ):
        r = subprocess.run([args.lattice_bin, "--data-dir", str(work / "refused"), "--listen-client-urls",
                            f"https://127.0.0.1:{bad}", *extra], capture_output=True, text=True, timeout=30)
        check(r.returncode == 1 and expect in r.stderr, f"refused at start-up: {what}", f"exit {r.returncode}: {r.stderr}")
    shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
