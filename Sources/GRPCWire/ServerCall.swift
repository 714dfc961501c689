import NIOCore
import NIOHPACK

/// What a method handler knows about its call.
public struct GRPCCallContext: Sendable {
    /// `/package.Service/Method`
    public let path: String
    public let headers: HPACKHeaders
    /// From `grpc-timeout`; nil when the client set none.
    public let deadline: NIODeadline?
    /// The loop the call's stream lives on. Responding from it avoids a thread hop.
    public let eventLoop: any EventLoop
}

/// Completes a unary call exactly once, from any thread. Later calls are ignored, and so are
/// calls after the client went away.
public struct GRPCResponder: Sendable {
    let handler: NIOLoopBound<ServerStreamHandler>

    public func succeed(_ message: [UInt8]) {
        complete(.success(message))
    }

    public func fail(_ status: GRPCStatus) {
        complete(.failure(status))
    }

    public func complete(_ result: Result<[UInt8], GRPCStatus>) {
        let loop = handler.eventLoop
        if loop.inEventLoop {
            handler.value.completeUnary(result)
        } else {
            let handler = self.handler
            loop.execute { handler.value.completeUnary(result) }
        }
    }
}

/// Sends messages on a streaming call, from any thread, in the order of the calls.
public struct GRPCStreamSender: Sendable {
    let handler: NIOLoopBound<ServerStreamHandler>

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

    /// Whether the stream can take more bytes without buffering them (read on the call's loop).
    public var isWritable: Bool {
        handler.eventLoop.preconditionInEventLoop()
        return handler.value.isWritable
    }

    private func onLoop(_ body: @escaping @Sendable (ServerStreamHandler) -> Void) {
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
