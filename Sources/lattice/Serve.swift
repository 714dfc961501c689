import ArgumentParser
import Dispatch
import GRPCWire
import LatticeJWT
import LatticeServer
import LatticeStorage
import LatticeTLS
import Logging
import NIOCore
import NIOPosix
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// `lattice [serve] [flags]`: runs a member. Flag names and defaults are etcd's.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a Lattice member (the default command).")

    @Option(help: "Path to the server configuration file (etcd's YAML). When given, other flags and ETCD_* variables are ignored.")
    var configFile: String?

    @Option(help: "Human-readable name for this member.")
    var name = "default"

    @Option(help: "Path to the data directory.")
    var dataDir: String?

    @Option(help: "List of URLs to listen on for client traffic (comma-separated).")
    var listenClientUrls = "http://127.0.0.1:2379"

    @Option(help: "List of URLs to listen on for the /metrics and /health endpoints (comma-separated).")
    var listenMetricsUrls: String?

    @Option(help: "List of this member's client URLs to advertise to the public (comma-separated).")
    var advertiseClientUrls = "http://localhost:2379"

    @Option(help: "List of this member's peer URLs to advertise to the rest of the cluster.")
    var initialAdvertisePeerUrls = "http://localhost:2380"

    @Option(help: "Initial cluster token for the cluster during bootstrap.")
    var initialClusterToken = "etcd-cluster"

    @Option(help: "Initial cluster configuration for bootstrapping (name=peer-url,...; a name may repeat for several URLs).")
    var initialCluster: String?

    @Option(help: "Initial cluster state ('new' or 'existing'); ignored when the data directory exists.")
    var initialClusterState = "new"

    @Option(help: "List of URLs to listen on for peer traffic (default http://localhost:2380 when the cluster has other members).")
    var listenPeerUrls: String?

    @Option(help: "Maximum client request size in bytes the server will accept.")
    var maxRequestBytes = 1_572_864

    @Option(help: "Maximum number of operations permitted in a transaction.")
    var maxTxnOps = 128

    @Option(help: "Specify auth token type and options: 'simple' (tokens held by this member, renewed on use) or 'jwt,sign-method=RS256,priv-key=FILE,pub-key=FILE,ttl=5m' (signed tokens; RS/PS/ES/HS 256/384/512).")
    var authToken = "simple"

    @Option(help: "The lifetime in seconds of a simple auth token after its last use (JWTs take the ttl option).")
    var authTokenTtl: UInt = 300

    @Option(help: "Specify bcrypt algorithm cost factor for auth password hashing (4 to 31).")
    var bcryptCost: Int = 10

    @Option(help: "Raise alarms when backend size exceeds the given quota (bytes).")
    var quotaBackendBytes: Int64 = 2 << 30

    @Option(help: "Duration of periodic watch progress notifications (Go duration, e.g. 10m0s, 5s).")
    var experimentalWatchProgressNotifyInterval = "10m0s"

    @Option(help: "Interpret 'auto-compaction-retention' one of: periodic|revision.")
    var autoCompactionMode = "periodic"

    @Option(help: "Auto compaction retention for mvcc key value store. 0 means disable auto compaction (periodic: a Go duration or hours; revision: a count).")
    var autoCompactionRetention = "0"

    @Option(help: "Maximum concurrent streams that each client can open at a time.")
    var maxConcurrentStreams: UInt32 = .max

    @Option(help: "Minimum interval duration that a client should wait before pinging server.")
    var grpcKeepaliveMinTime = "5s"

    @Option(help: "Frequency duration of server-to-client ping to check if a connection is alive (0 to disable).")
    var grpcKeepaliveInterval = "2h"

    @Option(help: "Additional duration of wait before closing a non-responsive connection (0 to disable).")
    var grpcKeepaliveTimeout = "20s"

    @Option(help: "Number of committed transactions to trigger a snapshot to disk.")
    var snapshotCount = 100_000

    @Flag(help: "Disables fsync, unsafe, will cause data loss.")
    var unsafeNoFsync = false

    @Option(help: "Path to the client server TLS cert file.")
    var certFile = ""

    @Option(help: "Path to the client server TLS key file.")
    var keyFile = ""

    @Option(help: "Path to the client server TLS trusted CA cert file.")
    var trustedCaFile = ""

    @Flag(help: "Enable client cert authentication.")
    var clientCertAuth = false

    @Flag(help: "Client TLS using generated certificates (self-signed, kept in <data-dir>/fixtures/client; made with openssl).")
    var autoTls = false

    @Option(help: "Path to the peer server TLS cert file.")
    var peerCertFile = ""

    @Option(help: "Path to the peer server TLS key file.")
    var peerKeyFile = ""

    @Option(help: "Path to the peer server TLS trusted CA file.")
    var peerTrustedCaFile = ""

    @Flag(help: "Enable peer client cert authentication.")
    var peerClientCertAuth = false

    @Flag(help: "Peer TLS using generated certificates (self-signed, kept in <data-dir>/fixtures/peer; peers' certificates are not verified).")
    var peerAutoTls = false

    @Option(help: "The validity period of the client and peer certificates that are automatically generated by etcd when you specify ClientAutoTLS and PeerAutoTLS, the unit is year, and the default is 1.")
    var selfSignedCertValidity = 1

    @Option(help: "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go).")
    var cipherSuites = ""

    @Option(help: "Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3.")
    var tlsMinVersion = "TLS1.2"

    @Option(help: "Maximum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3 (empty defers to Go).")
    var tlsMaxVersion = ""

    @Option(help: "Configures log level. Only supports debug, info, warn, error, panic, or fatal.")
    var logLevel = "info"

    @Option(help: "Currently only supports 'zap' for structured logging (etcd's JSON log lines).")
    var logger = "zap"

    @Option(help: "Comma-separated log targets: 'default' or 'stderr' (the journal under systemd), 'stdout', or file paths (appended to).")
    var logOutputs = "default"

    func validate() throws {
        guard Self.logLevels[logLevel] != nil else {
            throw ValidationError("--log-level must be one of debug, info, warn, error, panic, fatal (got \"\(logLevel)\")")
        }
        switch logger {
        case "zap": break
        case "capnslog": throw ValidationError("--logger=capnslog is removed in v3.5")
        default: throw ValidationError("unknown logger option \"\(logger)\"")
        }
        guard maxRequestBytes > 0 else { throw ValidationError("--max-request-bytes must be positive") }
        // The transport limit is this plus 512 KiB, and gRPC lengths are 32-bit.
        guard maxRequestBytes <= Int(Int32.max) - 512 * 1024 else {
            throw ValidationError("--max-request-bytes must be at most \(Int(Int32.max) - 512 * 1024)")
        }
        guard maxTxnOps > 0 else { throw ValidationError("--max-txn-ops must be positive") }
        guard (4...31).contains(bcryptCost) else { throw ValidationError("invalid bcrypt-cost \(bcryptCost): it must be between 4 and 31") }
        _ = try authTokenOptions()
        guard snapshotCount > 0 else { throw ValidationError("--snapshot-count must be positive") }
        _ = try autoCompaction()
        guard quotaBackendBytes >= 0 else { throw ValidationError("--quota-backend-bytes must not be negative") }
        guard maxConcurrentStreams > 0 else { throw ValidationError("--max-concurrent-streams must be positive") }
        for (flag, value) in [("grpc-keepalive-min-time", grpcKeepaliveMinTime), ("grpc-keepalive-interval", grpcKeepaliveInterval),
                              ("grpc-keepalive-timeout", grpcKeepaliveTimeout)] {
            guard let ns = GoDuration.nanoseconds(value), ns >= 0 else {
                throw ValidationError("invalid duration \"\(value)\" for --\(flag)")
            }
        }
        guard let interval = GoDuration.nanoseconds(experimentalWatchProgressNotifyInterval), interval > 0 else {
            throw ValidationError("invalid duration \"\(experimentalWatchProgressNotifyInterval)\" for --experimental-watch-progress-notify-interval")
        }
    }

    /// `--auth-token`, in etcd's syntax: `simple`, or `jwt,` followed by `name=value` options
    /// separated by commas (returned; nil for simple tokens). A malformed list, a repeated
    /// option or another type fails start-up, as in etcd.
    func authTokenOptions() throws -> [String: String]? {
        let parts = authToken.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        var options: [String: String] = [:]
        for part in parts.dropFirst() {
            let pair = part.split(separator: "=", omittingEmptySubsequences: false)
            guard pair.count == 2, options[String(pair[0])] == nil else {
                throw ValidationError("--auth-token \"\(authToken)\": auth: invalid auth options (expected name=value pairs, each name once)")
            }
            options[String(pair[0])] = String(pair[1])
        }
        switch parts[0] {
        case "simple": return nil
        case "jwt":
            if let ttl = options["ttl"], GoDuration.nanoseconds(ttl) == nil {
                throw ValidationError("--auth-token: invalid duration \"\(ttl)\" for the JWT ttl")
            }
            return options
        default:
            throw ValidationError("--auth-token \"\(authToken)\": auth: invalid auth options (the type is 'simple' or 'jwt')")
        }
    }

    private static let logLevels: [String: Logger.Level] = [
        "debug": .debug, "info": .info, "warn": .warning, "error": .error, "panic": .critical, "fatal": .critical,
    ]

    func makeConfiguration() throws -> ServerConfiguration {
        var c = ServerConfiguration()
        c.name = name
        c.dataDir = dataDir ?? "\(name).lattice"
        do {
            c.listenClientURLs = try Self.urls(listenClientUrls)
            c.advertiseClientURLs = try Self.urls(advertiseClientUrls)
        } catch {
            throw ValidationError(error.description)
        }
        for url in c.listenClientURLs where url.scheme != "http" && url.scheme != "https" {
            throw ValidationError("\(url): client URLs must be http:// or https://")
        }
        if let listenMetricsUrls, !listenMetricsUrls.isEmpty {
            do { c.listenMetricsURLs = try Self.urls(listenMetricsUrls) } catch { throw ValidationError(error.description) }
            for url in c.listenMetricsURLs where url.scheme != "http" && url.scheme != "https" {
                throw ValidationError("\(url): metrics URLs must be http:// or https://")
            }
        }
        guard selfSignedCertValidity > 0 else { throw ValidationError("--self-signed-cert-validity must be positive") }
        c.clientTLS.certFile = certFile
        c.clientTLS.keyFile = keyFile
        // etcd: generated certificates only when none are given.
        if autoTls && certFile.isEmpty && keyFile.isEmpty {
            (c.clientTLS.certFile, c.clientTLS.keyFile) = try generatedCertificate(
                in: c.dataDir + "/fixtures/client", hosts: (c.listenClientURLs + c.listenMetricsURLs).map(\.host))
        }
        c.clientTLS.trustedCAFile = trustedCaFile
        c.clientTLS.clientCertAuth = clientCertAuth
        c.clientTLS.cipherSuites = cipherSuites.split(separator: ",").map { String($0.filter { $0 != " " }) }
        c.clientTLS.minVersion = tlsMinVersion
        c.clientTLS.maxVersion = tlsMaxVersion
        do { try c.clientTLS.validate(side: "") } catch { throw ValidationError(error.description) }
        let secure = (c.listenClientURLs + c.listenMetricsURLs).filter { $0.scheme == "https" }
        if let url = secure.first, c.clientTLS.isEmpty {
            throw ValidationError("TLS key/cert (--cert-file, --key-file) must be provided for client url \(url) with HTTPS scheme")
        }
        c.initialAdvertisePeerURLs = initialAdvertisePeerUrls.split(separator: ",").map { String($0.filter { $0 != " " }) }
        c.initialClusterToken = initialClusterToken
        guard initialClusterState == "new" || initialClusterState == "existing" else {
            throw ValidationError("unexpected initial-cluster-state \"\(initialClusterState)\" (expected new or existing)")
        }
        c.initialClusterState = initialClusterState
        if let initialCluster {
            c.initialCluster = try Self.parseInitialCluster(initialCluster)
            guard let mine = c.initialCluster.first(where: { $0.name == name }) else {
                throw ValidationError("couldn't find local name \"\(name)\" in the initial cluster configuration")
            }
            // etcd: the member's advertised peer URLs must be the ones the cluster lists for it.
            if initialAdvertisePeerUrls != "http://localhost:2380" && Set(mine.peerURLs) != Set(c.initialAdvertisePeerURLs) {
                throw ValidationError("--initial-cluster has \(name)=\(mine.peerURLs.joined(separator: ",")) but missing from --initial-advertise-peer-urls=\(c.initialAdvertisePeerURLs.joined(separator: ","))")
            }
            c.initialAdvertisePeerURLs = mine.peerURLs
        }
        let clustered = c.initialCluster.count > 1
        if let listenPeerUrls {
            do { c.listenPeerURLs = try Self.urls(listenPeerUrls) } catch { throw ValidationError(error.description) }
        } else if clustered {
            c.listenPeerURLs = [try! ServerURL(parsing: "http://localhost:2380")]
        }
        for url in c.listenPeerURLs ?? [] where url.scheme != "http" && url.scheme != "https" {
            throw ValidationError("\(url): peer URLs must be http:// or https://")
        }
        c.peerTLS = c.clientTLS
        c.peerTLS.certFile = peerCertFile
        c.peerTLS.keyFile = peerKeyFile
        c.peerTLS.trustedCAFile = peerTrustedCaFile
        c.peerTLS.clientCertAuth = peerClientCertAuth
        if peerAutoTls && peerCertFile.isEmpty && peerKeyFile.isEmpty {
            (c.peerTLS.certFile, c.peerTLS.keyFile) = try generatedCertificate(
                in: c.dataDir + "/fixtures/peer",
                hosts: (c.listenPeerURLs ?? []).map(\.host) + c.initialAdvertisePeerURLs.compactMap { try? ServerURL(parsing: $0).host })
            // Every member's certificate is self-signed: peers are not verified (as etcd).
            c.peerTLS.insecureSkipVerify = true
        }
        do { try c.peerTLS.validate(side: "peer-") } catch { throw ValidationError(error.description) }
        let securePeers = (c.listenPeerURLs ?? []).map(\.description) + c.initialAdvertisePeerURLs + c.initialCluster.flatMap(\.peerURLs)
        if let url = securePeers.first(where: { $0.hasPrefix("https://") }), c.peerTLS.isEmpty {
            throw ValidationError("TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url \(url) with HTTPS scheme")
        }
        c.maxRequestBytes = maxRequestBytes
        c.maxTxnOps = maxTxnOps
        c.authTokenTTL = .seconds(Int64(authTokenTtl))
        if let options = try authTokenOptions() {
            do {
                c.authTokens = try JWTTokens(options: options, ttlNanoseconds: options["ttl"].flatMap { GoDuration.nanoseconds($0) }) { path in
                    try readWholeFile(path, limit: 1 << 20)
                }
            } catch {
                throw ValidationError("--auth-token: \(error)")
            }
        }
        c.bcryptCost = bcryptCost
        // etcd: 0 means the default quota.
        c.quotaBackendBytes = quotaBackendBytes == 0 ? 2 << 30 : quotaBackendBytes
        c.watchProgressNotifyInterval = .nanoseconds(GoDuration.nanoseconds(experimentalWatchProgressNotifyInterval)!)
        c.snapshotCount = snapshotCount
        c.maxConcurrentStreams = Int(maxConcurrentStreams)
        c.grpcKeepaliveMinTime = .nanoseconds(GoDuration.nanoseconds(grpcKeepaliveMinTime)!)
        c.grpcKeepaliveInterval = .nanoseconds(GoDuration.nanoseconds(grpcKeepaliveInterval)!)
        c.grpcKeepaliveTimeout = .nanoseconds(GoDuration.nanoseconds(grpcKeepaliveTimeout)!)
        c.autoCompaction = try autoCompaction()
        c.unsafeNoFsync = unsafeNoFsync
        return c
    }

    /// etcd's rules: periodic retention is a duration, or a bare number of hours; revision
    /// retention is a count; "0" turns it off.
    func autoCompaction() throws -> AutoCompaction {
        if autoCompactionRetention == "0" { return .off }
        switch autoCompactionMode {
        case "periodic":
            if let hours = Double(autoCompactionRetention), hours > 0 {
                // Int64 milliseconds hold about 2.5 million years: beyond that (or inf, nan) is
                // not a retention anyone means.
                guard hours.isFinite, hours * 3_600_000 < 9.2e18 else {
                    throw ValidationError("invalid --auto-compaction-retention \"\(autoCompactionRetention)\": too large")
                }
                return .periodic(retentionMilliseconds: Int64(hours * 3_600_000))
            }
            guard let ns = GoDuration.nanoseconds(autoCompactionRetention), ns > 0 else {
                throw ValidationError("invalid --auto-compaction-retention \"\(autoCompactionRetention)\" for periodic mode")
            }
            return .periodic(retentionMilliseconds: ns / 1_000_000)
        case "revision":
            guard let revisions = Int64(autoCompactionRetention), revisions > 0 else {
                throw ValidationError("invalid --auto-compaction-retention \"\(autoCompactionRetention)\" for revision mode")
            }
            return .revision(revisions: revisions)
        default:
            throw ValidationError("unknown auto-compaction-mode \"\(autoCompactionMode)\" (periodic or revision)")
        }
    }

    /// `name=url,name=url,…` (etcd's syntax); a name listed twice has two peer URLs.
    static func parseInitialCluster(_ text: String) throws -> [(name: String, peerURLs: [String])] {
        var out: [(name: String, peerURLs: [String])] = []
        for part in text.split(separator: ",") {
            let entry = part.filter { $0 != " " }
            guard let eq = entry.firstIndex(of: "="), eq != entry.startIndex else {
                throw ValidationError("--initial-cluster: \"\(entry)\" is not name=url")
            }
            let name = String(entry[..<eq]), url = String(entry[entry.index(after: eq)...])
            let parsed: ServerURL
            do { parsed = try ServerURL(parsing: url) } catch { throw ValidationError("--initial-cluster: \(error.description)") }
            guard parsed.scheme == "http" || parsed.scheme == "https" else {
                throw ValidationError("--initial-cluster: \(url): peer URLs must be http:// or https://")
            }
            if let i = out.firstIndex(where: { $0.name == name }) { out[i].peerURLs.append(url) } else { out.append((name, [url])) }
        }
        guard !out.isEmpty else { throw ValidationError("--initial-cluster is empty") }
        return out
    }

    /// `--auto-tls` / `--peer-auto-tls`: the self-signed certificate and key in `directory`.
    private func generatedCertificate(in directory: String, hosts: [String]) throws -> (String, String) {
        do {
            let files = try SelfSignedCertificate.ensure(directory: directory, hosts: hosts, validityYears: selfSignedCertValidity)
            return (files.certFile, files.keyFile)
        } catch {
            throw ValidationError(error.description)
        }
    }

    private static func urls(_ list: String) throws(ConfigurationError) -> [ServerURL] {
        var out: [ServerURL] = []
        for part in list.split(separator: ",") {
            out.append(try ServerURL(parsing: String(part.filter { $0 != " " })))
        }
        if out.isEmpty { throw ConfigurationError("empty URL list") }
        return out
    }

    func run() async throws {
        let configuration = try makeConfiguration()
        let level = Self.logLevels[logLevel]!
        let outputs: LogOutputs
        do { outputs = try LogOutputs(logOutputs) } catch { throw ExitFailure(error.description) }
        LoggingSystem.bootstrap { _ in JSONLogHandler(outputs: outputs, level: level) }
        let logger = Logger(label: "lattice")
        let group = MultiThreadedEventLoopGroup.singleton

        let server: LatticeServer
        do {
            server = try await LatticeServer.start(configuration, group: group, logger: logger)
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw ExitFailure("listen tcp \(configuration.listenClientURLs.map { "\($0.host):\($0.port)" }.joined(separator: ",")): bind: address already in use")
        } catch let error as IOError {
            throw ExitFailure("cannot listen on \(configuration.listenClientURLs): \(error)")
        } catch let error as StorageError {
            throw ExitFailure(error.description)
        } catch let error as ConfigurationError {
            throw ExitFailure(error.description)
        }
        logger.info("ready to serve client requests", metadata: ["name": "\(configuration.name)"])
        let systemd = SystemdNotifier()
        systemd.notify("READY=1")
        systemd.startWatchdog()

        // Runs until SIGTERM/SIGINT, until this member learns it was removed from the cluster,
        // or until its WAL cannot be written (both exit with an error, as etcd does: a service
        // manager then restarts the member, which recovers from what is on disk).
        let end = await withCheckedContinuation { (c: CheckedContinuation<End, Never>) in
            let first = ResumeOnce(c)
            Task { await Self.waitForTerminationSignal(); first.resume(.signal) }
            Task { await server.replication.waitUntilRemoved(); first.resume(.removed) }
            server.store.onStorageFailure { error in first.resume(.storageFailed(error.message)) }
        }
        systemd.notify("STOPPING=1")
        switch end {
        case .signal:
            logger.info("received termination signal, shutting down")
            await server.shutdown()
        case .removed:
            await server.shutdown()
            throw ExitFailure("the member has been permanently removed from the cluster")
        case .storageFailed(let message):
            logger.critical("the write-ahead log cannot be written; exiting so that a restart recovers", metadata: ["error": "\(message)"])
            await server.shutdown()
            throw ExitFailure(message)
        }
    }

    private enum End: Sendable {
        case signal, removed, storageFailed(String)
    }

    /// Suspends until SIGTERM or SIGINT.
    private static func waitForTerminationSignal() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = ResumeOnce(continuation)
            for sig in [SIGTERM, SIGINT] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler { once.resume(()) }
                source.resume()
                once.retain(source)
            }
        }
    }
}

/// Resumes a continuation with the first value offered (later ones are ignored), keeping alive
/// whatever may offer one (signal sources).
private final class ResumeOnce<T: Sendable>: @unchecked Sendable {
    // @unchecked: all state is guarded by `lock`.
    private let lock = NIOLock()
    private var continuation: CheckedContinuation<T, Never>?
    private var retained: [Any] = []

    init(_ continuation: CheckedContinuation<T, Never>) { self.continuation = continuation }

    func retain(_ object: Any) { lock.withLock { retained.append(object) } }

    func resume(_ value: T) {
        let c = lock.withLock { () -> CheckedContinuation<T, Never>? in
            defer { continuation = nil }
            return continuation
        }
        c?.resume(returning: value)
    }
}

/// A fatal start-up error: printed as one line, exit status 1.
struct ExitFailure: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// Go's `time.ParseDuration` syntax ("10m0s", "1h30m", "500ms", "5s"), which etcd's flags use.
enum GoDuration {
    static func nanoseconds(_ text: String) -> Int64? {
        let units: [(String, Double)] = [("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
        var rest = Substring(text)
        if rest == "0" { return 0 }
        var total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let (unit, scale) = units.sorted(by: { $0.0.count > $1.0.count }).first(where: { rest.hasPrefix($0.0) }) else { return nil }
            rest = rest.dropFirst(unit.count)
            total += value * scale
        }
        return total.isFinite && total < 9.2e18 ? Int64(total) : nil
    }
}
