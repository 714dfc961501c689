@testable import GRPCWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest
import Foundation

/// The gRPC layer on its own: routing, framing, status, deadlines, limits, gzip, streaming,
/// multiplexing and shutdown, with our client against our server over loopback.
final class GRPCWireTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var server: GRPCServer!
    private var client: GRPCClient!
    /// One element each time a Slow call reaches its handler.
    private var slowCallArrivals: AsyncStream<Void>!
    /// Calls to Park, held until a test answers them.
    private let parked = NIOLockedValueBox<[([UInt8], GRPCResponder)]>([])

    override func setUp() async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let (arrivals, arrived) = AsyncStream<Void>.makeStream()
        slowCallArrivals = arrivals
        var routes = GRPCRoutes()
        routes.add(service: "test.Echo", method: "Echo", .unary { request, _, responder in
            responder.succeed(request)
        })
        routes.add(service: "test.Echo", method: "Never", .unary { _, _, _ in })
        routes.add(service: "test.Echo", method: "Slow", .unary { request, context, responder in
            arrived.yield()
            context.eventLoop.scheduleTask(in: .milliseconds(300)) { responder.succeed(request) }
        })
        routes.add(service: "test.Echo", method: "Fail", .unary { _, _, responder in
            responder.fail(GRPCStatus(.outOfRange, "ünïcode % message\nwith newline"))
        })
        routes.add(service: "test.Echo", method: "Stream", .streaming { _, sender in EchoStream(sender: sender) })
        let parked = self.parked
        routes.add(service: "test.Echo", method: "Park", .unary { request, _, responder in
            parked.withLockedValue { $0.append((request, responder)) }
        })
        var limits = GRPCConnectionLimits()
        limits.maxReceiveMessageBytes = 64 * 1024
        server = try await GRPCServer.start(addresses: [("127.0.0.1", 0)], routes: routes, limits: limits, group: group)
        client = try await GRPCClient.connect(host: "127.0.0.1", port: server.localAddresses[0].port!, group: group)
    }

    override func tearDown() async throws {
        await client?.close()
        await server?.shutdown(grace: .milliseconds(100))
        try await group.shutdownGracefully()
    }

    private func expectStatus(_ code: GRPCStatus.Code, _ body: () async throws -> Void, file: StaticString = #filePath, line: UInt = #line) async -> GRPCStatus? {
        do {
            try await body()
            XCTFail("expected status \(code)", file: file, line: line)
            return nil
        } catch let status as GRPCStatus {
            XCTAssertEqual(status.code, code, "\(status)", file: file, line: line)
            return status
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
            return nil
        }
    }

    func testUnaryEchoReturnsTheRequestBytes() async throws {
        let payload: [UInt8] = [0, 1, 2, 255, 0x80]
        let response = try await client.unary(path: "/test.Echo/Echo", request: payload)
        XCTAssertEqual(response, payload)
        let empty = try await client.unary(path: "/test.Echo/Echo", request: [])
        XCTAssertEqual(empty, [])
    }

    func testUnknownMethodOfKnownServiceIsUnimplementedLikeGrpcGo() async {
        let status = await expectStatus(.unimplemented) {
            _ = try await self.client.unary(path: "/test.Echo/Nope", request: [])
        }
        XCTAssertEqual(status?.message, "unknown method Nope for service test.Echo")
    }

    func testUnknownServiceIsUnimplemented() async {
        let status = await expectStatus(.unimplemented) {
            _ = try await self.client.unary(path: "/other.Service/X", request: [])
        }
        XCTAssertEqual(status?.message, "unknown service other.Service")
    }

    func testErrorStatusMessageSurvivesPercentEncoding() async {
        let status = await expectStatus(.outOfRange) {
            _ = try await self.client.unary(path: "/test.Echo/Fail", request: [])
        }
        XCTAssertEqual(status?.message, "ünïcode % message\nwith newline")
    }

    func testGrpcTimeoutIsEnforcedAsADeadline() async {
        let start = NIODeadline.now()
        _ = await expectStatus(.deadlineExceeded) {
            _ = try await self.client.unary(path: "/test.Echo/Never", request: [], timeout: .milliseconds(50))
        }
        XCTAssertLessThan((NIODeadline.now() - start).nanoseconds, 5_000_000_000)
    }

    func testMessageLargerThanTheLimitIsResourceExhausted() async throws {
        let status = await expectStatus(.resourceExhausted) {
            _ = try await self.client.unary(path: "/test.Echo/Echo", request: [UInt8](repeating: 7, count: 64 * 1024 + 1))
        }
        XCTAssertEqual(status?.message, "grpc: received message larger than max (65537 vs. 65536)")
        // The connection is still usable, and a message at the limit passes.
        let ok = try await client.unary(path: "/test.Echo/Echo", request: [UInt8](repeating: 7, count: 64 * 1024))
        XCTAssertEqual(ok.count, 64 * 1024)
    }

    func testGzipCompressedRequestsAreInflatedAndAnsweredCompressed() async throws {
        let payload = [UInt8](repeating: 42, count: 10_000)
        let response = try await client.unary(path: "/test.Echo/Echo", request: payload, gzip: true)
        XCTAssertEqual(response, payload)
    }

    func testGzipBombIsRefusedNotInflated() async {
        // 10 MiB of zeros compresses to ~10 KiB: under the wire limit, far over the message limit.
        let bomb = Gzip.compress([UInt8](repeating: 0, count: 10 << 20))
        XCTAssertLessThan(bomb.count, 64 * 1024)
        _ = await expectStatus(.resourceExhausted) {
            _ = try await self.client.unary(path: "/test.Echo/Echo", request: [UInt8](repeating: 0, count: 10 << 20), gzip: true)
        }
    }

    func testManyConcurrentCallsShareOneConnection() async throws {
        let client = self.client!
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for i in 0..<2_000 {
                tasks.addTask {
                    let payload = Array("call-\(i)".utf8)
                    let response = try await client.unary(path: "/test.Echo/Echo", request: payload)
                    XCTAssertEqual(response, payload)
                }
            }
            try await tasks.waitForAll()
        }
    }

    func testBidirectionalStreamEchoesInOrderAndEndsWithOK() async throws {
        let stream = try await client.openStream(path: "/test.Echo/Stream")
        for i in 0..<100 { stream.send(Array("m\(i)".utf8)) }
        stream.closeSend()
        var received: [String] = []
        for try await message in stream.responses { received.append(String(decoding: message, as: UTF8.self)) }
        XCTAssertEqual(received, (0..<100).map { "m\($0)" })
    }

    /// A client may send far more than the flow-control windows the server grants (1 MiB per
    /// stream, 16 MiB per connection): the server gives both back as it reads, so one stream
    /// carrying 24 MiB, and the calls after it on the same connection, are read to the end.
    /// Without the WINDOW_UPDATEs the client stops sending when a window is used up.
    func testFlowControlWindowsAreGivenBackAsTheServerReads() async throws {
        let message = [UInt8](repeating: 7, count: 60 * 1024)
        let count = 400
        let client = self.client!
        let finished = try await finishes(within: .seconds(60), orClose: client) {
            let stream = try await client.openStream(path: "/test.Echo/Stream")
            let reader = Task { () throws -> (messages: Int, bytes: Int) in
                var messages = 0, bytes = 0
                for try await received in stream.responses {
                    messages += 1
                    bytes += received.count
                }
                return (messages, bytes)
            }
            for _ in 0..<count { stream.send(message) }
            stream.closeSend()
            let echoed = try await reader.value
            XCTAssertEqual(echoed.messages, count)
            XCTAssertEqual(echoed.bytes, count * message.count)
            for _ in 0..<50 {
                let response = try await client.unary(path: "/test.Echo/Echo", request: message)
                XCTAssertEqual(response.count, message.count)
            }
        }
        XCTAssertTrue(finished, "the calls stalled: a flow-control window was not given back")
    }

    /// Runs `body`; false if it has not finished within `limit` (then `client` is closed, which
    /// ends whatever the body waits for).
    private func finishes(within limit: Duration, orClose client: GRPCClient,
                          _ body: @escaping @Sendable () async throws -> Void) async throws -> Bool {
        let expired = NIOLockedValueBox(false)
        let watchdog = Task {
            try await Task.sleep(for: limit)
            expired.withLockedValue { $0 = true }
            await client.close()
        }
        defer { watchdog.cancel() }
        do {
            try await body()
        } catch {
            if expired.withLockedValue({ $0 }) { return false }
            throw error
        }
        return !expired.withLockedValue { $0 }
    }

    /// Callback mode (the load generator's watch reader): every message reaches the callback in
    /// order before `responses` finishes, and a non-OK status is thrown from `responses`.
    func testCallbackStreamDeliversInOrderAndReportsTheStatus() async throws {
        let received = NIOLockedValueBox<[String]>([])
        let stream = try await client.openStream(path: "/test.Echo/Stream") { message in
            received.withLockedValue { $0.append(String(decoding: message, as: UTF8.self)) }
        }
        for i in 0..<500 { stream.send(Array("m\(i)".utf8)) }
        stream.closeSend()
        for try await _ in stream.responses { XCTFail("callback mode yields no messages") }
        XCTAssertEqual(received.withLockedValue { $0 }, (0..<500).map { "m\($0)" })

        let failing = try await client.openStream(path: "/test.Echo/Stream") { _ in }
        failing.send(Array("fail".utf8))
        let status = await expectStatus(.outOfRange) { for try await _ in failing.responses {} }
        XCTAssertEqual(status?.message, "asked to fail")
    }

    /// Every finished call releases its stream handlers (and with them the request headers and
    /// buffers): a retain cycle here leaked about 1 KiB per request in a long-running server.
    func testFinishedCallsReleaseTheirStreamHandlers() async throws {
        let serverBefore = ServerStreamHandler.liveCount.load(ordering: .relaxed)
        let clientBefore = ClientStreamHandler.liveCount.load(ordering: .relaxed)
        for i in 0..<200 {
            _ = try await client.unary(path: "/test.Echo/Echo", request: Array("r\(i)".utf8))
        }
        for _ in 0..<20 {
            _ = await expectStatus(.outOfRange) { _ = try await self.client.unary(path: "/test.Echo/Fail", request: []) }
            _ = await expectStatus(.deadlineExceeded) {
                _ = try await self.client.unary(path: "/test.Echo/Never", request: [], timeout: .milliseconds(1))
            }
            let stream = try await client.openStream(path: "/test.Echo/Stream")
            stream.send([1])
            stream.closeSend()
            for try await _ in stream.responses {}
        }
        let deadline = ContinuousClock.now + .seconds(10)
        var serverLive = 0, clientLive = 0
        repeat {
            serverLive = ServerStreamHandler.liveCount.load(ordering: .relaxed) - serverBefore
            clientLive = ClientStreamHandler.liveCount.load(ordering: .relaxed) - clientBefore
            if serverLive <= 0 && clientLive <= 0 { break }
            try await Task.sleep(for: .milliseconds(10))
        } while ContinuousClock.now < deadline
        XCTAssertLessThanOrEqual(serverLive, 0, "server stream handlers still alive after 260 finished calls")
        XCTAssertLessThanOrEqual(clientLive, 0, "client stream handlers still alive after 260 finished calls")
    }

    /// The store answers a whole group commit inside `GRPCResponder.batching` from its writer
    /// thread: every call, on any connection, still gets exactly its own answer.
    func testBatchedCompletionsFromAnotherThreadReachTheirOwnCalls() async throws {
        let second = try await GRPCClient.connect(host: "127.0.0.1", port: server.localAddresses[0].port!, group: group)
        defer { Task { await second.close() } }
        let calls = 300
        let futures = (0..<calls).map { i in
            (i % 2 == 0 ? client! : second).unary(path: "/test.Echo/Park", request: Array("p\(i)".utf8)) as EventLoopFuture<[UInt8]>
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while parked.withLockedValue({ $0.count }) < calls && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        let held = parked.withLockedValue { list in defer { list.removeAll() }; return list }
        XCTAssertEqual(held.count, calls)
        let answered = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            GRPCResponder.batching {
                for (request, responder) in held {
                    if request.last == UInt8(ascii: "7") {
                        responder.fail(GRPCStatus(.aborted, "no sevens"))
                    } else {
                        responder.succeed(request + [0x21])
                    }
                }
            }
            answered.signal()
        }
        answered.wait()
        for (i, future) in futures.enumerated() {
            let request = Array("p\(i)".utf8)
            if request.last == UInt8(ascii: "7") {
                _ = await expectStatus(.aborted) { _ = try await future.get() }
            } else {
                let response = try await future.get()
                XCTAssertEqual(response, request + [0x21])
            }
        }
    }

    /// A call answered later, from another thread and outside any read of its connection, with
    /// a status alone (trailers-only: one frame that also closes the stream) reaches its client.
    /// The stream closes inside the write of that frame; the flush after it must still go out.
    func testAFailureAnsweredLaterFromAnotherThreadReachesTheClient() async throws {
        let client = self.client!
        let parked = self.parked
        let finished = try await finishes(within: .seconds(20), orClose: client) {
            let call = client.unary(path: "/test.Echo/Park", request: [1]) as EventLoopFuture<[UInt8]>
            while parked.withLockedValue({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(5)) }
            let (_, responder) = parked.withLockedValue { $0.removeFirst() }
            Thread.detachNewThread { responder.fail(GRPCStatus(.permissionDenied, "later")) }
            do {
                _ = try await call.get()
                XCTFail("expected a status")
            } catch let status as GRPCStatus {
                XCTAssertEqual(status.code, .permissionDenied)
                XCTAssertEqual(status.message, "later")
            }
        }
        XCTAssertTrue(finished, "the status never reached the client")
    }

    func testShutdownLetsInFlightCallsFinish() async throws {
        let pending = client.unary(path: "/test.Echo/Slow", request: [9]) as EventLoopFuture<[UInt8]>
        // Wait until the server has the call (a Slow call takes 300 ms to answer).
        for await _ in slowCallArrivals { break }
        await server.shutdown(grace: .seconds(5))
        let response = try await pending.get()
        XCTAssertEqual(response, [9])
        server = nil
    }
}

/// Echoes every message; finishes OK when the client half-closes.
private final class EchoStream: GRPCStreamingCall {
    let sender: GRPCStreamSender
    init(sender: GRPCStreamSender) { self.sender = sender }
    func received(_ message: [UInt8]) {
        if message == Array("fail".utf8) { sender.finish(GRPCStatus(.outOfRange, "asked to fail")) } else { sender.send(message) }
    }
    func receivedEnd() { sender.finish(.ok) }
    func writabilityChanged(_ isWritable: Bool) {}
    func closed() {}
}
