import NIOCore
import NIOHTTP2

/// Serves a connection's calls straight from its HTTP/2 frames: a table of streams, each
/// served by a `ServerStreamHandler`, and no channel, pipeline or promise per stream (which
/// cost about a fifth of the server's CPU per call). Sits after the `NIOHTTP2Handler` (which
/// keeps the HTTP/2 state machine, HPACK and outbound flow control) and before the handlers
/// that watch the connection (pings, graceful shutdown), to which it passes the connection's
/// own frames and every event.
///
/// Inbound flow control is kept here: as a stream's or the connection's DATA uses up half of
/// its window, a WINDOW_UPDATE gives the client the whole window again. Confined to the
/// connection's event loop.
final class ServerConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let makeStream: (HTTP2StreamID, ServerConnectionHandler) -> ServerStreamHandler
    private var streams: [HTTP2StreamID: ServerStreamHandler] = [:]
    private var context: ChannelHandlerContext?
    /// What the client may still send on the connection: HTTP/2's initial 64 KiB until it is
    /// raised to the configured window when the connection starts.
    private var connectionWindow: ReceiveWindow
    private let connectionWindowBytes: Int
    private var connectionWindowOpened = false
    /// Between a read's first frame and its end: flushes wait for the end of the read, so the
    /// answers to the calls one read carried leave in one socket write.
    private var reading = false
    /// Something was written during the current read (an answer, a WINDOW_UPDATE).
    private var flushAfterRead = false

    init(limits: GRPCConnectionLimits, makeStream: @escaping (HTTP2StreamID, ServerConnectionHandler) -> ServerStreamHandler) {
        self.connectionWindowBytes = limits.connectionWindowBytes
        self.connectionWindow = ReceiveWindow(target: ReceiveWindow.initialBytes)
        self.makeStream = makeStream
    }

    /// Whether the connection takes more bytes now.
    var isWritable: Bool { context?.channel.isWritable ?? false }

    func write(_ frame: HTTP2Frame, promise: EventLoopPromise<Void>?) {
        guard let context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        context.write(wrapOutboundOut(frame), promise: promise)
    }

    func flush() {
        if reading {
            flushAfterRead = true
        } else {
            context?.flush()
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { openConnectionWindow(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        closeAll()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        openConnectionWindow(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closeAll()
        context.fireChannelInactive()
    }

    /// Raises the connection's window from HTTP/2's initial 64 KiB to the configured one.
    private func openConnectionWindow(context: ChannelHandlerContext) {
        guard !connectionWindowOpened else { return }
        connectionWindowOpened = true
        let increment = connectionWindowBytes - connectionWindow.remaining
        guard increment > 0 else { return }
        connectionWindow = ReceiveWindow(target: connectionWindowBytes)
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment))),
                              promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reading = true
        let frame = unwrapInboundIn(data)
        let id = frame.streamID
        guard id != .rootStream else { return context.fireChannelRead(data) }
        switch frame.payload {
        case .headers:
            if let stream = streams[id] {
                stream.received(frame.payload)
            } else {
                let stream = makeStream(id, self)
                streams[id] = stream
                stream.received(frame.payload)
            }
        case .data(let body):
            let length = body.data.readableBytes + (body.paddingBytes ?? 0)
            if let increment = connectionWindow.consume(length) { windowUpdate(.rootStream, increment, context: context) }
            guard let stream = streams[id] else { return }
            // A stream the client has ended takes no more: its window is not given back.
            if let increment = stream.inboundWindow.consume(length), !body.endStream {
                windowUpdate(id, increment, context: context)
            }
            stream.received(frame.payload)
        case .rstStream:
            streams[id]?.received(frame.payload)
        default:
            break  // WINDOW_UPDATE, PRIORITY: the HTTP/2 handler has acted on them
        }
    }

    private func windowUpdate(_ id: HTTP2StreamID, _ increment: Int, context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: increment))), promise: nil)
        flushAfterRead = true
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        reading = false
        if flushAfterRead {
            flushAfterRead = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    /// Window changes (several per call) stop here: flow control is kept above, and the
    /// handlers after this one watch only streams opening and closing and shutdown.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        let type = Swift.type(of: event)
        if type == NIOHTTP2WindowUpdatedEvent.self { return }
        if type == StreamClosedEvent.self, let closed = event as? StreamClosedEvent {
            streams.removeValue(forKey: closed.streamID)?.closed()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        for stream in streams.values { stream.writabilityChanged() }
        context.fireChannelWritabilityChanged()
    }

    private func closeAll() {
        let open = streams
        streams = [:]
        for stream in open.values { stream.closed() }
    }
}

/// What a peer may still send on a stream or a connection before it needs a WINDOW_UPDATE:
/// once half of `target` is used, the whole window is given back.
struct ReceiveWindow {
    /// HTTP/2's initial window, before any WINDOW_UPDATE or SETTINGS.
    static let initialBytes = 65_535

    let target: Int
    private(set) var remaining: Int

    init(target: Int) {
        self.target = target
        remaining = target
    }

    /// Takes `bytes` of DATA; returns the increment to send once half the window is used.
    mutating func consume(_ bytes: Int) -> Int? {
        remaining -= bytes
        guard remaining <= target / 2 else { return nil }
        defer { remaining = target }
        return target - remaining
    }
}
