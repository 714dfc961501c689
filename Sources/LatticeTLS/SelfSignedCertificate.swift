#if canImport(Glibc)
import Glibc
#endif

/// etcd's `--auto-tls` / `--peer-auto-tls`: a self-signed certificate for the listener's hosts,
/// kept in the data directory (`fixtures/client` or `fixtures/peer`, `cert.pem` and `key.pem`)
/// and reused at the next start, as etcd keeps its. Made with openssl(1) — an ECDSA P-256 key,
/// subject O=etcd, the hosts as IP or DNS subject alternative names, usable for server and
/// client authentication, valid `validityYears` years.
public enum SelfSignedCertificate {
    /// The certificate and key files in `directory`, made first if either is missing.
    public static func ensure(directory: String, hosts: [String], validityYears: Int,
                              openssl: String = "openssl") throws(TLSError) -> (certFile: String, keyFile: String) {
        let cert = directory + "/cert.pem", key = directory + "/key.pem"
        if access(cert, R_OK) == 0 && access(key, R_OK) == 0 { return (cert, key) }
        try makeDirectories(directory)
        var names: [String] = []
        for host in Set(hosts).sorted() where !host.isEmpty {
            let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
            let isIP = bare.contains(":") || bare.allSatisfy { $0.isNumber || $0 == "." }
            names.append(isIP ? "IP:\(bare)" : "DNS:\(bare)")
        }
        var arguments = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                         "-keyout", key, "-out", cert, "-days", String(max(1, validityYears) * 365), "-subj", "/O=etcd",
                         "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
                         "-addext", "extendedKeyUsage=serverAuth,clientAuth"]
        if !names.isEmpty { arguments += ["-addext", "subjectAltName=" + names.joined(separator: ",")] }
        let status = run(arguments)
        guard status == 0, access(cert, R_OK) == 0, access(key, R_OK) == 0 else {
            unlink(cert)
            unlink(key)
            throw TLSError(status == 127
                ? "cannot generate a self-signed certificate in \(directory): openssl(1) was not found (install openssl, or give certificate files)"
                : "cannot generate a self-signed certificate in \(directory): openssl exited with status \(status)")
        }
        chmod(key, 0o600)
        return (cert, key)
    }

    private static func makeDirectories(_ path: String) throws(TLSError) {
        var built = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            built += "/" + part
            if mkdir(built, 0o700) != 0 && errno != EEXIST {
                throw TLSError("cannot create \(built): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Runs `arguments` (looked up in PATH), its output discarded; the exit status (127 when
    /// it could not be started).
    private static func run(_ arguments: [String]) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        guard posix_spawnp(&pid, arguments[0], &actions, nil, &argv, environ) == 0 else { return 127 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS
        return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }
}
