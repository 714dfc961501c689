import Dispatch
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// An HTTP/1.1 request as the endpoint handler sees it (the body is not kept).
public struct HTTPRequestLine: Sendable {
    public var method: String
    /// The request target as sent: path and query (`/health?exclude=NOSPACE`).
    public var uri: String
    /// The `Authorization` header (the JSON gateway passes it on as the call's auth token).
    public var authorization: String?
    /// The connection's peer, as the gateway's `peerIdentity` names it (the common name of a
    /// verified client certificate); nil when it names none.
    public var peerIdentity: String?

    public init(method: String, uri: String, authorization: String? = nil, peerIdentity: String? = nil) {
        self.method = method
        self.uri = uri
        self.authorization = authorization
        self.peerIdentity = peerIdentity
    }

    /// The path without the query.
    public var path: Substring { uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "" }

    /// The values of query parameter `name` (`?exclude=NOSPACE&exclude=CORRUPT`), unescaped.
    public func query(_ name: String) -> [String] {
        guard let q = uri.firstIndex(of: "?") else { return [] }
        return uri[uri.index(after: q)...].split(separator: "&").compactMap { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.first.map(String.init) == name else { return nil }
            return parts.count > 1 ? Self.unescape(parts[1]) : ""
        }
    }

    private static func unescape(_ s: Substring) -> String {
        var out: [UInt8] = []
        var bytes = Array(s.utf8)[...]
        while let b = bytes.popFirst() {
            if b == UInt8(ascii: "%"), bytes.count >= 2,
               let v = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) {
                out.append(v)
                bytes = bytes.dropFirst(2)
            } else {
                out.append(b == UInt8(ascii: "+") ? UInt8(ascii: " ") : b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// What an HTTP endpoint answers.
public struct HTTPReply: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, contentType: String, body: [UInt8], headers: [(String, String)] = []) {
        self.status = status
        self.headers = [("Content-Type", contentType)] + headers
        self.body = body
    }

    public init(status: Int, contentType: String, text: String, headers: [(String, String)] = []) {
        self.init(status: status, contentType: contentType, body: Array(text.utf8), headers: headers)
    }
}

/// Answers HTTP/1.1 requests. Runs on a worker thread, never on an event loop, so it may take
/// locks and read the store.
public typealias HTTPEndpoints = @Sendable (HTTPRequestLine) -> HTTPReply

/// Requests answered over time rather than by `HTTPEndpoints` (etcd's JSON gateway: calls that
/// wait for the store, and streams). Their bodies are collected, up to `maxBodyBytes`.
public protocol HTTPGateway: Sendable {
    /// Whether this request is the gateway's.
    func accepts(_ request: HTTPRequestLine) -> Bool
    var maxBodyBytes: Int { get }
    /// Serves a request, on the connection's event loop; answers through `exchange`. A body
    /// larger than `maxBodyBytes` arrives as nil.
    func serve(_ request: HTTPRequestLine, body: [UInt8]?, exchange: HTTPExchange)
    /// Who the peer of a connection is (on its event loop), for `HTTPRequestLine.peerIdentity`.
    var peerIdentity: (@Sendable (any Channel) -> String?)? { get }
}

extension HTTPGateway {
    public var peerIdentity: (@Sendable (any Channel) -> String?)? { nil }
}

/// Answers one gateway request: a whole reply, or a stream of body chunks. Every method may be
/// called from any thread (it hops to the connection's loop); the callbacks run on the loop.
public final class HTTPExchange: Sendable {
    public let eventLoop: any EventLoop
    private let sink: NIOLoopBound<any HTTPExchangeSink>
    /// Called on the loop when the connection can take more after it could not.
    public let onWritable = NIOLockedValueBox<(@Sendable () -> Void)?>(nil)
    /// Called on the loop once when the client goes away before the exchange finished.
    public let onClose = NIOLockedValueBox<(@Sendable () -> Void)?>(nil)

    init(sink: any HTTPExchangeSink, eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        self.sink = NIOLoopBound(sink, eventLoop: eventLoop)
    }

    private func onLoop(_ body: @escaping @Sendable (any HTTPExchangeSink) -> Void) {
        if eventLoop.inEventLoop {
            body(sink.value)
        } else {
            let sink = self.sink
            eventLoop.execute { body(sink.value) }
        }
    }

    /// The whole answer; ends the exchange.
    public func reply(_ reply: HTTPReply) {
        onLoop { $0.exchangeReply(reply) }
    }

    /// Starts a streamed answer.
    public func startStream(status: Int, headers: [(String, String)]) {
        onLoop { $0.exchangeStart(status: status, headers: headers) }
    }

    public func send(_ chunk: [UInt8]) {
        onLoop { $0.exchangeSend(chunk) }
    }

    /// Ends a streamed answer.
    public func finish() {
        onLoop { $0.exchangeFinish() }
    }

    /// Whether the connection takes more without buffering (on the loop).
    public var isWritable: Bool {
        eventLoop.preconditionInEventLoop()
        return sink.value.exchangeIsWritable
    }

    /// The client went away (on the loop): tells `onClose`, once.
    func closed() {
        if let callback = onClose.withLockedValue({ let c = $0; $0 = nil; return c }) { callback() }
    }

    /// The connection can take more again (on the loop).
    func writable() {
        if let callback = onWritable.withLockedValue({ $0 }) { callback() }
    }
}

/// Where an exchange's answer goes: an HTTP/1.1 connection or an HTTP/2 stream. On its loop.
protocol HTTPExchangeSink: AnyObject {
    func exchangeReply(_ reply: HTTPReply)
    func exchangeStart(status: Int, headers: [(String, String)])
    func exchangeSend(_ chunk: [UInt8])
    func exchangeFinish()
    var exchangeIsWritable: Bool { get }
}

/// An exchange's answer on an HTTP/1.1 connection (the request's version and keep-alive).
private final class HTTP1ExchangeSink: HTTPExchangeSink {
    let handler: HTTPEndpointHandler
    let context: ChannelHandlerContext
    let request: HTTPRequestHead

    init(handler: HTTPEndpointHandler, context: ChannelHandlerContext, request: HTTPRequestHead) {
        self.handler = handler
        self.context = context
        self.request = request
    }

    func exchangeReply(_ reply: HTTPReply) { handler.respond(reply, to: request, context: context) }
    func exchangeStart(status: Int, headers: [(String, String)]) {
        handler.startStream(status: status, headers: headers, to: request, context: context)
    }
    func exchangeSend(_ chunk: [UInt8]) { handler.sendChunk(chunk, context: context) }
    func exchangeFinish() { handler.finishStream(context: context) }
    var exchangeIsWritable: Bool { context.channel.isWritable }
}

/// Decides, from a connection's first bytes, whether the client speaks HTTP/2 (gRPC: the
/// connection preface starts with "PRI ") or HTTP/1.1 (a request line starts with a method in
/// capitals), as etcd serves both on its client port. The chosen pipeline is set up behind this
/// handler, which then hands over what it read and leaves. Anything else goes to HTTP/2, which
/// refuses it as before.
final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var buffered: ByteBuffer?
    private let http1: (any Channel) throws -> Void
    private let http2: (any Channel) throws -> Void
    private static let preface = Array("PRI ".utf8)

    init(http1: @escaping (any Channel) throws -> Void, http2: @escaping (any Channel) throws -> Void) {
        self.http1 = http1
        self.http2 = http2
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffered == nil { buffered = incoming } else { buffered!.writeBuffer(&incoming) }
        let head = buffered!.readableBytesView.prefix(Self.preface.count)
        let isHTTP2: Bool
        if head.elementsEqual(Self.preface.prefix(head.count)) {
            // At most four bytes decide it: wait for them.
            guard head.count == Self.preface.count else { return }
            isHTTP2 = true
        } else {
            isHTTP2 = !(UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(head.first!)
        }
        do {
            if isHTTP2 { try http2(context.channel) } else { try http1(context.channel) }
        } catch {
            context.close(promise: nil)
            return
        }
        let bytes = buffered!
        buffered = nil
        context.fireChannelRead(wrapInboundOut(bytes))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

/// Serves HTTP/1.1 requests with `HTTPEndpoints`, one at a time per connection: the next
/// request is served only once the previous reply has been written to the socket, and the
/// connection is not read while requests wait, so a client that pipelines requests without
/// reading the replies holds at most one reply and one read's worth of requests. Bodies are
/// discarded as they arrive; keep-alive as the client asks. A connection idle for
/// `idleTimeout` is closed.
final class HTTPEndpointHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoints: HTTPEndpoints
    private let gateway: (any HTTPGateway)?
    private var head: HTTPRequestHead?
    /// The body of a gateway request being received (nil once it is over the limit).
    private var body: [UInt8]?
    private var collecting = false
    /// Requests received whole, not yet answered (at most what one read held).
    private var waiting: [(head: HTTPRequestHead, gateway: Bool, body: [UInt8]?)] = []
    private var serving = false
    /// The gateway exchange being answered as a stream, if any.
    private var streaming: HTTPExchange?
    private var exchange: HTTPExchange?
    private var readHeld = false
    private var closing = false

    init(endpoints: @escaping HTTPEndpoints, gateway: (any HTTPGateway)? = nil) {
        self.endpoints = endpoints
        self.gateway = gateway
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            // An HTTP/2 connection preface ("PRI * HTTP/2.0") where only HTTP/1.1 is served:
            // nothing here can answer it, and the rest of the preface may never be parsed (the
            // client waits for SETTINGS), so close at once rather than leave it waiting.
            if h.method.rawValue == "PRI" {
                closing = true
                context.close(promise: nil)
                return
            }
            head = h
            collecting = gateway?.accepts(HTTPRequestLine(method: h.method.rawValue, uri: h.uri)) ?? false
            body = collecting ? [] : nil
        case .body(let part):
            guard collecting, body != nil else { break }
            if body!.count + part.readableBytes > gateway!.maxBodyBytes {
                body = nil
            } else {
                body! += part.readableBytesView
            }
        case .end:
            guard let h = head else { return }
            head = nil
            waiting.append((h, collecting, body))
            collecting = false
            body = nil
            serveNext(context: context)
        }
    }

    /// Holds the socket's reads while requests are being served or wait (a stream being
    /// answered still reads, so that a client going away is noticed).
    func read(context: ChannelHandlerContext) {
        if (serving && streaming == nil) || !waiting.isEmpty {
            readHeld = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { exchange?.writable() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        exchange?.closed()
        exchange = nil
        streaming = nil
        context.fireChannelInactive()
    }

    private func serveNext(context: ChannelHandlerContext) {
        guard !serving, !closing, !waiting.isEmpty else {
            if !serving, waiting.isEmpty, readHeld, !closing {
                readHeld = false
                context.read()
            }
            return
        }
        serving = true
        let (h, isGateway, body) = waiting.removeFirst()
        let request = HTTPRequestLine(method: h.method.rawValue, uri: h.uri, authorization: h.headers.first(name: "authorization"),
                                      peerIdentity: isGateway ? gateway?.peerIdentity?(context.channel) : nil)
        if isGateway, let gateway {
            let exchange = HTTPExchange(sink: HTTP1ExchangeSink(handler: self, context: context, request: h),
                                        eventLoop: context.eventLoop)
            self.exchange = exchange
            gateway.serve(request, body: body, exchange: exchange)
            return
        }
        let endpoints = self.endpoints
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        DispatchQueue.global().async {
            let reply = endpoints(request)
            loop.execute {
                let (handler, context) = bound.value
                handler.respond(reply, to: h, context: context)
            }
        }
    }

    func startStream(status: Int, headers extra: [(String, String)], to request: HTTPRequestHead, context: ChannelHandlerContext) {
        guard context.channel.isActive, serving, streaming == nil, let exchange else { return }
        streaming = exchange
        var headers = HTTPHeaders(extra)
        headers.add(name: "Transfer-Encoding", value: "chunked")
        let head = HTTPResponseHead(version: request.version, status: HTTPResponseStatus(statusCode: status), headers: headers)
        context.writeAndFlush(wrapOutboundOut(.head(head)), promise: nil)
        // Reads resume, so that a client that goes away is noticed.
        if readHeld, waiting.isEmpty {
            readHeld = false
            context.read()
        }
    }

    func sendChunk(_ chunk: [UInt8], context: ChannelHandlerContext) {
        guard context.channel.isActive, streaming != nil, !chunk.isEmpty else { return }
        var buffer = context.channel.allocator.buffer(capacity: chunk.count)
        buffer.writeBytes(chunk)
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
    }

    func finishStream(context: ChannelHandlerContext) {
        guard context.channel.isActive, streaming != nil else { return }
        streaming = nil
        exchange = nil
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        finished(written.futureResult, context: context)
    }

    func respond(_ reply: HTTPReply, to request: HTTPRequestHead, context: ChannelHandlerContext) {
        guard context.channel.isActive, serving, streaming == nil else { return }
        exchange = nil
        var headers = HTTPHeaders(reply.headers)
        headers.add(name: "Content-Length", value: String(reply.body.count))
        let keepAlive = request.isKeepAlive
        if !keepAlive {
            headers.add(name: "Connection", value: "close")
            closing = true
            waiting = []
        }
        let head = HTTPResponseHead(version: request.version, status: HTTPResponseStatus(statusCode: reply.status),
                                    headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD {
            var body = context.channel.allocator.buffer(capacity: reply.body.count)
            body.writeBytes(reply.body)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        finished(written.futureResult, context: context)
    }

    /// After a reply's last byte was written: the next request, or the close.
    private func finished(_ written: EventLoopFuture<Void>, context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        written.whenComplete { result in
            let (handler, context) = bound.value
            handler.serving = false
            if case .failure = result { handler.closing = true }
            if handler.closing {
                context.close(promise: nil)
            } else {
                handler.serveNext(context: context)
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            // A stream being answered is not idle however long it waits for its next message.
            if streaming != nil { return }
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

extension GRPCServer {
    /// Sets up an HTTP/1.1 connection served by `endpoints`.
    static func configureHTTP1(_ channel: any Channel, endpoints: @escaping HTTPEndpoints, gateway: (any HTTPGateway)?,
                               idleTimeout: TimeAmount) throws {
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(IdleStateHandler(allTimeout: idleTimeout))
        try sync.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
        try sync.addHandler(HTTPEndpointHandler(endpoints: endpoints, gateway: gateway))
    }
}
