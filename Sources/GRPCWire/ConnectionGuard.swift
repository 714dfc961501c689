import NIOCore
import NIOHTTP2

/// Client keepalive pings: what a server accepts (grpc-go's enforcement policy, which etcd
/// configures from `--grpc-keepalive-min-time`, with pings on a connection without calls not
/// permitted).
public struct PingPolicy: Sendable {
    /// Pings closer together than this while calls are open are strikes.
    public var minimumInterval: TimeAmount = .seconds(5)
    /// Without open calls, pings closer together than this are strikes (grpc-go: 2 h).
    public var minimumIntervalWithoutCalls: TimeAmount = .hours(2)
    /// More strikes than this close the connection (grpc-go: 2).
    public var strikesAllowed = 2

    public init() {}
}

/// Sits after the HTTP/2 handler of a server connection and
///   - with `keepalive`, pings a client that has sent nothing for the interval and closes the
///     connection at once when nothing arrives within the timeout (grpc-go's server keepalive;
///     a half-open connection then releases its calls and watchers);
///   - enforces the ping policy like grpc-go: a client ping that comes too soon after the
///     previous one, with no response data or headers sent in between, is a strike; past the
///     allowance the server sends GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings") and closes;
///   - after any connection error the HTTP/2 layer answered with GOAWAY (a frame flood, rapid
///     resets, a header or continuation flood), stops reading at once and closes after a short
///     grace, so nothing more the client sends is parsed or held.
final class ConnectionGuardHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let policy: PingPolicy
    private let closeGrace: TimeAmount
    /// Shared with the connection's call handlers (same event loop): they note responses.
    private let activity: FlushCoalescingHandler
    private var openStreams = 0
    private var lastPing: NIODeadline?
    private var strikes = 0
    private var closing = false

    private let keepalive: (interval: TimeAmount, timeout: TimeAmount)?
    private var keepaliveTimer: Scheduled<Void>?
    private var keepaliveDeadline: Scheduled<Void>?

    init(policy: PingPolicy, keepalive: (interval: TimeAmount, timeout: TimeAmount)?, activity: FlushCoalescingHandler,
         closeGrace: TimeAmount = .seconds(1)) {
        self.policy = policy
        self.keepalive = keepalive
        self.activity = activity
        self.closeGrace = closeGrace
    }

    /// Added to a connection that is already active (after protocol detection): channelActive
    /// will not come, so the keepalive starts now.
    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { scheduleKeepalive(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        scheduleKeepalive(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        keepaliveTimer?.cancel()
        keepaliveDeadline?.cancel()
        context.fireChannelInactive()
    }

    /// Anything read — on any stream — shows the client is alive.
    func channelReadComplete(context: ChannelHandlerContext) {
        keepaliveDeadline?.cancel()
        keepaliveDeadline = nil
        scheduleKeepalive(context: context)
        context.fireChannelReadComplete()
    }

    private func scheduleKeepalive(context: ChannelHandlerContext) {
        guard let keepalive, !closing else { return }
        keepaliveTimer?.cancel()
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        keepaliveTimer = context.eventLoop.scheduleTask(in: keepalive.interval) {
            let (handler, context) = bound.value
            handler.sendKeepalivePing(context: context, timeout: keepalive.timeout)
        }
    }

    private func sendKeepalivePing(context: ChannelHandlerContext, timeout: TimeAmount) {
        guard !closing, keepaliveDeadline == nil else { return }
        let ping = HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: 0x4c54_4b41_4c49_5645), ack: false))
        context.writeAndFlush(wrapOutboundOut(ping), promise: nil)
        let channel = context.channel
        keepaliveDeadline = context.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let frame = unwrapInboundIn(data)
        if case .ping(_, ack: false) = frame.payload { receivedPing(context: context) }
        context.fireChannelRead(data)
    }

    private func receivedPing(context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        defer { lastPing = now }
        if activity.wroteSinceLastPing {
            activity.wroteSinceLastPing = false
            strikes = 0
            return
        }
        guard let last = lastPing else { return }
        let interval = openStreams > 0 ? policy.minimumInterval : policy.minimumIntervalWithoutCalls
        if now < last + interval { strikes += 1 }
        if strikes > policy.strikesAllowed {
            let goAway = HTTP2Frame(streamID: .rootStream, payload: .goAway(
                lastStreamID: .maxID, errorCode: .enhanceYourCalm,
                opaqueData: context.channel.allocator.buffer(string: "too_many_pings")))
            context.writeAndFlush(wrapOutboundOut(goAway), promise: nil)
            stopAndClose(context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is NIOHTTP2StreamCreatedEvent {
            openStreams += 1
        } else if event is StreamClosedEvent {
            openStreams = max(0, openStreams - 1)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if Self.isFlood(error) { stopAndClose(context: context) }
        context.fireErrorCaught(error)
    }

    /// The connection errors the HTTP/2 layer raises against a misbehaving peer (it has sent
    /// GOAWAY(ENHANCE_YOUR_CALM) already).
    static func isFlood(_ error: any Error) -> Bool {
        error is NIOHTTP2Errors.ExcessiveControlFrames || error is NIOHTTP2Errors.ExcessiveRSTFrames
            || error is NIOHTTP2Errors.ExcessiveEmptyDataFrames || error is NIOHTTP2Errors.ExcessiveStreamErrors
            || error is NIOHTTP2Errors.ExcessiveNumberOfGlitches || error is NIOHTTP2Errors.ExcessiveOutboundFrameBuffering
            || error is NIOHTTP2Errors.ExcessiveContinuationFrames
    }

    private func stopAndClose(context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        keepaliveTimer?.cancel()
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        let channel = context.channel
        context.eventLoop.scheduleTask(in: closeGrace) { channel.close(promise: nil) }
    }
}

/// What one connection may make the server hold in responses its client has not taken yet.
///
/// Every response message a call writes is charged when written and released when its bytes
/// have left for the socket (the write's promise). Past `limitBytes` the connection stops
/// reading, new unary calls wait (holding only their request) and streaming calls see their
/// stream as not writable; below half the limit everything resumes. A client that never reads
/// thus holds the server to about the limit plus one response, whatever it asks for.
final class ConnectionBudget {
    let limitBytes: Int
    private(set) var outstanding = 0
    private var channel: (any Channel)?
    private var paused = false
    private var waiting: [() -> Void] = []
    private var blockedStreams: [ObjectIdentifier: () -> Void] = [:]
    /// Long work (see `GRPCLongWork`) running, and waiting to start.
    private var longInFlight = 0
    private var longWaiting: [() -> Void] = []
    static let longWorkInFlightMax = 2

    /// Request bytes the connection's calls may hold before they run: partial messages in
    /// their deframers and complete unary requests waiting for `admit`. Without it a client
    /// could open many streams and leave a message of up to the size limit unfinished on each.
    let inboundLimitBytes: Int
    private(set) var inbound = 0

    init(limitBytes: Int, inboundLimitBytes: Int = 16 << 20) {
        self.limitBytes = limitBytes
        self.inboundLimitBytes = inboundLimitBytes
    }

    /// Changes the request bytes held by `delta`; true while the connection is within its
    /// inbound limit.
    @discardableResult
    func holdInbound(_ delta: Int) -> Bool {
        inbound += delta
        return inbound <= inboundLimitBytes
    }

    func attach(_ channel: any Channel) { self.channel = channel }

    /// The connection closed: drop what refers back to it.
    func detach() {
        channel = nil
        waiting = []
        blockedStreams = [:]
        longWaiting = []
    }

    /// Starts `work` now if fewer than `longWorkInFlightMax` long works run and the budget has
    /// room; else queues it until both hold.
    func admitLong(_ work: @escaping () -> Void) {
        longWaiting.append(work)
        startLong()
    }

    /// A long work handed over its response (or gave up).
    func finishedLong() {
        longInFlight -= 1
        startLong()
    }

    private func startLong() {
        while longInFlight < Self.longWorkInFlightMax && !isOver && !longWaiting.isEmpty {
            longInFlight += 1
            longWaiting.removeFirst()()
        }
    }

    var isOver: Bool { outstanding > limitBytes }

    /// Charges `bytes` now; returns the promise to write with, which releases them.
    func charge(_ bytes: Int, on loop: any EventLoop) -> EventLoopPromise<Void> {
        outstanding += bytes
        if isOver && !paused {
            paused = true
            _ = channel?.setOption(ChannelOptions.autoRead, value: false)
        }
        let promise = loop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { [self] _ in release(bytes) }
        return promise
    }

    private func release(_ bytes: Int) {
        outstanding -= bytes
        guard outstanding <= limitBytes / 2 else { return }
        if paused {
            paused = false
            _ = channel?.setOption(ChannelOptions.autoRead, value: true)
        }
        while !waiting.isEmpty && !isOver {
            waiting.removeFirst()()
        }
        if !blockedStreams.isEmpty && !isOver {
            let resumed = blockedStreams.values
            blockedStreams = [:]
            for resume in resumed { resume() }
        }
        startLong()
    }

    /// Runs `call` now, or once the connection is back under its budget.
    func admit(_ call: @escaping () -> Void) {
        if isOver || !waiting.isEmpty { waiting.append(call) } else { call() }
    }

    /// A streaming call found its stream not writable because of the budget: `resume` runs
    /// when the budget frees up.
    func notifyWhenUnder(_ id: ObjectIdentifier, _ resume: @escaping () -> Void) {
        blockedStreams[id] = resume
    }

    func forget(_ id: ObjectIdentifier) { blockedStreams[id] = nil }

    /// Charges `bytes` a call holds outside the transport (e.g. an encoded snapshot) until the
    /// returned closure runs.
    func hold(_ bytes: Int, on loop: any EventLoop) -> () -> Void {
        let promise = charge(bytes, on: loop)
        return { promise.succeed(()) }
    }
}
