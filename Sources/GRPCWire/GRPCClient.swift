import NIOCore
import NIOHPACK
import NIOHTTP2
import Synchronization
import NIOPosix

/// A gRPC client connection (h2c, prior knowledge). Calls are multiplexed as HTTP/2 streams on
/// one TCP connection. Used by tests, `lattice bench` and peer replication.
public final class GRPCClient: Sendable {
    private let channel: any Channel
    private let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    private let authority: String
    private let limits: GRPCConnectionLimits

    private init(channel: any Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer, authority: String, limits: GRPCConnectionLimits) {
        self.channel = channel
        self.multiplexer = multiplexer
        self.authority = authority
        self.limits = limits
    }

    public var eventLoop: any EventLoop { channel.eventLoop }

    public static func connect(
        host: String, port: Int, group: any EventLoopGroup, limits: GRPCConnectionLimits = .init(),
        localAddress: SocketAddress? = nil, connectTimeout: TimeAmount = .seconds(10),
        secure: (@Sendable (any Channel) throws -> Void)? = nil
    ) async throws -> GRPCClient {
        let connection = limits.connectionConfiguration
        let stream = limits.streamConfiguration
        var bootstrap = ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(connectTimeout)
        if let localAddress { bootstrap = bootstrap.bind(to: localAddress) }
        let (channel, multiplexer) = try await bootstrap
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try secure?(channel)
                    try channel.pipeline.syncOperations.addHandler(FlushCoalescingHandler(deferred: true))
                    let mux = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client,
                        connectionConfiguration: connection,
                        streamConfiguration: stream,
                        inboundStreamInitializer: { $0.eventLoop.makeSucceededVoidFuture() })
                    return (channel, mux)
                }
            }
        return GRPCClient(channel: channel, multiplexer: multiplexer, authority: "\(host):\(port)", limits: limits)
    }

    public func close() async {
        try? await channel.close()
    }

    /// One unary call. Fails with `GRPCStatus` for a non-OK status.
    public func unary(
        path: String, request: [UInt8], timeout: TimeAmount? = nil,
        metadata: [(String, String)] = [], gzip: Bool = false
    ) -> EventLoopFuture<[UInt8]> {
        let loop = channel.eventLoop
        let result = loop.makePromise(of: [UInt8].self)
        // The call ends once: with its answer, when its stream cannot be opened (the connection
        // closed first), or — with a timeout — at the deadline, as grpc-go's clients end it
        // themselves rather than wait on a server that never answers.
        let ended = Atomic<Bool>(false)
        let end: @Sendable (Result<[UInt8], any Error>) -> Void = { outcome in
            if !ended.exchange(true, ordering: .acquiringAndReleasing) { result.completeWith(outcome) }
        }
        let promise = loop.makePromise(of: [UInt8].self)
        promise.futureResult.whenComplete(end)
        if let timeout {
            let deadline = loop.scheduleTask(in: timeout + .milliseconds(100)) {
                end(.failure(GRPCStatus(.deadlineExceeded, "context deadline exceeded")))
            }
            result.futureResult.whenComplete { _ in deadline.cancel() }
        }
        let headers = requestHeaders(path: path, timeout: timeout, metadata: metadata, gzip: gzip)
        let maxReceive = limits.maxReceiveMessageBytes
        let opened = loop.makePromise(of: (any Channel).self)
        opened.futureResult.whenFailure { promise.fail($0) }
        multiplexer.createStreamChannel(promise: opened) { stream in
            stream.eventLoop.makeCompletedFuture {
                let handler = ClientStreamHandler(maxReceiveMessageBytes: maxReceive, events: .unary(promise))
                try stream.pipeline.syncOperations.addHandler(handler)
                handler.start(headers: headers)
                handler.send(request, gzip: gzip, endStream: true)
            }.flatMapErrorThrowing { error in
                promise.fail(error)
                throw error
            }
        }
        return result.futureResult
    }

    public func unary(
        path: String, request: [UInt8], timeout: TimeAmount? = nil,
        metadata: [(String, String)] = [], gzip: Bool = false
    ) async throws -> [UInt8] {
        try await unary(path: path, request: request, timeout: timeout, metadata: metadata, gzip: gzip).get()
    }

    /// Opens a streaming call (client-, server- or bidirectional-streaming).
    public func openStream(
        path: String, metadata: [(String, String)] = [], bufferedResponsesMax: Int = 100_000
    ) async throws -> GRPCClientStream {
        let (responses, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream(
            bufferingPolicy: .bufferingOldest(bufferedResponsesMax))
        return try await openStream(path: path, metadata: metadata, responses: responses, events: .streaming(continuation))
    }

    /// Opens a streaming call whose response messages are handed to `onMessage` on the
    /// connection's event loop as they are decoded, in order, with no buffer in between: a slow
    /// `onMessage` holds the event loop and so, through HTTP/2 flow control, the server. The
    /// returned stream's `responses` yields nothing; it finishes at OK trailers and throws the
    /// call's `GRPCStatus` otherwise.
    public func openStream(
        path: String, metadata: [(String, String)] = [],
        onMessage: @escaping @Sendable ([UInt8]) -> Void
    ) async throws -> GRPCClientStream {
        let (responses, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
        return try await openStream(path: path, metadata: metadata, responses: responses,
                                    events: .callback(onMessage, continuation))
    }

    private func openStream(
        path: String, metadata: [(String, String)],
        responses: AsyncThrowingStream<[UInt8], any Error>, events: ClientStreamHandler.Events
    ) async throws -> GRPCClientStream {
        let headers = requestHeaders(path: path, timeout: nil, metadata: metadata, gzip: false)
        let maxReceive = limits.maxReceiveMessageBytes
        let stream = try await multiplexer.createStreamChannel { stream in
            stream.eventLoop.makeCompletedFuture {
                let handler = ClientStreamHandler(maxReceiveMessageBytes: maxReceive, events: events)
                try stream.pipeline.syncOperations.addHandler(handler)
                handler.start(headers: headers)
            }
        }.get()
        return GRPCClientStream(channel: stream, responses: responses)
    }

    private func requestHeaders(path: String, timeout: TimeAmount?, metadata: [(String, String)], gzip: Bool) -> HPACKHeaders {
        var h: HPACKHeaders = [
            ":method": "POST", ":scheme": "http", ":path": path, ":authority": authority,
            "content-type": "application/grpc", "te": "trailers",
        ]
        if let timeout { h.add(name: "grpc-timeout", value: GRPCTimeout.encode(nanoseconds: timeout.nanoseconds)) }
        if gzip { h.add(name: "grpc-encoding", value: "gzip") }
        h.add(name: "grpc-accept-encoding", value: "gzip")
        for (name, value) in metadata { h.add(name: name, value: value) }
        return h
    }
}

/// The client side of a streaming call.
public struct GRPCClientStream: Sendable {
    let channel: any Channel
    /// Response messages; finishes at OK trailers, throws `GRPCStatus` otherwise.
    public let responses: AsyncThrowingStream<[UInt8], any Error>

    public func send(_ message: [UInt8]) {
        let framed = MessageFramer.frame(message, gzip: false, allocator: channel.allocator)
        channel.writeAndFlush(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(framed))), promise: nil)
    }

    /// Half-closes the client side.
    public func closeSend() {
        let empty = channel.allocator.buffer(capacity: 0)
        channel.writeAndFlush(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(empty), endStream: true)), promise: nil)
    }

    /// Stops reading responses from the connection: HTTP/2 flow control then stops the server
    /// (a slow client, for tests of backpressure).
    public func pauseReading() {
        channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
    }

    public func resumeReading() {
        channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        channel.read()
    }

    /// Resets the stream (the client cancels the call).
    public func cancel() {
        channel.close(promise: nil)
    }
}

final class ClientStreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    enum Events {
        case unary(EventLoopPromise<[UInt8]>)
        case streaming(AsyncThrowingStream<[UInt8], any Error>.Continuation)
        /// Messages go to the callback; the continuation only carries the call's end.
        case callback(@Sendable ([UInt8]) -> Void, AsyncThrowingStream<[UInt8], any Error>.Continuation)
    }

    private let events: Events
    private var deframer: MessageDeframer
    private let maxReceiveMessageBytes: Int
    private var sawResponseHeaders = false
    private var unaryResponse: [UInt8]?
    private var finished = false
    private var context: ChannelHandlerContext!

    /// Handlers alive in this process (one per open or not yet released call).
    static let liveCount = Atomic<Int>(0)

    init(maxReceiveMessageBytes: Int, events: Events) {
        self.maxReceiveMessageBytes = maxReceiveMessageBytes
        self.events = events
        self.deframer = MessageDeframer(maxMessageBytes: maxReceiveMessageBytes, gzip: false)
        Self.liveCount.add(1, ordering: .relaxed)
    }

    deinit {
        Self.liveCount.subtract(1, ordering: .relaxed)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    /// Releases the context (it holds this handler: a cycle) once the stream channel is gone.
    func handlerRemoved(context: ChannelHandlerContext) {
        finish(with: GRPCStatus(.unavailable, "stream closed before the call completed"))
        self.context = nil
    }

    func start(headers: HPACKHeaders) {
        guard let context else { return }
        context.write(wrapOutboundOut(.headers(.init(headers: headers))), promise: nil)
    }

    func send(_ message: [UInt8], gzip: Bool, endStream: Bool) {
        guard let context else { return }
        let framed = MessageFramer.frame(message, gzip: gzip, allocator: context.channel.allocator)
        context.writeAndFlush(wrapOutboundOut(.data(.init(data: .byteBuffer(framed), endStream: endStream))), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let frame):
            if !sawResponseHeaders && !frame.endStream {
                sawResponseHeaders = true
                if frame.headers.first(name: "grpc-encoding") == "gzip" {
                    deframer = MessageDeframer(maxMessageBytes: maxReceiveMessageBytes, gzip: true)
                }
                return
            }
            finish(with: Self.status(from: frame.headers))
        case .data(let frame):
            guard case .byteBuffer(let bytes) = frame.data else { return }
            deframer.append(bytes)
            do {
                while let message = try deframer.next() {
                    switch events {
                    case .unary: unaryResponse = message
                    case .streaming(let c): c.yield(message)
                    case .callback(let onMessage, _): onMessage(message)
                    }
                }
            } catch {
                finish(with: GRPCStatus(.resourceExhausted, "grpc: received message larger than max"))
                context.close(promise: nil)
            }
        case .rstStream(let code):
            finish(with: GRPCStatus(.cancelled, "stream reset by server: \(code)"))
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(with: GRPCStatus(.unavailable, "connection closed before the call completed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(with: GRPCStatus(.unavailable, "\(error)"))
        context.close(promise: nil)
    }

    private func finish(with status: GRPCStatus) {
        guard !finished else { return }
        finished = true
        switch events {
        case .unary(let promise):
            if status.code == .ok {
                if let unaryResponse { promise.succeed(unaryResponse) } else {
                    promise.fail(GRPCStatus(.internal, "server sent no response message"))
                }
            } else {
                promise.fail(status)
            }
        case .streaming(let c), .callback(_, let c):
            if status.code == .ok { c.finish() } else { c.finish(throwing: status) }
        }
    }

    static func status(from headers: HPACKHeaders) -> GRPCStatus {
        guard let raw = headers.first(name: "grpc-status"), let value = Int(raw), let code = GRPCStatus.Code(rawValue: value) else {
            return GRPCStatus(.unknown, "missing grpc-status")
        }
        return GRPCStatus(code, GRPCMessageEncoding.decode(headers.first(name: "grpc-message") ?? ""))
    }
}
