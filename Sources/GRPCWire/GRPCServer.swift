import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP2
import NIOPosix

/// The methods a server answers, by `:path`. Paths of unknown methods of a known service answer
/// UNIMPLEMENTED "unknown method", others "unknown service", like grpc-go.
public struct GRPCRoutes: Sendable {
    public private(set) var handlers: [String: GRPCMethodHandler] = [:]
    public private(set) var services: Set<String> = []
    /// Told of every call to a registered method (start, final status) and of the message
    /// bytes that cross the connection; nil: nothing is counted.
    public var observer: (any GRPCCallObserver)?
    /// Who the peer of a connection is (the common name of its verified client certificate),
    /// asked once per connection on its event loop, when its first call arrives; nil: calls
    /// carry no peer identity.
    public var peerIdentity: (@Sendable (any Channel) -> String?)?

    public init() {}

    /// Registers `/service/method`.
    public mutating func add(service: String, method: String, _ handler: GRPCMethodHandler) {
        services.insert(service)
        handlers["/\(service)/\(method)"] = handler
    }

    /// Puts `check` in front of a registered method: a call it answers with a status fails with
    /// that status before the method runs (a streaming call, at its first message).
    public mutating func precede(_ path: String, with check: @escaping @Sendable (GRPCCallContext) -> GRPCStatus?) {
        switch handlers[path] {
        case .unary(let body)?:
            handlers[path] = .unary { request, context, responder in
                if let status = check(context) { return responder.fail(status) }
                body(request, context, responder)
            }
        case .streaming(let open)?:
            handlers[path] = .streaming { context, sender in
                if let status = check(context) { return RefusedStreamingCall(sender: sender, status: status) }
                return open(context, sender)
            }
        case nil:
            break
        }
    }

    /// Declares a service whose methods are not implemented (yet): each call gets UNIMPLEMENTED.
    public mutating func declare(service: String) {
        services.insert(service)
    }
}

/// Receives a server's call events, for metrics. Called on event loops: implementations only
/// count (atomics), never block.
public protocol GRPCCallObserver: Sendable {
    /// A call to a registered method began (`path` is `/service/method`).
    func started(path: String)
    /// That call ended with `code` (a call the client reset or abandoned: `.cancelled`).
    func handled(path: String, code: GRPCStatus.Code)
    /// Request bytes received (gRPC frames, as they arrive).
    func received(bytes: Int)
    /// Response bytes sent (gRPC frames).
    func sent(bytes: Int)
}

/// HTTP/2 and gRPC limits of a server (or client) connection.
public struct GRPCConnectionLimits: Sendable {
    /// Largest gRPC message accepted (etcd: `--max-request-bytes` + 512 KiB).
    public var maxReceiveMessageBytes = 2 * 1024 * 1024
    /// Stream flow-control window: large puts need more than HTTP/2's default 64 KiB.
    public var streamWindowBytes = 1 << 20
    /// Connection flow-control window.
    public var connectionWindowBytes = 16 << 20
    /// grpc-go sends a PING with nearly every round trip for BDP estimation: the limit must be
    /// far above what a busy client sends, or the server answers GOAWAY(ENHANCE_YOUR_CALM).
    public var controlFramesPerSecondMax = 20_000
    public var maxHeaderListBytes = 16 * 1024
    /// Pending outbound bytes per stream above which the stream reports not writable.
    public var streamOutboundHighWatermarkBytes = 1 << 20
    /// Concurrent calls a client may open on one connection (etcd: `--max-concurrent-streams`,
    /// default 2³²−1); streams beyond it are refused.
    public var maxConcurrentStreams = Int(UInt32.max)
    /// Server keepalive pings (etcd: `--grpc-keepalive-interval`, 2 h, and
    /// `--grpc-keepalive-timeout`, 20 s): a client that does not answer in time is disconnected,
    /// which releases its calls and watchers. nil: no server pings.
    public var keepalive: (interval: TimeAmount, timeout: TimeAmount)? = (.hours(2), .seconds(20))
    /// What the server accepts of client pings (etcd: `--grpc-keepalive-min-time`, 5 s).
    public var pingPolicy = PingPolicy()
    /// Response bytes one connection may leave unread before the server stops reading it and
    /// holds back its new calls (see `ConnectionBudget`).
    public var connectionResponseBudgetBytes = 32 << 20
    /// Request bytes one connection's calls may hold unfinished (partial messages, requests
    /// waiting for the response budget); a call that takes it past the limit ends with
    /// RESOURCE_EXHAUSTED. nil: 16 MiB or four largest messages, whichever is more.
    public var connectionRequestBudgetBytes: Int?
    var effectiveRequestBudgetBytes: Int {
        connectionRequestBudgetBytes ?? max(16 << 20, 4 * maxReceiveMessageBytes)
    }
    /// Largest response message (grpc-go's default, 2³¹−1); larger ones: RESOURCE_EXHAUSTED.
    public var maxSendMessageBytes = Int(Int32.max)
    /// An HTTP/1.1 connection (health, metrics) with no request for this long is closed.
    public var httpIdleTimeout: TimeAmount = .minutes(2)

    public init() {}

    var connectionConfiguration: NIOHTTP2Handler.ConnectionConfiguration {
        var c = NIOHTTP2Handler.ConnectionConfiguration()
        c.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: maxConcurrentStreams),
            HTTP2Setting(parameter: .initialWindowSize, value: streamWindowBytes),
            HTTP2Setting(parameter: .maxHeaderListSize, value: maxHeaderListBytes),
        ]
        c.targetWindowSize = connectionWindowBytes
        c.controlFrameRateLimit.maximumCount = controlFramesPerSecondMax
        c.controlFrameRateLimit.windowLength = .seconds(1)
        c.maximumBufferedControlFrames = 100_000
        // Header blocks are checked the way etcd checks them (`RequestHeaderBlock`), which
        // accepts blocks swift-nio-http2's validation would refuse; gRPC frames its messages
        // itself, and etcd ignores content-length.
        c.headerBlockValidation = .disabled
        c.contentLengthValidation = .disabled
        return c
    }

    var streamConfiguration: NIOHTTP2Handler.StreamConfiguration {
        var s = NIOHTTP2Handler.StreamConfiguration()
        s.targetWindowSize = streamWindowBytes
        s.outboundBufferSizeHighWatermark = streamOutboundHighWatermarkBytes
        s.outboundBufferSizeLowWatermark = streamOutboundHighWatermarkBytes / 2
        s.streamResetFrameRateLimit.maximumCount = 10_000
        s.streamResetFrameRateLimit.windowLength = .seconds(1)
        s.streamErrorRateLimit.maximumCount = 10_000
        s.streamErrorRateLimit.windowLength = .seconds(1)
        return s
    }
}

/// A gRPC server over cleartext HTTP/2 (h2c, prior knowledge), on swift-nio-http2.
public final class GRPCServer: Sendable {
    private let channels: [any Channel]
    private let connections: ConnectionRegistry

    /// Call handlers alive in this process, across servers (each open stream has one until it
    /// closes).
    public static var liveCallHandlers: Int { ServerStreamHandler.liveCount.load(ordering: .relaxed) }

    /// The addresses actually bound (a requested port 0 becomes a free port).
    public var localAddresses: [SocketAddress] { channels.compactMap { $0.localAddress } }

    private init(channels: [any Channel], connections: ConnectionRegistry) {
        self.channels = channels
        self.connections = connections
    }

    /// Binds every address and starts serving. Fails (and binds nothing) if any address cannot
    /// be bound. With `http`, HTTP/1.1 requests on the same ports are answered by it (only
    /// them, with `httpOnly`), and by `gateway` where it accepts them. `secure` sets up each accepted connection's TLS handler.
    public static func start(
        addresses: [(host: String, port: Int)],
        routes: GRPCRoutes,
        limits: GRPCConnectionLimits = .init(),
        group: any EventLoopGroup,
        http: HTTPEndpoints? = nil,
        gateway: (any HTTPGateway)? = nil,
        httpOnly: Bool = false,
        secure: (@Sendable (any Channel) throws -> Void)? = nil,
        onConnection: (@Sendable (_ local: SocketAddress?, _ remote: SocketAddress?) -> Void)? = nil
    ) async throws -> GRPCServer {
        let listeners = try await GRPCListeners.bind(addresses: addresses, group: group)
        return start(on: listeners, routes: routes, limits: limits, http: http, gateway: gateway, httpOnly: httpOnly,
                     secure: secure, onConnection: onConnection)
    }

    /// Starts serving on listeners bound earlier: the connections they queued meanwhile are
    /// accepted now. The listeners belong to the server from here on (`shutdown` closes them).
    public static func start(
        on listeners: GRPCListeners,
        routes: GRPCRoutes,
        limits: GRPCConnectionLimits = .init(),
        http: HTTPEndpoints? = nil,
        gateway: (any HTTPGateway)? = nil,
        httpOnly: Bool = false,
        secure: (@Sendable (any Channel) throws -> Void)? = nil,
        onConnection: (@Sendable (_ local: SocketAddress?, _ remote: SocketAddress?) -> Void)? = nil
    ) -> GRPCServer {
        let registry = ConnectionRegistry()
        listeners.serve { channel in
            registry.add(channel)
            onConnection?(channel.localAddress, channel.remoteAddress)
            channel.closeFuture.whenComplete { _ in registry.remove(channel) }
            return channel.eventLoop.makeCompletedFuture {
                // TLS first (`secure`): everything after it sees the decrypted bytes.
                try secure?(channel)
                guard let http else { return try configureConnection(channel, routes: routes, limits: limits) }
                let idle = limits.httpIdleTimeout
                if httpOnly {
                    // Only HTTP/1.1 here: a connection that opens with the HTTP/2 preface
                    // (a gRPC client) is closed at once rather than handed to the HTTP/1.1
                    // parser, which may wait on it.
                    return try channel.pipeline.syncOperations.addHandler(ProtocolSniffer(
                        http1: { try configureHTTP1($0, endpoints: http, gateway: nil, idleTimeout: idle) },
                        http2: { $0.close(promise: nil) }))
                }
                // HTTP/1.1 and gRPC on one port, told apart by the first bytes.
                try channel.pipeline.syncOperations.addHandler(ProtocolSniffer(
                    http1: { try configureHTTP1($0, endpoints: http, gateway: gateway, idleTimeout: idle) },
                    // Over TLS, plain HTTP requests may come on HTTP/2 too (ALPN h2), as
                    // etcd answers them there; in cleartext only gRPC speaks HTTP/2.
                    http2: { try configureConnection($0, routes: routes, limits: limits,
                                                     httpOverHTTP2: secure == nil ? nil : http,
                                                     gatewayOverHTTP2: secure == nil ? nil : gateway) }))
            }
        }
        return GRPCServer(channels: listeners.channels, connections: registry)
    }

    /// Sets up one accepted connection's pipeline (HTTP/2, the connection's guards and budget,
    /// its calls served by a `ServerConnectionHandler`). Runs on the channel's event loop.
    public static func configureConnection(_ channel: any Channel, routes: GRPCRoutes, limits: GRPCConnectionLimits,
                                           httpOverHTTP2: HTTPEndpoints? = nil,
                                           gatewayOverHTTP2: (any HTTPGateway)? = nil) throws {
        let keepalive = limits.keepalive
        let pingPolicy = limits.pingPolicy
        // Graceful shutdown: on ChannelShouldQuiesceEvent the manager sends GOAWAY and
        // closes the connection once its streams are done. No idle or age limits
        // (etcd's defaults: clients keep connections as long as they like). Server
        // keepalive is the guard's: the manager's would, on a timeout, start a
        // graceful shutdown that waits for the dead client's ping ack forever.
        let coalescer = FlushCoalescingHandler()
        try channel.pipeline.syncOperations.addHandler(coalescer)
        let budget = ConnectionBudget(limitBytes: limits.connectionResponseBudgetBytes, inboundLimitBytes: limits.effectiveRequestBudgetBytes)
        budget.attach(channel)
        let boundBudget = NIOLoopBound(budget, eventLoop: channel.eventLoop)
        channel.closeFuture.whenComplete { _ in boundBudget.value.detach() }
        let peer = routes.peerIdentity.map { resolve in ConnectionPeer { resolve(channel) } }
        let manager = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(maxIdleTime: nil, maxAge: nil, maxGraceTime: nil, keepalive: nil))
        try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(
            mode: .server, connectionConfiguration: limits.connectionConfiguration, streamConfiguration: limits.streamConfiguration))
        let loop = channel.eventLoop
        let allocator = channel.allocator
        try channel.pipeline.syncOperations.addHandler(ServerConnectionHandler(limits: limits) { id, connection in
            ServerStreamHandler(streamID: id, connection: connection, eventLoop: loop, allocator: allocator, routes: routes, limits: limits,
                                http: httpOverHTTP2, gateway: gatewayOverHTTP2, flushCoalescer: coalescer, budget: budget, peer: peer)
        })
        try channel.pipeline.syncOperations.addHandler(ConnectionGuardHandler(policy: pingPolicy, keepalive: keepalive, activity: coalescer))
        try channel.pipeline.syncOperations.addHandler(manager)
    }

    /// Stops accepting, sends GOAWAY on every connection so in-flight calls can finish, and
    /// closes whatever is still open after `grace`.
    public func shutdown(grace: TimeAmount = .seconds(5)) async {
        for channel in channels { try? await channel.close() }
        let open = connections.all()
        for connection in open {
            connection.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        let deadline = NIODeadline.now() + grace
        for connection in open {
            let remaining = deadline - .now()
            if remaining > .zero {
                let timeout = connection.eventLoop.scheduleTask(in: remaining) { connection.close(promise: nil) }
                try? await connection.closeFuture.get()
                timeout.cancel()
            } else {
                try? await connection.close()
            }
        }
    }
}

/// Listening sockets bound before their server can serve, as etcd binds its client listeners
/// before it loads its data. The kernel completes connections (up to the backlog) and they
/// wait, unanswered, until `GRPCServer.start(on:)` accepts them: a client that connects while
/// the server opens its data is served as soon as it is ready, where a refused one would wait
/// out its reconnect backoff (gRPC's grows from 1 s).
public final class GRPCListeners: Sendable {
    let channels: [any Channel]
    private let initializer: NIOLockedValueBox<(@Sendable (any Channel) -> EventLoopFuture<Void>)?>

    /// The addresses actually bound (a requested port 0 becomes a free port).
    public var localAddresses: [SocketAddress] { channels.compactMap { $0.localAddress } }

    private init(channels: [any Channel], initializer: NIOLockedValueBox<(@Sendable (any Channel) -> EventLoopFuture<Void>)?>) {
        self.channels = channels
        self.initializer = initializer
    }

    /// Binds every address, accepting nothing yet. Fails (and binds nothing) if any address
    /// cannot be bound.
    public static func bind(addresses: [(host: String, port: Int)], group: any EventLoopGroup) async throws -> GRPCListeners {
        let box = NIOLockedValueBox<(@Sendable (any Channel) -> EventLoopFuture<Void>)?>(nil)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // No accept until `serve` turns reading on.
            .serverChannelOption(.autoRead, value: false)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            // The kernel's keepalive finds peers that vanished without a FIN or RST.
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .childChannelInitializer { channel in
                guard let initialize = box.withLockedValue({ $0 }) else {
                    return channel.close()   // not reached: nothing is accepted before `serve`
                }
                return initialize(channel)
            }
        var bound: [any Channel] = []
        do {
            for address in addresses {
                bound.append(try await bootstrap.bind(host: address.host, port: address.port).get())
            }
        } catch {
            for channel in bound { try? await channel.close() }
            throw error
        }
        return GRPCListeners(channels: bound, initializer: box)
    }

    /// Sets up each accepted connection with `initialize`, and starts accepting.
    func serve(_ initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>) {
        initializer.withLockedValue { $0 = initialize }
        for channel in channels { channel.setOption(.autoRead, value: true).whenFailure { _ in channel.close(promise: nil) } }
    }

    /// Closes listeners that will not be served (their queued connections are reset).
    public func close() async {
        for channel in channels { try? await channel.close() }
    }
}

/// Open client connections, for graceful shutdown.
final class ConnectionRegistry: Sendable {
    private let channels = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    func add(_ channel: any Channel) {
        channels.withLockedValue { $0[ObjectIdentifier(channel)] = channel }
    }

    func remove(_ channel: any Channel) {
        _ = channels.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    func all() -> [any Channel] {
        channels.withLockedValue { Array($0.values) }
    }
}

/// A streaming call refused before it started: it ends with its status when the first message
/// or the end of the client's side arrives.
final class RefusedStreamingCall: GRPCStreamingCall {
    let sender: GRPCStreamSender
    let status: GRPCStatus

    init(sender: GRPCStreamSender, status: GRPCStatus) {
        self.sender = sender
        self.status = status
    }

    func received(_ message: [UInt8]) { sender.finish(status) }
    func receivedEnd() { sender.finish(status) }
    func writabilityChanged(_ isWritable: Bool) {}
    func closed() {}
}
