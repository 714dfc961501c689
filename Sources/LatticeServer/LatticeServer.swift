import EtcdAPI
import GRPCWire
import LatticeCore
import LatticeReplication
import LatticeStorage
import LatticeStore
import LatticeTLS
import Logging
import NIOCore
import NIOPosix

/// Everything a Lattice member is configured with (flags, environment, config file).
public struct ServerConfiguration: Sendable {
    public var name = "default"
    public var dataDir = "default.lattice"
    public var listenClientURLs = [try! ServerURL(parsing: "http://localhost:2379")]
    public var advertiseClientURLs = [try! ServerURL(parsing: "http://localhost:2379")]
    public var initialAdvertisePeerURLs = ["http://localhost:2380"]
    public var initialClusterToken = "etcd-cluster"
    /// `--initial-cluster`: name → peer URLs of every member. Empty: this member alone, at
    /// `initialAdvertisePeerURLs`.
    public var initialCluster: [(name: String, peerURLs: [String])] = []
    /// `--initial-cluster-state`: "new" or "existing" (ignored once the data directory exists).
    public var initialClusterState = "new"
    /// `--listen-peer-urls`; nil: no peer listener (a single member needs none).
    public var listenPeerURLs: [ServerURL]?
    /// Replication heartbeat and reconnect timing (tests shorten them).
    public var peerHeartbeatInterval: TimeAmount = .seconds(1)
    public var maxRequestBytes = 1_572_864
    public var maxTxnOps = 128
    /// `--quota-backend-bytes` (etcd default 2 GiB): past it, NOSPACE is raised and writes fail.
    public var quotaBackendBytes: Int64 = 2 << 30
    /// `--experimental-watch-progress-notify-interval`.
    public var watchProgressNotifyInterval: TimeAmount = .minutes(10)
    /// `--auth-token-ttl`: how long a simple token lives after its last use.
    public var authTokenTTL: Duration = .seconds(300)
    /// `--auth-token jwt,…`: signed tokens; nil for simple tokens (with `authTokenTTL`).
    public var authTokens: (any AuthTokenProvider)?
    /// `--bcrypt-cost`.
    public var bcryptCost = 10
    /// How often expired leases are revoked (etcd checks every 500 ms).
    public var leaseExpiryCheckInterval: TimeAmount = .milliseconds(500)
    public var wallClock: any WallClock = SystemWallClock()
    /// `--unsafe-no-fsync`.
    public var unsafeNoFsync = false
    /// `--snapshot-count`.
    public var snapshotCount = 100_000
    /// Keep everything in memory, no data directory (tests).
    public var inMemory = false
    /// `--auto-compaction-mode` / `--auto-compaction-retention`.
    public var autoCompaction = AutoCompaction.off
    /// `--max-concurrent-streams`: calls one client connection may have open at once.
    public var maxConcurrentStreams = Int(UInt32.max)
    /// `--grpc-keepalive-min-time`: client pings closer together than this are strikes.
    public var grpcKeepaliveMinTime: TimeAmount = .seconds(5)
    /// `--grpc-keepalive-interval` / `--grpc-keepalive-timeout`: server pings to clients, and
    /// how long a client has to answer before it is disconnected.
    public var grpcKeepaliveInterval: TimeAmount = .hours(2)
    public var grpcKeepaliveTimeout: TimeAmount = .seconds(20)
    /// `--listen-metrics-urls`: extra HTTP listeners for `/metrics` and `/health` only (the
    /// client URLs serve them too).
    public var listenMetricsURLs: [ServerURL] = []
    /// `--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth` (and the shared
    /// cipher and version flags): TLS for `https://` client and metrics URLs.
    public var clientTLS = TLSSettings()
    /// `--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file`,
    /// `--peer-client-cert-auth`: TLS for `https://` peer URLs, listening and dialling.
    public var peerTLS = TLSSettings()
    /// Called with the client ports once they are bound, before the data directory opens
    /// (tests hold the start here).
    public var clientPortsBound: (@Sendable ([SocketAddress]) async -> Void)?

    public init() {}

    /// etcd's gRPC receive limit: the request limit plus 512 KiB for gRPC overhead. Requests in
    /// between get "request is too large", larger ones RESOURCE_EXHAUSTED from the transport.
    var grpcMaxReceiveBytes: Int { maxRequestBytes + 512 * 1024 }
}

/// A running Lattice member: the store and the client-facing gRPC server.
public final class LatticeServer: Sendable {
    public let configuration: ServerConfiguration
    public let store: MVCCStore
    /// The client listeners: one for `http://` URLs, one for `https://` URLs.
    private let grpc: [GRPCServer]
    public let memberID: UInt64
    public let clusterID: UInt64
    public let alarms: Alarms
    private let leaseExpiry: RepeatedTask
    private let autoCompaction: RepeatedTask?

    /// The bound client addresses (port 0 in a listen URL becomes the actual port).
    public var clientAddresses: [SocketAddress] { grpc.flatMap(\.localAddresses) }

    public let replication: ReplicationNode
    private let peerServer: GRPCServer?

    private let metricsServer: GRPCServer?
    public let metrics: LatticeMetrics

    /// The bound metrics addresses (empty without `listenMetricsURLs`).
    public var metricsAddresses: [SocketAddress] { metricsServer?.localAddresses ?? [] }

    private init(configuration: ServerConfiguration, store: MVCCStore, grpc: [GRPCServer], alarms: Alarms, leaseExpiry: RepeatedTask,
                 autoCompaction: RepeatedTask?, replication: ReplicationNode, peerServer: GRPCServer?,
                 metricsServer: GRPCServer?, metrics: LatticeMetrics) {
        self.metricsServer = metricsServer
        self.metrics = metrics
        self.replication = replication
        self.peerServer = peerServer
        self.autoCompaction = autoCompaction
        self.configuration = configuration
        self.store = store
        self.grpc = grpc
        self.alarms = alarms
        self.leaseExpiry = leaseExpiry
        self.memberID = store.configuration.memberID
        self.clusterID = store.configuration.clusterID
    }

    /// The cluster's members with their ids, derived as etcd derives them (from each member's
    /// peer URLs and the cluster token), and the cluster id (from every member id).
    public static func resolveCluster(_ configuration: ServerConfiguration) throws(ConfigurationError)
        -> (local: LatticeCore.Member, peers: [LatticeCore.Member], clusterID: UInt64) {
        let entries = configuration.initialCluster.isEmpty
            ? [(name: configuration.name, peerURLs: configuration.initialAdvertisePeerURLs)] : configuration.initialCluster
        let members = entries.map {
            LatticeCore.Member(id: ClusterIdentity.memberID(peerURLs: $0.peerURLs, clusterToken: configuration.initialClusterToken),
                               name: $0.name, peerURLs: $0.peerURLs)
        }
        guard let local = members.first(where: { $0.name == configuration.name }) else {
            throw ConfigurationError("couldn't find local name \"\(configuration.name)\" in the initial cluster configuration")
        }
        if Set(members.map(\.id)).count != members.count {
            throw ConfigurationError("--initial-cluster has duplicate members")
        }
        return (local, members.filter { $0.id != local.id }, ClusterIdentity.clusterID(memberIDs: members.map(\.id)))
    }

    public static func start(_ configuration: ServerConfiguration, group: any EventLoopGroup, logger: Logger) async throws -> LatticeServer {
        // The client ports are bound first, as etcd binds them before it loads its data: a
        // client that connects while the data directory opens waits for its answer instead of
        // being refused (and backing off). Nothing is accepted until the member serves.
        // The client certificate is read before anything is bound or loaded: a bad one fails the
        // start at once, not after the data directory has been read.
        let clientTLS = try clientTLSSource(configuration)
        var clientListeners: [(secure: Bool, listeners: GRPCListeners)] = []
        do {
            for secure in [false, true] {
                let urls = configuration.listenClientURLs.filter { ($0.scheme == "https") == secure }
                guard !urls.isEmpty else { continue }
                clientListeners.append((secure, try await GRPCListeners.bind(addresses: urls.map { ($0.host, $0.port) }, group: group)))
            }
            await configuration.clientPortsBound?(clientListeners.flatMap(\.listeners.localAddresses))
            return try await start(configuration, clientTLS: clientTLS, clientListeners: clientListeners, group: group, logger: logger)
        } catch {
            for (_, listeners) in clientListeners { await listeners.close() }
            throw error
        }
    }

    private static func start(_ configuration: ServerConfiguration, clientTLS: TLSContextSource?,
                              clientListeners: [(secure: Bool, listeners: GRPCListeners)],
                              group: any EventLoopGroup, logger: Logger) async throws -> LatticeServer {
        let (configured, configuredPeers, derivedClusterID) = try resolveCluster(configuration)
        let (peerTLSServer, peerTLS) = try peerTLSSources(configuration)
        // A member with a peer listener keeps its membership as replicated state.
        let replicated = configuration.listenPeerURLs != nil
        var localMember = configured
        localMember.clientURLs = configuration.advertiseClientURLs.map(\.description)
        var clusterID = derivedClusterID
        var peerMembers = configuredPeers
        if !configuration.inMemory, let identity = try DataDirectory.readIdentity(configuration.dataDir) {
            // The ids are the data directory's; the members are in its replicated table.
            localMember.id = identity.memberID
            clusterID = identity.clusterID
            if replicated { peerMembers = [] } else { peerMembers = configuredPeers.filter { $0.id != identity.memberID } }
        } else if replicated && configuration.initialClusterState == "existing" {
            // A fresh directory must learn its ids from the cluster. One that holds data but no
            // `member` file (written by an older version, or a join that was cut short) asks
            // too, briefly, and otherwise keeps the ids derived from its flags.
            let fresh = configuration.inMemory || !DataDirectory.holdsData(configuration.dataDir)
            do {
                let joined = try await fetchClusterInfo(configuration, peers: configuredPeers, group: group, logger: logger, tls: peerTLS,
                                                        timeout: fresh ? .seconds(30) : .seconds(5))
                localMember.id = joined.memberID
                clusterID = joined.clusterID
                peerMembers = joined.members.filter { $0.id != joined.memberID }
            } catch where !fresh {
                logger.warning("cannot learn this member's id from its peers; using the ids derived from the flags",
                               metadata: ["reason": "\(error)"])
            }
        }
        let memberID = localMember.id
        var storeConfiguration = MVCCStore.Configuration(memberID: memberID, clusterID: clusterID)
        storeConfiguration.peerMemberIDs = Set(peerMembers.map(\.id))
        storeConfiguration.replicatedMembership = replicated
        storeConfiguration.maxTxnOps = configuration.maxTxnOps
        storeConfiguration.wallClock = configuration.wallClock
        storeConfiguration.dataDirectory = configuration.inMemory ? nil : configuration.dataDir
        storeConfiguration.unsafeNoFsync = configuration.unsafeNoFsync
        storeConfiguration.snapshotCount = configuration.snapshotCount
        storeConfiguration.answerBatch = { GRPCResponder.batching($0) }
        let metrics = LatticeMetrics()
        storeConfiguration.storageObserver = metrics.storageObserver
        let alarms = Alarms(dataDirectory: configuration.inMemory ? nil : configuration.dataDir)
        storeConfiguration.snapshotFailed = { error in
            // The WAL still holds every entry; the snapshot is retried with backoff. A full disk
            // raises NOSPACE so that writes stop before the WAL itself cannot grow.
            logger.error("writing a snapshot failed; retrying", metadata: ["error": "\(error.description)"])
            if error.kind == .io(errno: ENOSPC) { alarms.activate(.noSpace) }
        }
        let store = try MVCCStore(configuration: storeConfiguration)
        if !alarms.active.isEmpty {
            logger.warning("alarms raised before this start are still active", metadata: ["alarms": "\(alarms.active.map(\.name))"])
        }
        for note in store.recoveryNotes { logger.warning("recovery", metadata: ["note": "\(note)"]) }
        logger.info("opened data directory", metadata: [
            "data-dir": "\(configuration.inMemory ? "(memory)" : configuration.dataDir)",
            "revision": "\(store.currentRevision)", "keys": "\(store.keyCount)",
        ])
        let joining = replicated && configuration.initialClusterState == "existing" && store.versionVector.entries.isEmpty
        // The ids are fixed in the data directory once the replicated table holds this member
        // (a bootstrap or a join cut short learns them again next time).
        func keepIdentity() throws {
            if !configuration.inMemory, try DataDirectory.readIdentity(configuration.dataDir) == nil {
                try DataDirectory.writeIdentity(configuration.dataDir, memberID: memberID, clusterID: clusterID)
            }
        }
        if replicated && !joining {
            // The initial members become replicated state (every bootstrapping member writes the
            // same records), and this member publishes its name and client URLs.
            try await bootstrapMembership(store: store, members: [localMember] + peerMembers, local: localMember)
            try keepIdentity()
        } else if !replicated {
            try keepIdentity()
        }

        let limits = RequestLimits(maxRequestBytes: configuration.maxRequestBytes, quotaBytes: configuration.quotaBackendBytes,
                                   store: store, alarms: alarms)
        let local = EtcdAPI.Member(localMember)
        var replicationConfiguration = ReplicationNode.Configuration(clusterID: clusterID, local: localMember, peers: peerMembers)
        replicationConfiguration.heartbeatInterval = configuration.peerHeartbeatInterval
        replicationConfiguration.replicatedMembership = replicated
        replicationConfiguration.dialFromHost = configuration.listenPeerURLs?.first.map(\.host).flatMap { host in
            host == "localhost" || host == "0.0.0.0" || host == "::" || host.isEmpty ? nil : host
        }
        if let peerTLS {
            replicationConfiguration.secureDial = { channel, host in try peerTLS.secureClientConnection(channel, serverHostname: host) }
        }
        let replication = ReplicationNode(configuration: replicationConfiguration, store: store, group: group, logger: logger)
        var watchSettings = WatchSettings()
        watchSettings.progressNotifyInterval = configuration.watchProgressNotifyInterval
        watchSettings.fragmentBytes = configuration.maxRequestBytes

        var routes = GRPCRoutes()
        routes.observer = metrics
        // With client certificates required, a call without a token is made by the user its
        // certificate's common name names (once auth is enabled).
        if configuration.clientTLS.clientCertAuth {
            routes.peerIdentity = { channel in TLSContextSource.peerCommonName(channel) }
        }
        let gate = AuthGate(store: store, tokens: configuration.authTokens, tokenTTL: configuration.authTokenTTL, bcryptCost: configuration.bcryptCost)
        KVService.register(on: &routes, store: store, limits: limits, gate: gate, metrics: metrics)
        WatchService.register(on: &routes, store: store, settings: watchSettings, gate: gate)
        LeaseService.register(on: &routes, store: store, limits: limits, gate: gate)
        MaintenanceService.register(on: &routes, store: store, alarms: alarms)
        if replicated {
            ClusterService.register(on: &routes, store: store, membership: ReplicatedMembership(store: store, local: local))
        } else {
            ClusterService.register(on: &routes, store: store, membership: Membership(local: local))
        }
        replication.registerStatus(on: &routes)
        AuthService.register(on: &routes, store: store, gate: gate)
        AuthService.guardOtherMethods(&routes, gate: gate)
        // Lattice's own Status on the client port (`lattice cluster-status`): members, vectors
        // and a whole-keyspace hash — root only once auth is enabled, like etcd's HashKV.
        routes.precede(PeerMethod.status) { call in gate.requireAdminForMaintenance(call) }
        var connectionLimits = GRPCConnectionLimits()
        connectionLimits.maxReceiveMessageBytes = configuration.grpcMaxReceiveBytes
        connectionLimits.maxConcurrentStreams = configuration.maxConcurrentStreams
        // etcd pings clients only when both are positive.
        connectionLimits.keepalive = configuration.grpcKeepaliveInterval > .zero && configuration.grpcKeepaliveTimeout > .zero
            ? (configuration.grpcKeepaliveInterval, configuration.grpcKeepaliveTimeout) : nil
        connectionLimits.pingPolicy.minimumInterval = configuration.grpcKeepaliveMinTime
        var peerServer: GRPCServer?
        if let peerURLs = configuration.listenPeerURLs {
            var peerRoutes = GRPCRoutes()
            replication.register(on: &peerRoutes)
            var peerLimits = GRPCConnectionLimits()
            peerLimits.maxReceiveMessageBytes = 16 << 20
            var peerHook: (@Sendable (any Channel) throws -> Void)?
            if let peerTLSServer {
                peerHook = { @Sendable (channel: any Channel) throws -> Void in try peerTLSServer.secureServerConnection(channel) }
            }
            let hook = peerHook
            do {
                peerServer = try await GRPCServer.start(addresses: peerURLs.map { ($0.host, $0.port) }, routes: peerRoutes,
                                                        limits: peerLimits, group: group, secure: hook)
            } catch {
                store.close()
                throw error
            }
            logger.info("serving peer traffic", metadata: ["addresses": .array(peerServer!.localAddresses.map { .string("\($0)") })])
        }
        replication.start()
        // A member joining an existing cluster with no data yet serves clients only once it
        // holds the cluster's state (a state transfer or a full catch-up from a peer), as an
        // etcd member joins before it serves.
        if joining {
            logger.info("joining an existing cluster: waiting for a peer's state before serving clients")
            await replication.waitUntilSynced()
            logger.info("joined the cluster", metadata: ["revision": "\(store.currentRevision)", "keys": "\(store.keyCount)"])
            if !replication.isRemovedFromCluster {
                try await bootstrapMembership(store: store, members: [], local: localMember)
                try keepIdentity()
            }
        }
        var grpc: [GRPCServer] = []
        var metricsServer: GRPCServer?
        let health = HealthCheck(alarms: alarms, store: store)
        let sources = LatticeMetrics.Sources(store: store, replication: replication, memberID: memberID,
                                             quotaBytes: configuration.quotaBackendBytes)
        do {
            var tlsHook: (@Sendable (any Channel) throws -> Void)?
            if let clientTLS {
                tlsHook = { @Sendable (channel: any Channel) throws -> Void in try clientTLS.secureServerConnection(channel) }
            }
            let hook = tlsHook
            for (secure, listeners) in clientListeners {
                grpc.append(GRPCServer.start(
                    on: listeners,
                    routes: routes, limits: connectionLimits,
                    http: HTTPService.endpoints(health: health, metrics: metrics, sources: sources, metricsOnly: false),
                    gateway: JSONGateway(routes: routes, maxBodyBytes: connectionLimits.maxReceiveMessageBytes,
                                         authEnabled: { store.authState.enabled }),
                    secure: secure ? hook : nil
                ) { local, remote in
                    logger.debug("accepted client connection", metadata: ["local": "\(local.map { "\($0)" } ?? "?")", "remote": "\(remote.map { "\($0)" } ?? "?")"])
                })
            }
            if !configuration.listenMetricsURLs.isEmpty {
                do {
                    // etcd serves https metrics URLs with the client certificate.
                    let secure = configuration.listenMetricsURLs.contains { $0.scheme == "https" }
                    metricsServer = try await GRPCServer.start(
                        addresses: configuration.listenMetricsURLs.map { ($0.host, $0.port) }, routes: GRPCRoutes(),
                        group: group, http: HTTPService.endpoints(health: health, metrics: metrics, sources: sources, metricsOnly: true),
                        httpOnly: true, secure: secure ? hook : nil)
                } catch {
                    for server in grpc { await server.shutdown() }
                    throw error
                }
                logger.info("serving metrics", metadata: ["addresses": .array(metricsServer!.localAddresses.map { .string("\($0)") })])
            }
        } catch {
            await replication.shutdown()
            await peerServer?.shutdown()
            store.close()
            throw error
        }
        logger.info("serving client traffic", metadata: [
            "addresses": .array(grpc.flatMap(\.localAddresses).map { .string("\($0)") }),
            "member-id": "\(String(memberID, radix: 16))",
            "cluster-id": "\(String(clusterID, radix: 16))",
        ])
        let interval = configuration.leaseExpiryCheckInterval
        let leaseExpiry = group.next().scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            store.expireLeases { revoked in
                for id in revoked { logger.debug("lease expired", metadata: ["lease-id": "\(String(id, radix: 16))"]) }
            }
        }
        let compactor = AutoCompactor(store: store, mode: configuration.autoCompaction, logger: logger)
        let autoCompaction = compactor.checkInterval.map { interval in
            group.next().scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in compactor.tick() }
        }
        return LatticeServer(configuration: configuration, store: store, grpc: grpc, alarms: alarms, leaseExpiry: leaseExpiry,
                             autoCompaction: autoCompaction, replication: replication, peerServer: peerServer,
                             metricsServer: metricsServer, metrics: metrics)
    }

    /// Adds the members the replicated table lacks (unless removed) and publishes this member's
    /// name and client URLs when the table's differ. Writes nothing when all is in place.
    static func bootstrapMembership(store: MVCCStore, members: [LatticeCore.Member], local: LatticeCore.Member) async throws {
        let ops = { @Sendable (replica: Replica) throws(EtcdError) -> [Op] in
            var ops: [Op] = []
            for m in members where replica.member(m.id) == nil && !replica.isRemoved(m.id) {
                ops.append(.memberAdd(LatticeCore.Member(id: m.id, name: m.name, peerURLs: m.peerURLs, isLearner: m.isLearner)))
            }
            let known = replica.member(local.id)
            if !replica.isRemoved(local.id), known == nil && !ops.isEmpty || known.map({ $0.name != local.name || $0.clientURLs != local.clientURLs }) == true {
                ops.append(.memberPublish(LatticeCore.Member(id: local.id, name: local.name, clientURLs: local.clientURLs)))
            }
            return ops
        }
        _ = try await withCheckedThrowingContinuation { (c: CheckedContinuation<[LatticeCore.Member], any Error>) in
            store.changeMembership(ops) { c.resume(with: $0) }
        }
    }

    /// A member joining an existing cluster (`--initial-cluster-state existing`, no data yet)
    /// learns its member id and the cluster id from a peer listed in `--initial-cluster`: the
    /// member whose peer URLs are this member's (added with `etcdctl member add`).
    static func fetchClusterInfo(_ configuration: ServerConfiguration, peers: [LatticeCore.Member], group: any EventLoopGroup,
                                 logger: Logger, tls: TLSContextSource?, timeout: Duration) async throws -> (memberID: UInt64, clusterID: UInt64, members: [LatticeCore.Member]) {
        let mine = Set(configuration.initialAdvertisePeerURLs)
        let urls = peers.flatMap(\.peerURLs).filter { !mine.contains($0) }
        guard !urls.isEmpty else {
            throw ConfigurationError("--initial-cluster-state existing needs at least one other member in --initial-cluster")
        }
        let deadline = ContinuousClock.now + timeout
        var lastError = "no peer answered"
        while ContinuousClock.now < deadline {
            for url in urls {
                guard let (host, port, secure) = ReplicationNode.hostPort(url, tls: tls != nil) else { continue }
                var hook: (@Sendable (any Channel) throws -> Void)?
                if secure, let tls {
                    hook = { @Sendable (channel: any Channel) throws -> Void in try tls.secureClientConnection(channel, serverHostname: host) }
                }
                do {
                    let client = try await GRPCClient.connect(host: host, port: port, group: group, connectTimeout: .seconds(2),
                                                              secure: hook)
                    let bytes: [UInt8]
                    do {
                        bytes = try await client.unary(path: PeerMethod.status, request: PeerStatusRequest(skipStateHash: true).protoBytes(),
                                                       timeout: .seconds(5))
                    } catch {
                        await client.close()
                        throw error
                    }
                    await client.close()
                    let status = try PeerStatusResponse(protoBytes: bytes)
                    guard let me = status.members.first(where: { !mine.isDisjoint(with: $0.peerURLs) }) else {
                        throw ConfigurationError("member \(configuration.initialAdvertisePeerURLs.joined(separator: ",")) has not been added to cluster \(String(status.clusterID, radix: 16)) (run `etcdctl member add \(configuration.name) --peer-urls=\(configuration.initialAdvertisePeerURLs.joined(separator: ","))` on a member first)")
                    }
                    logger.info("found this member in the cluster", metadata: [
                        "peer": "\(url)", "member-id": "\(String(me.id, radix: 16))", "cluster-id": "\(String(status.clusterID, radix: 16))",
                    ])
                    return (me.id, status.clusterID, status.members)
                } catch let error as ConfigurationError {
                    throw error
                } catch {
                    lastError = "\(url): \(error)"
                }
            }
            try await Task.sleep(nanoseconds: 500_000_000)
        }
        throw ConfigurationError("cannot fetch cluster info from peer urls (\(lastError))")
    }

    /// The TLS context of the `https://` client and metrics URLs; nil when there are none.
    /// Fails as etcd does when such a URL has no certificate.
    static func clientTLSSource(_ configuration: ServerConfiguration) throws -> TLSContextSource? {
        let secure = (configuration.listenClientURLs + configuration.listenMetricsURLs).filter { $0.scheme == "https" }
        guard let first = secure.first else { return nil }
        if configuration.clientTLS.isEmpty {
            throw ConfigurationError("TLS key/cert (--cert-file, --key-file) must be provided for client url \(first) with HTTPS scheme")
        }
        try configuration.clientTLS.validate(side: "")
        do {
            return try TLSContextSource(settings: configuration.clientTLS, server: true)
        } catch {
            throw ConfigurationError("cannot load the client TLS certificate (--cert-file \(configuration.clientTLS.certFile), --key-file \(configuration.clientTLS.keyFile)): \(error)")
        }
    }

    /// The TLS contexts for peers: the listener's (when the peer listen URLs are https://) and
    /// the dialler's (when any member has an https:// peer URL). Fails as etcd does when such a
    /// URL has no peer certificate.
    static func peerTLSSources(_ configuration: ServerConfiguration) throws -> (server: TLSContextSource?, client: TLSContextSource?) {
        let listen = (configuration.listenPeerURLs ?? []).filter { $0.scheme == "https" }
        let any = !listen.isEmpty || configuration.initialCluster.contains { $0.peerURLs.contains { $0.hasPrefix("https://") } }
            || configuration.initialAdvertisePeerURLs.contains { $0.hasPrefix("https://") }
        guard any || !configuration.peerTLS.isEmpty else { return (nil, nil) }
        if configuration.peerTLS.isEmpty {
            let url = listen.first.map(\.description)
                ?? (configuration.initialCluster.flatMap(\.peerURLs) + configuration.initialAdvertisePeerURLs).first { $0.hasPrefix("https://") } ?? ""
            throw ConfigurationError("TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url \(url) with HTTPS scheme")
        }
        try configuration.peerTLS.validate(side: "peer-")
        do {
            return (listen.isEmpty ? nil : try TLSContextSource(settings: configuration.peerTLS, server: true),
                    try TLSContextSource(settings: configuration.peerTLS, server: false))
        } catch {
            throw ConfigurationError("cannot load the peer TLS certificate (--peer-cert-file \(configuration.peerTLS.certFile), --peer-key-file \(configuration.peerTLS.keyFile)): \(error)")
        }
    }

    /// The bound peer addresses (empty without `listenPeerURLs`).
    public var peerAddresses: [SocketAddress] { peerServer?.localAddresses ?? [] }

    public func shutdown() async {
        leaseExpiry.cancel()
        autoCompaction?.cancel()
        await replication.shutdown()
        await peerServer?.shutdown(grace: .seconds(1))
        for server in grpc { await server.shutdown() }
        await metricsServer?.shutdown(grace: .seconds(1))
        store.close()
    }
}
