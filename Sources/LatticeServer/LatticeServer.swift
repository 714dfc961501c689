import EtcdAPI
import GRPCWire
import LatticeCore
import LatticeStore
import Logging
import NIOCore
import NIOPosix

/// A listen or advertise URL: `http://host:port` (TLS arrives with the TLS issue).
public struct ServerURL: Hashable, Sendable, CustomStringConvertible {
    public var scheme: String
    public var host: String
    public var port: Int

    public init(parsing text: String) throws(ConfigurationError) {
        let parts = text.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw ConfigurationError("URL \"\(text)\" has no scheme (expected http://host:port)") }
        scheme = String(parts[0])
        guard scheme == "http" || scheme == "unix" || scheme == "https" else {
            throw ConfigurationError("URL scheme must be http or https (\"\(text)\")")
        }
        var rest = String(parts[1])
        if rest.hasSuffix("/") { rest.removeLast() }
        let hostPart: Substring, portPart: Substring
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            hostPart = rest[rest.index(after: rest.startIndex)..<close]
            let afterClose = rest[rest.index(after: close)...]
            guard afterClose.hasPrefix(":") else { throw ConfigurationError("URL \"\(text)\" has no port") }
            portPart = afterClose.dropFirst()
        } else {
            guard let colon = rest.lastIndex(of: ":") else { throw ConfigurationError("URL \"\(text)\" has no port") }
            hostPart = rest[..<colon]
            portPart = rest[rest.index(after: colon)...]
        }
        guard let port = Int(portPart), (0...65535).contains(port) else { throw ConfigurationError("URL \"\(text)\" has an invalid port") }
        host = String(hostPart)
        self.port = port
    }

    public var description: String {
        host.contains(":") ? "\(scheme)://[\(host)]:\(port)" : "\(scheme)://\(host):\(port)"
    }
}

public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Everything a Lattice member is configured with (flags, environment, config file).
public struct ServerConfiguration: Sendable {
    public var name = "default"
    public var dataDir = "default.lattice"
    public var listenClientURLs = [try! ServerURL(parsing: "http://localhost:2379")]
    public var advertiseClientURLs = [try! ServerURL(parsing: "http://localhost:2379")]
    public var initialAdvertisePeerURLs = ["http://localhost:2380"]
    public var initialClusterToken = "etcd-cluster"
    public var maxRequestBytes = 1_572_864
    public var maxTxnOps = 128
    public var wallClock: any WallClock = SystemWallClock()

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

    /// The bound client addresses (port 0 in a listen URL becomes the actual port).
    public var clientAddresses: [SocketAddress] { grpc.localAddresses }

    private init(configuration: ServerConfiguration, store: MVCCStore, grpc: GRPCServer) {
        self.configuration = configuration
        self.store = store
        self.grpc = grpc
        self.memberID = store.configuration.memberID
        self.clusterID = store.configuration.clusterID
    }

    public static func start(_ configuration: ServerConfiguration, group: any EventLoopGroup, logger: Logger) async throws -> LatticeServer {
        let memberID = ClusterIdentity.memberID(peerURLs: configuration.initialAdvertisePeerURLs, clusterToken: configuration.initialClusterToken)
        let clusterID = ClusterIdentity.clusterID(memberIDs: [memberID])
        var storeConfiguration = MVCCStore.Configuration(memberID: memberID, clusterID: clusterID)
        storeConfiguration.maxTxnOps = configuration.maxTxnOps
        storeConfiguration.wallClock = configuration.wallClock
        let store = MVCCStore(configuration: storeConfiguration)

        var routes = GRPCRoutes()
        KVService.register(on: &routes, store: store, limits: RequestLimits(maxRequestBytes: configuration.maxRequestBytes))
        for service in ["etcdserverpb.Watch", "etcdserverpb.Lease", "etcdserverpb.Cluster", "etcdserverpb.Maintenance", "etcdserverpb.Auth"] {
            routes.declare(service: service)
        }
        var limits = GRPCConnectionLimits()
        limits.maxReceiveMessageBytes = configuration.grpcMaxReceiveBytes
        let grpc = try await GRPCServer.start(
            addresses: configuration.listenClientURLs.map { ($0.host, $0.port) },
            routes: routes, limits: limits, group: group
        ) { local, remote in
            logger.debug("accepted client connection", metadata: ["local": "\(local.map { "\($0)" } ?? "?")", "remote": "\(remote.map { "\($0)" } ?? "?")"])
        }
        logger.info("serving client traffic", metadata: [
            "addresses": "\(grpc.localAddresses.map { "\($0)" })",
            "member-id": "\(String(memberID, radix: 16))",
            "cluster-id": "\(String(clusterID, radix: 16))",
        ])
        return LatticeServer(configuration: configuration, store: store, grpc: grpc)
    }

    public func shutdown() async {
        await grpc.shutdown()
    }
}
