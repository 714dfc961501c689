import Dispatch
import NIOCore
import NIOHTTP1

/// An HTTP/1.1 request as the endpoint handler sees it (the body is not kept).
public struct HTTPRequestLine: Sendable {
    public var method: String
    /// The request target as sent: path and query (`/health?exclude=NOSPACE`).
    public var uri: String

    public init(method: String, uri: String) {
        self.method = method
        self.uri = uri
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
    private var head: HTTPRequestHead?
    /// Requests received whole, not yet answered (at most what one read held).
    private var waiting: [HTTPRequestHead] = []
    private var serving = false
    private var readHeld = false
    private var closing = false

    init(endpoints: @escaping HTTPEndpoints) {
        self.endpoints = endpoints
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
        case .body:
            break
        case .end:
            guard let h = head else { return }
            head = nil
            waiting.append(h)
            serveNext(context: context)
        }
    }

    /// Holds the socket's reads while requests are being served or wait.
    func read(context: ChannelHandlerContext) {
        if serving || !waiting.isEmpty {
            readHeld = true
        } else {
            context.read()
        }
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
        let h = waiting.removeFirst()
        let request = HTTPRequestLine(method: h.method.rawValue, uri: h.uri)
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

    private func respond(_ reply: HTTPReply, to request: HTTPRequestHead, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
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
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        written.futureResult.whenComplete { result in
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
    static func configureHTTP1(_ channel: any Channel, endpoints: @escaping HTTPEndpoints, idleTimeout: TimeAmount) throws {
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(IdleStateHandler(allTimeout: idleTimeout))
        try sync.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
        try sync.addHandler(HTTPEndpointHandler(endpoints: endpoints))
    }
}
