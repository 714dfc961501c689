import EtcdAPI
import GRPCWire
import LatticeCore
import LatticeReplication
import LatticeStore
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

    public init() {}

    /// etcd's gRPC receive limit: the request limit plus 512 KiB for gRPC overhead. Requests in
    /// between get "request is too large", larger ones RESOURCE_EXHAUSTED from the transport.
    var grpcMaxReceiveBytes: Int { maxRequestBytes + 512 * 1024 }
}

/// A running Lattice member: the store and the client-facing gRPC server.
public final class LatticeServer: Sendable {
    public let configuration: ServerConfiguration
    public let store: MVCCStore
    private let grpc: GRPCServer
    public let memberID: UInt64
    public let clusterID: UInt64
    public let alarms: Alarms
    private let leaseExpiry: RepeatedTask
    private let autoCompaction: RepeatedTask?

    /// The bound client addresses (port 0 in a listen URL becomes the actual port).
    public var clientAddresses: [SocketAddress] { grpc.localAddresses }

    public let replication: ReplicationNode
    private let peerServer: GRPCServer?

    private init(configuration: ServerConfiguration, store: MVCCStore, grpc: GRPCServer, alarms: Alarms, leaseExpiry: RepeatedTask,
                 autoCompaction: RepeatedTask?, replication: ReplicationNode, peerServer: GRPCServer?) {
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
        let (configured, peerMembers, clusterID) = try resolveCluster(configuration)
        var localMember = configured
        localMember.clientURLs = configuration.advertiseClientURLs.map(\.description)
        let memberID = localMember.id
        var storeConfiguration = MVCCStore.Configuration(memberID: memberID, clusterID: clusterID)
        storeConfiguration.peerMemberIDs = Set(peerMembers.map(\.id))
        storeConfiguration.maxTxnOps = configuration.maxTxnOps
        storeConfiguration.wallClock = configuration.wallClock
        storeConfiguration.dataDirectory = configuration.inMemory ? nil : configuration.dataDir
        storeConfiguration.unsafeNoFsync = configuration.unsafeNoFsync
        storeConfiguration.snapshotCount = configuration.snapshotCount
        storeConfiguration.answerBatch = { GRPCResponder.batching($0) }
        let store = try MVCCStore(configuration: storeConfiguration)
        for note in store.recoveryNotes { logger.warning("recovery", metadata: ["note": "\(note)"]) }
        logger.info("opened data directory", metadata: [
            "data-dir": "\(configuration.inMemory ? "(memory)" : configuration.dataDir)",
            "revision": "\(store.currentRevision)", "keys": "\(store.keyCount)",
        ])

        let alarms = Alarms()
        let limits = RequestLimits(maxRequestBytes: configuration.maxRequestBytes, quotaBytes: configuration.quotaBackendBytes,
                                   store: store, alarms: alarms)
        let local = EtcdAPI.Member(id: memberID, name: localMember.name, peerURLs: localMember.peerURLs, clientURLs: localMember.clientURLs)
        var replicationConfiguration = ReplicationNode.Configuration(clusterID: clusterID, local: localMember, peers: peerMembers)
        replicationConfiguration.heartbeatInterval = configuration.peerHeartbeatInterval
        replicationConfiguration.dialFromHost = configuration.listenPeerURLs?.first.map(\.host).flatMap { host in
            host == "localhost" || host == "0.0.0.0" || host == "::" || host.isEmpty ? nil : host
        }
        let replication = ReplicationNode(configuration: replicationConfiguration, store: store, group: group, logger: logger)
        let membership = peerMembers.isEmpty ? Membership(local: local) : Membership(
            members: [local] + peerMembers.map { EtcdAPI.Member(id: $0.id, name: $0.name, peerURLs: $0.peerURLs, clientURLs: []) },
            clientURLs: { replication.peerClientURLs })
        var watchSettings = WatchSettings()
        watchSettings.progressNotifyInterval = configuration.watchProgressNotifyInterval
        watchSettings.fragmentBytes = configuration.maxRequestBytes

        var routes = GRPCRoutes()
        KVService.register(on: &routes, store: store, limits: limits)
        WatchService.register(on: &routes, store: store, settings: watchSettings)
        LeaseService.register(on: &routes, store: store, limits: limits)
        MaintenanceService.register(on: &routes, store: store, alarms: alarms)
        ClusterService.register(on: &routes, store: store, membership: membership)
        replication.registerStatus(on: &routes)
        routes.declare(service: "etcdserverpb.Auth")
        var connectionLimits = GRPCConnectionLimits()
        connectionLimits.maxReceiveMessageBytes = configuration.grpcMaxReceiveBytes
        var peerServer: GRPCServer?
        if let peerURLs = configuration.listenPeerURLs {
            var peerRoutes = GRPCRoutes()
            replication.register(on: &peerRoutes)
            var peerLimits = GRPCConnectionLimits()
            peerLimits.maxReceiveMessageBytes = 16 << 20
            do {
                peerServer = try await GRPCServer.start(addresses: peerURLs.map { ($0.host, $0.port) }, routes: peerRoutes,
                                                        limits: peerLimits, group: group)
            } catch {
                store.close()
                throw error
            }
            logger.info("serving peer traffic", metadata: ["addresses": "\(peerServer!.localAddresses.map { "\($0)" })"])
        }
        replication.start()
        // A member joining an existing cluster with no data yet serves clients only once it
        // holds the cluster's state (a state transfer or a full catch-up from a peer), as an
        // etcd member joins before it serves.
        if !peerMembers.isEmpty && configuration.initialClusterState == "existing" && store.versionVector.entries.isEmpty {
            logger.info("joining an existing cluster: waiting for a peer's state before serving clients")
            await replication.waitUntilSynced()
            logger.info("joined the cluster", metadata: ["revision": "\(store.currentRevision)", "keys": "\(store.keyCount)"])
        }
        let grpc: GRPCServer
        do {
            grpc = try await GRPCServer.start(
            addresses: configuration.listenClientURLs.map { ($0.host, $0.port) },
            routes: routes, limits: connectionLimits, group: group
            ) { local, remote in
                logger.debug("accepted client connection", metadata: ["local": "\(local.map { "\($0)" } ?? "?")", "remote": "\(remote.map { "\($0)" } ?? "?")"])
            }
        } catch {
            await replication.shutdown()
            await peerServer?.shutdown()
            store.close()
            throw error
        }
        logger.info("serving client traffic", metadata: [
            "addresses": "\(grpc.localAddresses.map { "\($0)" })",
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
                             autoCompaction: autoCompaction, replication: replication, peerServer: peerServer)
    }

    /// The bound peer addresses (empty without `listenPeerURLs`).
    public var peerAddresses: [SocketAddress] { peerServer?.localAddresses ?? [] }

    public func shutdown() async {
        leaseExpiry.cancel()
        autoCompaction?.cancel()
        await replication.shutdown()
        await peerServer?.shutdown(grace: .seconds(1))
        await grpc.shutdown()
        store.close()
    }
}
