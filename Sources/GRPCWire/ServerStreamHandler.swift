import Dispatch
import NIOCore
import NIOHPACK
import NIOHTTP2
import Synchronization

/// Serves one gRPC call on one HTTP/2 stream. Confined to the connection's event loop.
///
/// The connection's `ServerConnectionHandler` hands it the stream's frames and writes what it
/// sends with the stream's id: there is no channel per stream. The connection's table holds
/// the handler while its stream is open, and a streaming call holds a sender that holds the
/// handler: the connection drops it and calls `closed()`, which lets go of the call, when the
/// stream closes (or the connection does), so nothing of a finished call outlives its stream.
final class ServerStreamHandler: GRPCStreamSink {
    /// Handlers alive in this process (one per open or not yet released stream).
    static let liveCount = Atomic<Int>(0)

    private enum State {
        case awaitingHeaders
        case unary(received: [UInt8]?)
        case unaryRunning
        case streaming(any GRPCStreamingCall)
        /// A gateway request whose body is arriving (nil once over the limit).
        case gatewayBody(HTTPRequestLine, [UInt8]?)
        /// A gateway request being answered.
        case gateway(HTTPExchange)
        case done
    }

    private let routes: GRPCRoutes
    private let maxReceiveMessageBytes: Int
    private var state = State.awaitingHeaders
    /// The connection the stream is on. The connection holds the stream until it closes.
    private let connection: ServerConnectionHandler
    /// False once the stream is closed: nothing more is written on it.
    private var isOpen = true
    let streamID: HTTP2StreamID
    private let eventLoop: any EventLoop
    private let allocator: ByteBufferAllocator
    /// What the client may still send on this stream (kept by the connection).
    var inboundWindow: ReceiveWindow
    private var deframer: MessageDeframer!
    private var responseHeadersSent = false
    private var gzipResponses = false
    private var deadlineTask: Scheduled<Void>?
    /// The client half-closed (END_STREAM seen).
    private var inputEnded = false
    /// Set when the call is abandoned (reset, connection closed, deadline).
    private let cancellation = GRPCCancellation()
    /// Request bytes this call holds in its deframer, charged to the connection's budget.
    private var inboundHeld = 0

    /// The connection's flush coalescer (for batched completions), if it has one.
    let flushCoalescer: FlushCoalescingHandler?

    /// The connection's response budget, if it has one.
    let budget: ConnectionBudget?

    /// Who the connection's peer is, when the routes ask (`GRPCRoutes.peerIdentity`).
    let peer: ConnectionPeer?

    /// Largest response message (grpc-go's server default, which etcd keeps: 2³¹−1 bytes);
    /// larger ones end the call with RESOURCE_EXHAUSTED, as grpc-go answers.
    let maxSendMessageBytes: Int

    /// Answers requests that are not gRPC (a content-type other than application/grpc), when
    /// the connection serves HTTP endpoints over HTTP/2; nil: such streams are reset.
    private let http: HTTPEndpoints?
    /// Answers the JSON gateway's requests over HTTP/2 (with `http`).
    private let gateway: (any HTTPGateway)?

    /// Response bytes written on this stream that have not left for the socket yet (held by
    /// HTTP/2 flow control or the socket); above `outboundHighWatermark` the stream reports not
    /// writable until they fall to half of it.
    private var outboundPending = 0
    private let outboundHighWatermark: Int
    /// Set when the stream reported not writable because of `outboundPending`.
    private var outboundBlocked = false

    init(streamID: HTTP2StreamID, connection: ServerConnectionHandler, eventLoop: any EventLoop, allocator: ByteBufferAllocator,
         routes: GRPCRoutes, limits: GRPCConnectionLimits, http: HTTPEndpoints? = nil, gateway: (any HTTPGateway)? = nil,
         flushCoalescer: FlushCoalescingHandler? = nil, budget: ConnectionBudget? = nil, peer: ConnectionPeer? = nil) {
        self.streamID = streamID
        self.connection = connection
        self.eventLoop = eventLoop
        self.allocator = allocator
        self.inboundWindow = ReceiveWindow(target: limits.streamWindowBytes)
        self.outboundHighWatermark = limits.streamOutboundHighWatermarkBytes
        let maxSendMessageBytes = limits.maxSendMessageBytes
        let maxReceiveMessageBytes = limits.maxReceiveMessageBytes
        self.maxSendMessageBytes = maxSendMessageBytes
        self.peer = peer
        self.http = http
        self.gateway = gateway
        self.routes = routes
        self.maxReceiveMessageBytes = maxReceiveMessageBytes
        self.flushCoalescer = flushCoalescer
        self.budget = budget
        Self.liveCount.add(1, ordering: .relaxed)
    }

    deinit {
        Self.liveCount.subtract(1, ordering: .relaxed)
    }

    /// Whether a streaming call may send more now: its stream takes more bytes and the
    /// connection is within its response budget (when it is not, the call hears
    /// `writabilityChanged(true)` once it is).
    var isWritable: Bool {
        guard streamIsWritable else { return false }
        guard let budget, budget.isOver else { return true }
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        budget.notifyWhenUnder(ObjectIdentifier(self)) {
            let handler = bound.value
            guard case .streaming(let call) = handler.state, handler.isWritable else { return }
            call.writabilityChanged(true)
        }
        return false
    }

    /// The connection takes more bytes and this stream's unsent responses are below its mark.
    private var streamIsWritable: Bool {
        guard isOpen, connection.isWritable else { return false }
        if outboundPending >= outboundHighWatermark {
            outboundBlocked = true
            return false
        }
        return true
    }

    /// The stream is over (both sides ended, reset, or the connection closed): the call is told
    /// if it was still running, and everything it held is let go.
    /// Can run from inside one of this handler's own writes (writing a stream's last frame
    /// closes it at once), so it only ends the state: what the caller still reads (the
    /// deframer, the call context) stays valid until the handler is released.
    func closed() {
        budget?.forget(ObjectIdentifier(self))
        terminate()
        isOpen = false
    }

    /// Writes a frame of this stream. Writing its last frame may close the stream at once (the
    /// HTTP/2 handler reports it closed from inside the write); a flush still goes out after.
    private func write(_ payload: HTTP2Frame.FramePayload, promise: EventLoopPromise<Void>? = nil) {
        guard isOpen else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        connection.write(HTTP2Frame(streamID: streamID, payload: payload), promise: promise)
    }

    private func flush() { connection.flush() }

    private func writeAndFlush(_ payload: HTTP2Frame.FramePayload) {
        write(payload)
        flush()
    }

    // MARK: inbound

    /// A frame of this stream from the client.
    func received(_ payload: HTTP2Frame.FramePayload) {
        switch payload {
        case .headers(let headers):
            if headers.endStream { inputEnded = true }
            if case .awaitingHeaders = state {
                received(requestHeaders: headers.headers, endStream: headers.endStream)
            } else if headers.endStream {
                receivedEndOfInput()
            }
        case .data(let frame):
            if frame.endStream { inputEnded = true }
            guard case .byteBuffer(let bytes) = frame.data else { return }
            if case .gatewayBody(let request, var body) = state {
                state = .done  // no copy of the body while it grows
                if body != nil {
                    if body!.count + bytes.readableBytes > gateway!.maxBodyBytes { body = nil } else { body! += bytes.readableBytesView }
                }
                state = .gatewayBody(request, body)
                if frame.endStream { startGateway() }
                return
            }
            receivedData(bytes, endStream: frame.endStream)
        case .rstStream:
            terminate()
        default:
            break
        }
    }

    /// The stream's writability may have changed (the connection's did, or its own unsent
    /// bytes fell below its mark): the call or gateway exchange hears if it is writable.
    func writabilityChanged() {
        if case .streaming(let call) = state {
            call.writabilityChanged(isWritable)
        }
        if case .gateway(let exchange) = state, exchangeIsWritable { exchange.writable() }
    }

    /// `bytes` of this stream's responses left for the socket.
    private func sent(_ bytes: Int) {
        outboundPending -= bytes
        guard outboundBlocked, outboundPending <= outboundHighWatermark / 2 else { return }
        outboundBlocked = false
        writabilityChanged()
    }

    private func received(requestHeaders headers: HPACKHeaders, endStream: Bool) {
        guard RequestHeaderBlock.isWellFormed(headers) else { return reset(.protocolError) }
        // grpc-go (and so etcd) resets a stream whose content-type is not gRPC's, whose method
        // is not POST, or whose grpc-timeout does not parse, with PROTOCOL_ERROR before looking
        // at the path.
        guard let contentType = headers.first(name: "content-type"), Self.isGRPCContentType(contentType) else {
            let request = HTTPRequestLine(method: headers.first(name: ":method") ?? "GET", uri: headers.first(name: ":path") ?? "/",
                                          authorization: headers.first(name: "authorization"), peerIdentity: peer?.identity)
            if http != nil, let gateway, gateway.accepts(request) {
                state = .gatewayBody(request, [])
                if endStream { startGateway() }
                return
            }
            if let http { return serveHTTP(headers, http) }
            return reset(.protocolError)
        }
        guard headers.first(name: ":method") == "POST" else { return reset(.protocolError) }
        let timeoutHeader = headers.first(name: "grpc-timeout")
        let timeout = timeoutHeader.flatMap(GRPCTimeout.parseNanoseconds)
        if timeoutHeader != nil && timeout == nil { return reset(.protocolError) }
        let requestedPath = headers.first(name: ":path") ?? ""
        // grpc-go drops a leading "/" before it reads the service and method: a path without
        // one names the same method.
        let path = requestedPath.hasPrefix("/") || requestedPath.isEmpty ? requestedPath : "/" + requestedPath
        guard let method = routes.handlers[path] else {
            state = .done
            sendTrailersOnly(GRPCMethodPath.unservedStatus(requestedPath, services: routes.services))
            return
        }
        let encoding = headers.first(name: "grpc-encoding")
        if let encoding, encoding != "identity", encoding != "gzip" {
            state = .done
            sendTrailersOnly(GRPCStatus(.unimplemented, "grpc: Decompressor is not installed for grpc-encoding \"\(encoding)\""))
            return
        }
        gzipResponses = encoding == "gzip"
        deframer = MessageDeframer(maxMessageBytes: maxReceiveMessageBytes, gzip: encoding == "gzip")

        var deadline: NIODeadline?
        if let ns = timeout {
            deadline = .now() + .nanoseconds(ns)
            deadlineTask = eventLoop.assumeIsolated().scheduleTask(deadline: deadline!) { [self] in
                deadlineExpired()
            }
        }
        var callContext = GRPCCallContext(path: path, headers: headers, deadline: deadline, eventLoop: eventLoop,
                                          cancellation: cancellation)
        if let budget { callContext.longWork = GRPCLongWork(gate: NIOLoopBound(budget, eventLoop: eventLoop)) }
        callContext.peerIdentity = peer?.identity
        switch method {
        case .unary:
            state = .unary(received: nil)
        case .streaming(let factory):
            let sender = GRPCStreamSender(sink: self, eventLoop: eventLoop)
            state = .streaming(factory(callContext, sender))
        }
        self.callContext = callContext
        self.method = method
        if let observer = routes.observer {
            observedPath = path
            observer.started(path: path)
        }
        if endStream { receivedEndOfInput() }
    }

    private var callContext: GRPCCallContext?
    /// The path of a call the routes' observer was told of, until it hears how the call ended.
    private var observedPath: String?

    private func reportHandled(_ code: GRPCStatus.Code) {
        guard let path = observedPath else { return }
        observedPath = nil
        routes.observer?.handled(path: path, code: code)
    }
    private var method: GRPCMethodHandler?

    private func receivedData(_ bytes: ByteBuffer, endStream: Bool) {
        guard deframer != nil else { return }
        routes.observer?.received(bytes: bytes.readableBytes)
        switch state {
        case .unary, .streaming: break
        default: return
        }
        deframer.append(bytes)
        defer { accountInbound() }
        do {
            while let message = try deframer.next() {
                switch state {
                case .unary(received: nil):
                    // Served as soon as its message is complete, like grpc-go: what follows
                    // (END_STREAM, or extra messages, which grpc-go ignores too) is not awaited.
                    state = .unary(received: message)
                    startUnary(message)
                    return
                case .streaming(let call):
                    call.received(message)
                default:
                    return
                }
            }
        } catch .tooLarge(let received, let limit) {
            fail(GRPCStatus(.resourceExhausted, "grpc: received message larger than max (\(received) vs. \(limit))"))
            return
        } catch {
            fail(GRPCStatus(.internal, "grpc: failed to decompress the received message"))
            return
        }
        if endStream { receivedEndOfInput() }
    }

    /// Charges what the deframer holds to the connection's inbound budget. A call holding an
    /// unfinished message when the connection is over its limit is ended (RESOURCE_EXHAUSTED):
    /// its bytes are released and the client learns why.
    private func accountInbound() {
        guard let budget else { return }
        let held = deframer?.bufferedBytes ?? 0
        let within = budget.holdInbound(held - inboundHeld)
        inboundHeld = held
        guard !within, held > 0 else { return }
        switch state {
        case .unary, .streaming:
            fail(GRPCStatus(.resourceExhausted,
                            "lattice: the connection holds more than \(budget.inboundLimitBytes) bytes of unfinished request messages"))
        default:
            break
        }
    }

    /// The call is over: what its deframer held goes.
    private func releaseInbound() {
        deframer?.discard()
        guard inboundHeld != 0 else { return }
        budget?.holdInbound(-inboundHeld)
        inboundHeld = 0
    }

    private func startUnary(_ message: [UInt8]) {
        state = .unaryRunning
        guard case .unary(let handler)? = method, let callContext else { return }
        let responder = GRPCResponder(handler: NIOLoopBound(self, eventLoop: eventLoop))
        guard let budget else { return handler(message, callContext, responder) }
        // A request waiting for the response budget counts as held until it runs.
        budget.holdInbound(message.count)
        budget.admit { [self] in
            budget.holdInbound(-message.count)
            // It may have been reset or timed out while it waited.
            guard case .unaryRunning = state else { return }
            handler(message, callContext, responder)
        }
    }

    func admitStreaming(_ body: @escaping () -> Void) {
        guard let budget else { return body() }
        budget.admit { [self] in
            guard case .streaming = state else { return }
            body()
        }
    }

    func hold(bytes: Int) -> () -> Void {
        guard let budget, isOpen else { return {} }
        return budget.hold(bytes, on: eventLoop)
    }

    /// Writes a DATA frame of gRPC messages.
    private func writeData(_ buffer: ByteBuffer) {
        flushCoalescer?.wroteSinceLastPing = true
        routes.observer?.sent(bytes: buffer.readableBytes)
        writeBody(buffer, endStream: false)
    }

    /// Writes a DATA frame, charged to the connection's budget until it leaves for the socket.
    /// A call that streams (or a gateway reply) also counts it against the stream's own
    /// writability.
    private func writeBody(_ buffer: ByteBuffer, endStream: Bool) {
        let bytes = buffer.readableBytes
        var promise = budget?.charge(bytes, on: eventLoop)
        switch state {
        case .streaming, .gateway:
            if promise == nil { promise = eventLoop.makePromise() }
            outboundPending += bytes
            let bound = NIOLoopBound(self, eventLoop: eventLoop)
            promise!.futureResult.whenComplete { _ in bound.value.sent(bytes) }
        default:
            break
        }
        write(.data(.init(data: .byteBuffer(buffer), endStream: endStream)), promise: promise)
    }

    private func receivedEndOfInput() {
        switch state {
        case .gatewayBody:
            startGateway()
        case .unary:
            // Still waiting for its message: none came.
            fail(GRPCStatus(.internal, "grpc: the client sent no complete request message"))
        case .streaming(let call):
            call.receivedEnd()
        default:
            break
        }
    }

    private func deadlineExpired() {
        cancellation.cancel()
        deadlineTask = nil
        fail(GRPCStatus(.deadlineExceeded, "context deadline exceeded"))
    }

    /// The stream ended without our trailers (reset, connection closed).
    private func terminate() {
        if case .done = state {} else { cancellation.cancel() }
        reportHandled(.cancelled)
        releaseInbound()
        deadlineTask?.cancel()
        deadlineTask = nil
        let previous = state
        state = .done
        if case .streaming(let call) = previous { call.closed() }
        if case .gateway(let exchange) = previous { exchange.closed() }
    }

    // MARK: the JSON gateway over HTTP/2

    private func startGateway() {
        guard case .gatewayBody(let request, let body) = state, let gateway else { return }
        let exchange = HTTPExchange(sink: self, eventLoop: eventLoop)
        state = .gateway(exchange)
        gateway.serve(request, body: body, exchange: exchange)
    }

    private func writeHTTPHeaders(status: Int, _ headers: [(String, String)], contentLength: Int?, endStream: Bool) {
        var out = HPACKHeaders([(":status", String(status))])
        for (name, value) in headers { out.add(name: name.lowercased(), value: value) }
        if let contentLength { out.add(name: "content-length", value: String(contentLength)) }
        write(.headers(.init(headers: out, endStream: endStream)))
    }

    private func writeHTTPData(_ bytes: [UInt8], endStream: Bool) {
        var body = allocator.buffer(capacity: bytes.count)
        body.writeBytes(bytes)
        writeBody(body, endStream: endStream)
    }

    // MARK: outbound

    func completeUnary(_ result: Result<[UInt8], GRPCStatus>) {
        guard case .unaryRunning = state else { return }
        switch result {
        case .success(let message) where message.count > maxSendMessageBytes:
            fail(Self.tooLargeToSend(message.count, maxSendMessageBytes))
        case .success(let message):
            state = .done
            deadlineTask?.cancel()
            sendResponseHeadersIfNeeded()
            writeData(MessageFramer.frame(message, gzip: gzipResponses, allocator: allocator))
            sendTrailers(.ok)
        case .failure(let status):
            fail(status)
        }
    }

    /// Messages sent without a flush are coalesced into one buffer and written as one DATA frame
    /// (HTTP/2 splits it to the peer's frame size) at the next flush, or once it holds
    /// `coalesceBytes`: a watch stream serving many watchers writes once per revision, not once
    /// per watcher.
    func sendStreamMessage(_ message: [UInt8], flush: Bool) {
        guard case .streaming = state else { return }
        guard message.count <= maxSendMessageBytes else {
            return fail(Self.tooLargeToSend(message.count, maxSendMessageBytes))
        }
        sendResponseHeadersIfNeeded()
        if pendingOut == nil {
            pendingOut = allocator.buffer(capacity: max(message.count + 5, 1024))
        }
        MessageFramer.append(message, gzip: gzipResponses, to: &pendingOut!)
        if flush {
            flushStream()
        } else if pendingOut!.readableBytes >= Self.coalesceBytes {
            writePending()
        }
    }

    func flushStream() {
        guard case .streaming = state else { return }
        writePending()
        flush()
    }

    static let coalesceBytes = 64 * 1024
    private var pendingOut: ByteBuffer?

    private func writePending() {
        guard let buffer = pendingOut else { return }
        pendingOut = nil
        writeData(buffer)
    }

    func finishStream(_ status: GRPCStatus) {
        guard case .streaming = state else { return }
        fail(status)
    }

    /// Ends the call with `status` (also used for OK on streams): trailers-only when nothing was
    /// sent yet, else trailers after the messages.
    private func fail(_ status: GRPCStatus) {
        let previous = state
        if case .streaming = previous { writePending() }
        state = .done
        releaseInbound()
        deadlineTask?.cancel()
        deadlineTask = nil
        if responseHeadersSent {
            sendTrailers(status)
        } else {
            sendTrailersOnly(status)
        }
        if case .streaming(let call) = previous { call.closed() }
    }

    private func sendResponseHeadersIfNeeded() {
        guard !responseHeadersSent else { return }
        responseHeadersSent = true
        let headers = gzipResponses ? Self.responseHeadersGzip : Self.responseHeaders
        flushCoalescer?.wroteSinceLastPing = true
        write(.headers(.init(headers: headers)))
    }

    private func sendTrailers(_ status: GRPCStatus) {
        defer { resetIfClientStillSending() }
        reportHandled(status.code)
        if status.code == .ok && status.message.isEmpty {
            flushCoalescer?.wroteSinceLastPing = true
            writeAndFlush(.headers(.init(headers: Self.okTrailers, endStream: true)))
            return
        }
        var trailers = HPACKHeaders()
        trailers.add(name: "grpc-status", value: String(status.code.rawValue))
        if !status.message.isEmpty {
            trailers.add(name: "grpc-message", value: GRPCMessageEncoding.encode(status.message))
        }
        flushCoalescer?.wroteSinceLastPing = true
        writeAndFlush(.headers(.init(headers: trailers, endStream: true)))
    }

    private func sendTrailersOnly(_ status: GRPCStatus) {
        defer { resetIfClientStillSending() }
        reportHandled(status.code)
        responseHeadersSent = true
        var headers = Self.responseHeaders
        headers.add(name: "grpc-status", value: String(status.code.rawValue))
        if !status.message.isEmpty {
            headers.add(name: "grpc-message", value: GRPCMessageEncoding.encode(status.message))
        }
        flushCoalescer?.wroteSinceLastPing = true
        writeAndFlush(.headers(.init(headers: headers, endStream: true)))
    }

    /// After the final trailers, a client that has not half-closed gets RST_STREAM(NO_ERROR), as
    /// grpc-go sends: the call is over and nothing more it sends will be read. Decided once the
    /// frames already received are processed, so a client whose END_STREAM was on its way in
    /// the same read is not reset.
    private func resetIfClientStillSending() {
        guard !inputEnded else { return }
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.execute {
            let handler = bound.value
            guard !handler.inputEnded, handler.isOpen else { return }
            handler.writeAndFlush(.rstStream(.noError))
        }
    }

    /// A plain HTTP request on an HTTP/2 stream (health checks and scrapes over TLS): answered
    /// by the endpoints on a worker thread; its body, if any, is ignored.
    private func serveHTTP(_ headers: HPACKHeaders, _ endpoints: @escaping HTTPEndpoints) {
        state = .done
        let request = HTTPRequestLine(method: headers.first(name: ":method") ?? "GET", uri: headers.first(name: ":path") ?? "/")
        let bound = NIOLoopBound(self, eventLoop: eventLoop)
        let loop = eventLoop
        DispatchQueue.global().async {
            let reply = endpoints(request)
            loop.execute {
                let handler = bound.value
                guard handler.isOpen else { return }
                let empty = reply.body.isEmpty || request.method == "HEAD"
                handler.writeHTTPHeaders(status: reply.status, reply.headers, contentLength: reply.body.count, endStream: empty)
                if !empty { handler.writeHTTPData(reply.body, endStream: true) }
                handler.flush()
            }
        }
    }

    /// Ends the stream at once with RST_STREAM(`code`).
    private func reset(_ code: HTTP2ErrorCode) {
        state = .done
        writeAndFlush(.rstStream(code))
    }

    static func tooLargeToSend(_ size: Int, _ limit: Int) -> GRPCStatus {
        GRPCStatus(.resourceExhausted, "grpc: trying to send message larger than max (\(size) vs. \(limit))")
    }

    /// "application/grpc", optionally followed by "+subtype" or ";parameters" (grpc-go's rule).
    static func isGRPCContentType(_ value: String) -> Bool {
        let lowered = value.lowercased()
        guard lowered.hasPrefix("application/grpc") else { return false }
        let rest = lowered.dropFirst("application/grpc".count)
        return rest.isEmpty || rest.first == "+" || rest.first == ";"
    }

    private static let responseHeaders: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
    private static let okTrailers: HPACKHeaders = ["grpc-status": "0"]
    private static let responseHeadersGzip: HPACKHeaders = [
        ":status": "200", "content-type": "application/grpc", "grpc-encoding": "gzip",
    ]

}

extension ServerStreamHandler: HTTPExchangeSink {
    func exchangeReply(_ reply: HTTPReply) {
        guard case .gateway = state, isOpen else { return }
        state = .done
        writeHTTPHeaders(status: reply.status, reply.headers, contentLength: reply.body.count, endStream: reply.body.isEmpty)
        if !reply.body.isEmpty { writeHTTPData(reply.body, endStream: true) }
        flush()
    }

    func exchangeStart(status: Int, headers: [(String, String)]) {
        guard case .gateway = state, isOpen else { return }
        writeHTTPHeaders(status: status, headers, contentLength: nil, endStream: false)
        flush()
    }

    func exchangeSend(_ chunk: [UInt8]) {
        guard case .gateway = state, isOpen, !chunk.isEmpty else { return }
        writeHTTPData(chunk, endStream: false)
        flush()
    }

    func exchangeFinish() {
        guard case .gateway = state, isOpen else { return }
        state = .done
        writeHTTPData([], endStream: true)
        flush()
    }

    var exchangeIsWritable: Bool { streamIsWritable }
}
