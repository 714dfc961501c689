import Synchronization
import NIOCore
import NIOHPACK
import NIOPosix

/// What a method handler knows about its call.
public struct GRPCCallContext: Sendable {
    /// `/package.Service/Method`
    public let path: String
    public let headers: HPACKHeaders
    /// From `grpc-timeout`; nil when the client set none.
    public let deadline: NIODeadline?
    /// The loop the call's stream lives on. Responding from it avoids a thread hop.
    public let eventLoop: any EventLoop
    /// Set once nobody waits for the answer any more: the client reset the stream, the
    /// connection closed or the deadline passed. Work not yet started can be skipped.
    public let cancellation: GRPCCancellation
    /// Admission of work whose response size is known only once it is done (long reads).
    public var longWork = GRPCLongWork(gate: nil)
    /// The connection's peer as the routes identify it (see `GRPCRoutes.peerIdentity`): the
    /// common name of a verified client certificate. nil for in-process calls.
    public var peerIdentity: String?

    init(path: String, headers: HPACKHeaders, deadline: NIODeadline?, eventLoop: any EventLoop, cancellation: GRPCCancellation) {
        self.path = path
        self.headers = headers
        self.deadline = deadline
        self.eventLoop = eventLoop
        self.cancellation = cancellation
    }

    /// A call made in-process (the JSON gateway), with `headers` as its metadata.
    public init(path: String, headers: [(String, String)], eventLoop: any EventLoop, cancellation: GRPCCancellation) {
        self.init(path: path, headers: HPACKHeaders(headers), deadline: nil, eventLoop: eventLoop, cancellation: cancellation)
    }
}

/// A connection's peer identity, worked out when its first call needs it and kept for the
/// connection's life (a TLS connection's certificate does not change). Used on the
/// connection's event loop only.
final class ConnectionPeer {
    private var resolve: (() -> String?)?
    private var resolved: String?

    init(_ resolve: @escaping () -> String?) { self.resolve = resolve }

    var identity: String? {
        if let resolve {
            resolved = resolve()
            self.resolve = nil  // asked once; also lets go of the connection it captured
        }
        return resolved
    }
}

/// Lets a call start work whose response may be large (a range over many keys, a hash of the
/// keyspace) only when its connection may take another such response: at most
/// `ConnectionBudget.longWorkInFlightMax` at a time per connection, and only while the
/// connection's response budget has room. Unary calls are admitted when they start, before
/// their response exists; without this, a client that sends many long reads and never reads
/// the answers would have every one computed and buffered.
public struct GRPCLongWork: Sendable {
    let gate: NIOLoopBound<ConnectionBudget>?

    /// Runs `work` now or once admitted; `work` calls `finished` (from any thread) after it
    /// handed its response to the responder, or gave up.
    public func start(_ work: @escaping @Sendable (_ finished: @escaping @Sendable () -> Void) -> Void) {
        guard let gate else { return work({}) }
        let loop = gate.eventLoop
        loop.execute {
            gate.value.admitLong {
                work { loop.execute { gate.value.finishedLong() } }
            }
        }
    }
}

/// Whether a call was abandoned (readable from any thread).
public final class GRPCCancellation: Sendable {
    private let flag = Atomic<Bool>(false)

    public init() {}

    public var isCancelled: Bool { flag.load(ordering: .acquiring) }

    public func cancel() { flag.store(true, ordering: .releasing) }
}

/// Completes a unary call exactly once, from any thread. Later calls are ignored, and so are
/// calls after the client went away.
public struct GRPCResponder: Sendable {
    let handler: NIOLoopBound<ServerStreamHandler>?
    let callback: (@Sendable (Result<[UInt8], GRPCStatus>) -> Void)?

    init(handler: NIOLoopBound<ServerStreamHandler>) {
        self.handler = handler
        self.callback = nil
    }

    /// A responder for an in-process call (the JSON gateway): `callback` gets the result.
    public init(_ callback: @escaping @Sendable (Result<[UInt8], GRPCStatus>) -> Void) {
        self.handler = nil
        self.callback = callback
    }

    public func succeed(_ message: [UInt8]) {
        complete(.success(message))
    }

    public func fail(_ status: GRPCStatus) {
        complete(.failure(status))
    }

    public func complete(_ result: Result<[UInt8], GRPCStatus>) {
        guard let handler else { return callback!(result) }
        if let batch = CompletionBatch.current.currentValue, batch.isOpen {
            batch.items.append((handler, result))
            return
        }
        let loop = handler.eventLoop
        if loop.inEventLoop {
            handler.value.completeUnary(result)
        } else {
            loop.execute { handler.value.completeUnary(result) }
        }
    }

    /// Runs `body` and delivers every completion it makes on this thread together, when it
    /// returns: one hop per event loop, and one socket write per connection instead of one per
    /// call (the store answers a whole group commit at once). Nested calls join the outer batch.
    public static func batching(_ body: () -> Void) {
        let batch: CompletionBatch
        if let existing = CompletionBatch.current.currentValue {
            batch = existing
        } else {
            batch = CompletionBatch()
            CompletionBatch.current.currentValue = batch
        }
        if batch.isOpen { return body() }
        batch.isOpen = true
        body()
        batch.isOpen = false
        let items = batch.items
        batch.items = []
        batch.items.reserveCapacity(items.count)
        CompletionBatch.deliver(items)
    }
}

/// Completions collected by `GRPCResponder.batching` on one thread. Unchecked Sendable: each
/// instance lives in one thread's thread-specific slot and is only touched by that thread.
final class CompletionBatch: @unchecked Sendable {
    static let current = ThreadSpecificVariable<CompletionBatch>()
    var isOpen = false
    var items: [(NIOLoopBound<ServerStreamHandler>, Result<[UInt8], GRPCStatus>)] = []

    static func deliver(_ items: [(NIOLoopBound<ServerStreamHandler>, Result<[UInt8], GRPCStatus>)]) {
        guard !items.isEmpty else { return }
        var byLoop: [ObjectIdentifier: (loop: any EventLoop, items: [(NIOLoopBound<ServerStreamHandler>, Result<[UInt8], GRPCStatus>)])] = [:]
        for item in items {
            let loop = item.0.eventLoop
            byLoop[ObjectIdentifier(loop), default: (loop, [])].items.append(item)
        }
        for (_, group) in byLoop {
            let list = group.items
            if group.loop.inEventLoop {
                completeOnLoop(list)
            } else {
                group.loop.execute { completeOnLoop(list) }
            }
        }
    }

    /// On the loop: holds each connection's socket flush while the calls complete, then flushes
    /// every connection once.
    private static func completeOnLoop(_ items: [(NIOLoopBound<ServerStreamHandler>, Result<[UInt8], GRPCStatus>)]) {
        var held: [FlushCoalescingHandler] = []
        for (handler, result) in items {
            let h = handler.value
            if let coalescer = h.flushCoalescer, coalescer.hold() { held.append(coalescer) }
            h.completeUnary(result)
        }
        for coalescer in held { coalescer.release() }
    }
}

/// Sits in a connection's pipeline between the HTTP/2 handler and the socket. While held (a batch
/// of calls completing), flushes are remembered instead of passed on; releasing passes one on.
/// In `deferred` mode (clients) every flush waits for the end of the event loop's current round
/// of tasks, so the calls started in one round share one socket write. Confined to the
/// connection's event loop.
final class FlushCoalescingHandler: ChannelOutboundHandler {
    typealias OutboundIn = Any

    private let deferred: Bool
    private var context: ChannelHandlerContext?
    private var holding = false
    private var flushPending = false
    private var flushScheduled = false
    /// Set by the connection's call handlers when response headers or data go out; read and
    /// cleared by `ConnectionGuardHandler` at each client ping.
    var wroteSinceLastPing = false

    init(deferred: Bool = false) { self.deferred = deferred }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func flush(context: ChannelHandlerContext) {
        if holding {
            flushPending = true
        } else if deferred {
            guard !flushScheduled else { return }
            flushScheduled = true
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.execute {
                let handler = bound.value
                handler.flushScheduled = false
                handler.context?.flush()
            }
        } else {
            context.flush()
        }
    }

    /// Starts holding flushes; false if already holding (the caller then must not release).
    func hold() -> Bool {
        guard !holding else { return false }
        holding = true
        return true
    }

    func release() {
        holding = false
        if flushPending {
            flushPending = false
            context?.flush()
        }
    }
}

/// Where a streaming call's responses go: an HTTP/2 stream (`ServerStreamHandler`), or an
/// in-process caller such as the JSON gateway. Used on its event loop only.
public protocol GRPCStreamSink: AnyObject {
    func sendStreamMessage(_ message: [UInt8], flush: Bool)
    func flushStream()
    func finishStream(_ status: GRPCStatus)
    /// Runs `body` once the sink may take more (within its response budget); not at all if the
    /// call has ended by then.
    func admitStreaming(_ body: @escaping () -> Void)
    /// Counts `bytes` held for the client until the returned closure is called.
    func hold(bytes: Int) -> () -> Void
    var isWritable: Bool { get }
}

/// Sends messages on a streaming call, from any thread, in the order of the calls.
public struct GRPCStreamSender: Sendable {
    let handler: NIOLoopBound<any GRPCStreamSink>

    public init(sink: any GRPCStreamSink, eventLoop: any EventLoop) {
        handler = NIOLoopBound(sink, eventLoop: eventLoop)
    }

    public var eventLoop: any EventLoop { handler.eventLoop }

    /// Queues a message; with `flush: false` it goes out with the next flush (batching several
    /// messages into fewer writes).
    public func send(_ message: [UInt8], flush: Bool = true) {
        onLoop { $0.sendStreamMessage(message, flush: flush) }
    }

    public func flush() {
        onLoop { $0.flushStream() }
    }

    /// Ends the call with trailers carrying `status`.
    public func finish(_ status: GRPCStatus = .ok) {
        onLoop { $0.finishStream(status) }
    }

    /// Runs `body` on the call's loop once the connection is within its response budget (at
    /// once if it is); not at all if the call has ended by then.
    public func whenWithinBudget(_ body: @escaping () -> Void) {
        handler.eventLoop.preconditionInEventLoop()
        handler.value.admitStreaming(body)
    }

    /// Counts `bytes` the call holds for its client (an encoded response it sends piecewise)
    /// against the connection's response budget until the returned closure is called (on the
    /// call's loop).
    public func hold(bytes: Int) -> () -> Void {
        handler.eventLoop.preconditionInEventLoop()
        return handler.value.hold(bytes: bytes)
    }

    /// Whether the stream can take more bytes without buffering them (read on the call's loop).
    public var isWritable: Bool {
        handler.eventLoop.preconditionInEventLoop()
        return handler.value.isWritable
    }

    private func onLoop(_ body: @escaping @Sendable (any GRPCStreamSink) -> Void) {
        let loop = handler.eventLoop
        if loop.inEventLoop {
            body(handler.value)
        } else {
            let handler = self.handler
            loop.execute { body(handler.value) }
        }
    }
}

/// One streaming call's receiving side. Every method is called on the call's event loop.
public protocol GRPCStreamingCall: AnyObject {
    func received(_ message: [UInt8])
    /// The client half-closed its side.
    func receivedEnd()
    /// The stream's writability changed (see `GRPCStreamSender.isWritable`).
    func writabilityChanged(_ isWritable: Bool)
    /// The stream is over: finished, reset by the client, timed out or the connection closed.
    func closed()
}

public enum GRPCMethodHandler: Sendable {
    case unary(@Sendable (_ request: [UInt8], _ context: GRPCCallContext, _ responder: GRPCResponder) -> Void)
    case streaming(@Sendable (_ context: GRPCCallContext, _ sender: GRPCStreamSender) -> any GRPCStreamingCall)
}
