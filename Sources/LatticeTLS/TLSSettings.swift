#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOSSL
import Synchronization

/// etcd's TLS flags for one side (client or peer): `--cert-file`, `--key-file`,
/// `--trusted-ca-file`, `--client-cert-auth` (or their `--peer-` forms), with the shared
/// `--cipher-suites`, `--tls-min-version` and `--tls-max-version`.
public struct TLSSettings: Sendable, Equatable {
    public var certFile = ""
    public var keyFile = ""
    public var trustedCAFile = ""
    public var clientCertAuth = false
    /// Go names (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, …); empty: BoringSSL's defaults.
    public var cipherSuites: [String] = []
    /// "TLS1.2" (etcd's default) or "TLS1.3"; max "" = no limit.
    public var minVersion = "TLS1.2"
    public var maxVersion = ""
    /// Dialling: accept any certificate the other side presents (etcd's `--peer-auto-tls`,
    /// where every member's certificate is self-signed).
    public var insecureSkipVerify = false

    public init() {}

    /// No certificate given: the side serves and dials in cleartext.
    public var isEmpty: Bool { certFile.isEmpty && keyFile.isEmpty }

    /// Checks the flags as etcd does, before anything is opened.
    public func validate(side: String) throws(TLSError) {
        if certFile.isEmpty != keyFile.isEmpty {
            throw TLSError("both --\(side)cert-file and --\(side)key-file must be given")
        }
        if clientCertAuth && trustedCAFile.isEmpty {
            throw TLSError("--\(side)client-cert-auth needs --\(side)trusted-ca-file")
        }
        for suite in cipherSuites where Self.openSSLCipher[suite] == nil {
            throw TLSError("unexpected TLS cipher suite \"\(suite)\"")
        }
        guard Self.version(minVersion) != nil else { throw TLSError("unexpected TLS version \"\(minVersion)\" (TLS1.2 or TLS1.3)") }
        if !maxVersion.isEmpty {
            guard let max = Self.version(maxVersion) else { throw TLSError("unexpected TLS version \"\(maxVersion)\" (TLS1.2 or TLS1.3)") }
            if let min = Self.version(minVersion), Self.rank(max) < Self.rank(min) {
                throw TLSError("--tls-max-version (\(maxVersion)) is lower than --tls-min-version (\(minVersion))")
            }
        }
        if !cipherSuites.isEmpty && minVersion == "TLS1.3" {
            throw TLSError("cipher suites cannot be configured when only TLS1.3 is enabled")
        }
    }

    static func version(_ name: String) -> TLSVersion? {
        switch name {
        case "TLS1.2": return .tlsv12
        case "TLS1.3": return .tlsv13
        default: return nil
        }
    }

    static func rank(_ v: TLSVersion) -> Int { v == .tlsv13 ? 3 : 2 }

    /// Go's names of the TLS 1.2 suites etcd accepts, and BoringSSL's names for them.
    static let openSSLCipher: [String: String] = [
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
        "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
        "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    ]

    /// The TLS configuration these settings describe: `server` for a listener (ALPN h2 and
    /// http/1.1, client certificates required with `clientCertAuth`), else for dialing a peer
    /// (presents the certificate, verifies the peer against the trusted CA).
    func configuration(server: Bool) throws -> TLSConfiguration {
        var c: TLSConfiguration
        if server {
            let chain = try NIOSSLCertificate.fromPEMFile(certFile).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
            c = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            if clientCertAuth {
                c.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(trustedCAFile))
                c.certificateVerification = .noHostnameVerification
                c.sendCANameList = true
            }
            c.applicationProtocols = ["h2", "http/1.1"]
        } else {
            c = TLSConfiguration.makeClientConfiguration()
            if !certFile.isEmpty {
                c.certificateChain = try NIOSSLCertificate.fromPEMFile(certFile).map { .certificate($0) }
                c.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            }
            if !trustedCAFile.isEmpty {
                c.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(trustedCAFile))
            }
            // Peers are dialled by the addresses in their URLs, which their certificates may
            // not name (etcd checks the chain and, for IP SANs, the address): the chain is
            // what authenticates a peer here.
            c.certificateVerification = insecureSkipVerify ? .none : .noHostnameVerification
            c.applicationProtocols = ["h2"]
        }
        c.minimumTLSVersion = Self.version(minVersion) ?? .tlsv12
        if !maxVersion.isEmpty { c.maximumTLSVersion = Self.version(maxVersion) }
        if !cipherSuites.isEmpty {
            c.cipherSuites = cipherSuites.compactMap { Self.openSSLCipher[$0] }.joined(separator: ":")
        }
        return c
    }
}

public struct TLSError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The TLS context of a listener or a dialer, rebuilt when the certificate, key or CA file
/// changes on disk (checked at every new connection, as etcd reloads per handshake), so that
/// renewed certificates are picked up without a restart. A file that cannot be read keeps the
/// last good context.
public final class TLSContextSource: Sendable {
    public let settings: TLSSettings
    private let server: Bool
    private struct Cached {
        var stamp: [Int64]
        var context: NIOSSLContext
    }
    private let cached: Mutex<Cached>

    /// Loads the files now: a bad certificate or key fails start-up.
    public init(settings: TLSSettings, server: Bool) throws {
        self.settings = settings
        self.server = server
        let stamp = Self.stamp(settings)
        let context = try NIOSSLContext(configuration: settings.configuration(server: server))
        cached = Mutex(Cached(stamp: stamp, context: context))
    }

    /// The context for a new connection.
    public func context() -> NIOSSLContext {
        let stamp = Self.stamp(settings)
        if let current = cached.withLock({ $0.stamp == stamp ? $0.context : nil }) { return current }
        guard let fresh = try? NIOSSLContext(configuration: settings.configuration(server: server)) else {
            return cached.withLock { $0.context }
        }
        cached.withLock { $0 = Cached(stamp: stamp, context: fresh) }
        return fresh
    }

    /// Modification time (ns) and size of each file: a replaced or rewritten file changes it.
    private static func stamp(_ s: TLSSettings) -> [Int64] {
        [s.certFile, s.keyFile, s.trustedCAFile].flatMap { path -> [Int64] in
            guard !path.isEmpty else { return [0, 0] }
            var st = stat()
            guard stat(path, &st) == 0 else { return [-1, -1] }
            return [Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec), Int64(st.st_size)]
        }
    }

    /// Puts a server-side TLS handler first on an accepted connection.
    public func secureServerConnection(_ channel: any Channel) throws {
        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context()), position: .first)
    }

    /// The common name in the subject of the certificate the peer of `channel` presented and
    /// the handshake verified (the last one when the subject names several, as Go reads it);
    /// nil on a connection without TLS or without a client certificate. On the channel's
    /// event loop.
    public static func peerCommonName(_ channel: any Channel) -> String? {
        guard let handler = try? channel.pipeline.syncOperations.handler(type: NIOSSLHandler.self),
              let certificate = handler.peerCertificate else { return nil }
        return certificate.subjectName.last { $0.type == .commonName }?.value
    }

    /// Puts a client-side TLS handler first on a dialled connection.
    public func secureClientConnection(_ channel: any Channel, serverHostname: String?) throws {
        // SNI carries names only, never addresses.
        let name = serverHostname.flatMap { host -> String? in
            host.contains(":") || host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : host
        }
        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context(), serverHostname: name),
                                                       position: .first)
    }
}
