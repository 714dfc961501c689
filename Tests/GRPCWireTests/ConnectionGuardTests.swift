@testable import GRPCWire
import Dispatch
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import Synchronization
import NIOPosix
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Hostile or dead clients at the connection level, with a raw HTTP/2 client over a plain
/// socket: ping floods get grpc-go's GOAWAY "too_many_pings", frame floods stop the server
/// reading and close the connection, and the server's SETTINGS carry its stream limit.
final class ConnectionGuardTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var server: GRPCServer!

    override func setUp() async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDown() async throws {
        await server?.shutdown(grace: .milliseconds(100))
        try await group.shutdownGracefully()
    }

    /// Calls of test.Big/Get served so far.
    final class Counter: Sendable {
        let value = Atomic<Int>(0)
    }
    private let bigCalls = Counter()
    /// Messages test.Flood/Stream has sent.
    private let floodSent = Counter()
    /// Calls of test.Park/Hold, never answered.
    private let parked = NIOLockedValueBox<[GRPCCallContext]>([])

    private func start(_ configure: (inout GRPCConnectionLimits) -> Void = { _ in }) async throws -> Int {
        var routes = GRPCRoutes()
        routes.add(service: "test.Echo", method: "Echo", .unary { request, _, responder in responder.succeed(request) })
        let parked = self.parked
        routes.add(service: "test.Park", method: "Hold", .unary { _, call, _ in parked.withLockedValue { $0.append(call) } })
        let bigCalls = self.bigCalls
        routes.add(service: "test.Big", method: "Get", .unary { _, _, responder in
            bigCalls.value.add(1, ordering: .relaxed)
            responder.succeed([UInt8](repeating: 7, count: 1 << 20))
        })
        // Like a long read: the response is produced on another thread, after admission.
        routes.add(service: "test.Big", method: "Later", .unary { _, call, responder in
            call.longWork.start { finished in
                DispatchQueue.global().async {
                    bigCalls.value.add(1, ordering: .relaxed)
                    responder.succeed([UInt8](repeating: 7, count: 1 << 20))
                    finished()
                }
            }
        })
        routes.add(service: "test.Stop", method: "Stream", .streaming { _, sender in StopAtFirst(sender: sender) })
        let floodSent = self.floodSent
        routes.add(service: "test.Flood", method: "Stream", .streaming { _, sender in FloodStream(sender: sender, sent: floodSent) })
        var limits = GRPCConnectionLimits()
        configure(&limits)
        server = try await GRPCServer.start(addresses: [("127.0.0.1", 0)], routes: routes, limits: limits, group: group)
        return server.localAddresses[0].port!
    }

    func testPingsTooCloseTogetherGetGoAwayTooManyPingsAndTheConnectionCloses() async throws {
        let port = try await start()
        let connection = try RawH2Connection(port: port)
        defer { connection.close() }
        connection.sendPreface()
        for i in 0..<4 { connection.send(RawH2Connection.ping(UInt64(i))) }
        let frames = connection.readUntilClosed(deadline: .now() + .seconds(10))
        XCTAssertTrue(frames.closed, "the server closes the connection")
        let goAway = try XCTUnwrap(frames.list.first { $0.type == 7 }, "a GOAWAY")
        XCTAssertEqual(goAway.payload.count >= 8 ? goAway.payload[4..<8].reduce(0) { $0 << 8 | UInt32($1) } : 0, 0x0b,
                       "ENHANCE_YOUR_CALM")
        XCTAssertEqual(String(decoding: goAway.payload.dropFirst(8), as: UTF8.self), "too_many_pings")
        XCTAssertEqual(frames.list.filter { $0.type == 6 && $0.flags & 1 == 1 }.count, 4, "every ping was answered first")
    }

    func testPingsFarEnoughApartAreAnswered() async throws {
        let port = try await start { $0.pingPolicy.minimumIntervalWithoutCalls = .zero }
        let connection = try RawH2Connection(port: port)
        defer { connection.close() }
        connection.sendPreface()
        for i in 0..<20 { connection.send(RawH2Connection.ping(UInt64(i))) }
        let acks = connection.read(until: { frames in frames.filter { $0.type == 6 && $0.flags & 1 == 1 }.count == 20 },
                                   deadline: .now() + .seconds(10))
        XCTAssertEqual(acks.list.filter { $0.type == 6 && $0.flags & 1 == 1 }.count, 20)
        XCTAssertFalse(acks.list.contains { $0.type == 7 }, "no GOAWAY")
        XCTAssertFalse(acks.closed)
    }

    /// Above the control-frame allowance the HTTP/2 layer answers GOAWAY(ENHANCE_YOUR_CALM);
    /// the server then stops reading and closes, however much more the client sends.
    func testAControlFrameFloodClosesTheConnection() async throws {
        let port = try await start {
            $0.pingPolicy.strikesAllowed = .max        // let the flood reach the frame limit
            $0.controlFramesPerSecondMax = 200
        }
        let connection = try RawH2Connection(port: port)
        defer { connection.close() }
        connection.sendPreface()
        var flood: [UInt8] = []
        for i in 0..<2_000 { flood += RawH2Connection.ping(UInt64(i)) }
        connection.send(flood)
        // Keep flooding while reading: the connection must still end.
        let frames = connection.readUntilClosed(deadline: .now() + .seconds(10)) { connection.send(flood) }
        XCTAssertTrue(frames.closed, "the server closed the connection")
        let goAway = try XCTUnwrap(frames.list.first { $0.type == 7 })
        XCTAssertEqual(goAway.payload[4..<8].reduce(0) { $0 << 8 | UInt32($1) }, 0x0b)
    }

    /// A client that stops answering (a half-open connection) is disconnected after the
    /// keepalive interval and timeout, which releases its calls.
    func testAClientThatDoesNotAnswerServerPingsIsDisconnected() async throws {
        let port = try await start { $0.keepalive = (.milliseconds(200), .milliseconds(200)) }
        let connection = try RawH2Connection(port: port)
        defer { connection.close() }
        connection.sendPreface()
        let frames = connection.readUntilClosed(deadline: .now() + .seconds(10))
        XCTAssertTrue(frames.closed)
        XCTAssertTrue(frames.list.contains { $0.type == 6 && $0.flags & 1 == 0 }, "the server pinged first")
    }

    func testAClientThatAnswersServerPingsStaysConnected() async throws {
        let port = try await start { $0.keepalive = (.milliseconds(100), .milliseconds(300)) }
        let connection = try RawH2Connection(port: port)
        defer { connection.close() }
        connection.sendPreface()
        var answered = 0
        let frames = connection.read(until: { _ in answered >= 5 }, deadline: .now() + .seconds(10)) {}
            onPing: { data in answered += 1; connection.send(RawH2Connection.frame(type: 6, flags: 1, stream: 0, payload: data)) }
        XCTAssertFalse(frames.closed)
        XCTAssertEqual(answered, 5, "the server kept pinging a live client")
    }

    /// A client that asks for 1 MiB responses and never reads them: the server stops serving
    /// its calls once the connection's budget of unread responses is used up, and serves them
    /// all once the client reads.
    func testAClientThatDoesNotReadIsHeldToItsResponseBudget() async throws {
        try await assertHeldToBudget(path: "/test.Big/Get")
    }

    /// The same for calls whose response is computed off the event loop after they were
    /// admitted (long reads): they start only while the client takes what it is sent.
    func testLongWorkStartsOnlyWhileTheClientReads() async throws {
        try await assertHeldToBudget(path: "/test.Big/Later")
    }

    private func assertHeldToBudget(path: String) async throws {
        let port = try await start { $0.connectionResponseBudgetBytes = 4 << 20 }
        let connection = try RawH2Connection(port: port)
        defer { connection.close() }
        connection.sendPreface(initialWindow: Int32.max)
        connection.send(RawH2Connection.frame(type: 8, flags: 0, stream: 0, payload: be32(UInt32(Int32.max) - 65535)))
        var requests: [UInt8] = []
        for i in 0..<100 { requests += connection.request(stream: UInt32(2 * i + 1), path: path) }
        connection.send(requests)
        let last = countOnceSettled(bigCalls, connection)
        XCTAssertGreaterThan(last, 0)
        XCTAssertLessThan(last, 20, "calls served while nothing was read (each holds 1 MiB)")
        // Now read: every call is served.
        let frames = connection.read(until: { frames in frames.filter { $0.type == 1 && $0.flags & 1 == 1 }.count >= 100 },
                                     deadline: .now() + .seconds(30), acknowledgeData: true)
        XCTAssertEqual(frames.list.filter { $0.type == 1 && $0.flags & 1 == 1 }.count, 100, "trailers of every call")
        XCTAssertEqual(bigCalls.value.load(ordering: .relaxed), 100)
    }

    /// The counter's value once it has stopped moving for a second (within 20 s), while
    /// `connection` reads nothing: the server gets every chance to send more than it should.
    private func countOnceSettled(_ counter: Counter, _ connection: RawH2Connection) -> Int {
        var last = -1
        var stableSince = NIODeadline.now()
        let deadline = NIODeadline.now() + .seconds(20)
        while NIODeadline.now() < deadline {
            let now = counter.value.load(ordering: .relaxed)
            if now != last { last = now; stableSince = .now() }
            if NIODeadline.now() - stableSince > .seconds(1) { break }
            _ = connection.read(until: { _ in true }, deadline: .now() + .milliseconds(50), readBytes: false)
        }
        return last
    }

    /// A streaming call that ends at its first message, with more messages and the client's
    /// END_STREAM in the same DATA frame: the trailers close the stream inside their own write,
    /// and the messages after the first are dropped, not read from a released call.
    func testACallEndedByItsFirstMessageIgnoresTheRestOfTheFrame() async throws {
        let port = try await start()
        let connection = try RawH2Connection(port: port)
        defer { connection.close() }
        connection.sendPreface()
        let messages: [UInt8] = [0, 0, 0, 0, 1, 7, 0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0]
        connection.send(connection.request(stream: 1, path: "/test.Stop/Stream", messages: messages))
        let frames = connection.read(until: { frames in frames.contains { $0.type == 1 && $0.flags & 1 == 1 } },
                                     deadline: .now() + .seconds(10))
        XCTAssertTrue(frames.list.contains { $0.type == 1 && $0.flags & 1 == 1 && $0.stream == 1 }, "the call's trailers")
        let client = try await GRPCClient.connect(host: "127.0.0.1", port: port, group: group)
        let echoed = try await client.unary(path: "/test.Echo/Echo", request: [1, 2, 3])
        XCTAssertEqual(echoed, [1, 2, 3], "the server still serves")
        await client.close()
    }

    /// A streaming call whose client takes no more on its stream (its HTTP/2 window is used up)
    /// sees the stream not writable once about 1 MiB waits (the stream's mark), though the
    /// connection has room, and resumes when the client reads: a slow watcher holds back its
    /// own stream, not the server's memory.
    func testAStreamWhoseClientTakesNoMoreStopsBeingWritable() async throws {
        let port = try await start()
        let connection = try RawH2Connection(port: port)
        defer { connection.close() }
        connection.sendPreface()
        connection.send(RawH2Connection.frame(type: 8, flags: 0, stream: 0, payload: be32(UInt32(Int32.max) - 65535)))
        connection.send(connection.request(stream: 1, path: "/test.Flood/Stream"))
        let last = countOnceSettled(floodSent, connection)
        XCTAssertGreaterThan(last, 0)
        XCTAssertLessThan(last, 100, "messages of 16 KiB sent while the stream took none")
        let frames = connection.read(until: { frames in frames.contains { $0.type == 1 && $0.flags & 1 == 1 } },
                                     deadline: .now() + .seconds(30), acknowledgeData: true)
        XCTAssertTrue(frames.list.contains { $0.type == 1 && $0.flags & 1 == 1 }, "the call's trailers")
        XCTAssertEqual(floodSent.value.load(ordering: .relaxed), FloodStream.total)
    }

    /// A response over the send limit ends the call with RESOURCE_EXHAUSTED and grpc-go's text
    /// (at 2³¹−1 bytes by default; lowered here), never a trap in the 32-bit length prefix.
    func testAResponseOverTheSendLimitIsResourceExhausted() async throws {
        let port = try await start { $0.maxSendMessageBytes = 1000 }
        let client = try await GRPCClient.connect(host: "127.0.0.1", port: port, group: group)
        do {
            _ = try await client.unary(path: "/test.Big/Get", request: [])
            XCTFail("expected RESOURCE_EXHAUSTED")
        } catch let status as GRPCStatus {
            XCTAssertEqual(status.code, .resourceExhausted)
            XCTAssertEqual(status.message, "grpc: trying to send message larger than max (1048576 vs. 1000)")
        }
        let echoed = try await client.unary(path: "/test.Echo/Echo", request: [1, 2, 3])
        XCTAssertEqual(echoed, [1, 2, 3])
        await client.close()
    }

    /// A call the client resets is marked cancelled, so work it queued can be dropped.
    func testAResetCallIsMarkedCancelled() async throws {
        let port = try await start()
        let connection = try RawH2Connection(port: port)
        defer { connection.close() }
        connection.sendPreface()
        connection.send(connection.request(stream: 1, path: "/test.Park/Hold") + connection.request(stream: 3, path: "/test.Park/Hold"))
        try await eventuallyTrue("both calls parked") { self.parked.withLockedValue { $0.count } == 2 }
        XCTAssertFalse(parked.withLockedValue { $0.contains { $0.cancellation.isCancelled } })
        connection.send(RawH2Connection.frame(type: 3, flags: 0, stream: 1, payload: be32(8)))   // RST_STREAM(CANCEL)
        try await eventuallyTrue("the reset call marked cancelled") {
            self.parked.withLockedValue { calls in calls.filter { $0.cancellation.isCancelled }.count == 1 }
        }
    }

    private func eventuallyTrue(_ what: String, within seconds: Double = 10, _ condition: @escaping () -> Bool) async throws {
        let deadline = NIODeadline.now() + .milliseconds(Int64(seconds * 1000))
        while NIODeadline.now() < deadline {
            if condition() { return }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        XCTFail("timed out waiting for \(what)")
    }

    /// Streams that each leave a large message unfinished: once the connection holds more than
    /// its request budget, the stream that went over ends with RESOURCE_EXHAUSTED (the others
    /// keep going), and what a reset stream held is given back.
    func testUnfinishedRequestMessagesAreHeldToTheConnectionsRequestBudget() async throws {
        let port = try await start { $0.connectionRequestBudgetBytes = 100_000 }
        let connection = try RawH2Connection(port: port)
        defer { connection.close() }
        connection.sendPreface()
        let claimed = 40_000
        func partial(_ stream: UInt32) -> [UInt8] {
            // HEADERS without END_STREAM, then 30,000 of the 40,000 claimed bytes.
            let open = connection.request(stream: stream, path: "/test.Echo/Echo")
            let headers = Array(open[0..<(open.count - 14)])
            let body = [0] + be32(UInt32(claimed)) + [UInt8](repeating: 9, count: 30_000 - 5)
            return headers + RawH2Connection.frame(type: 0, flags: 0, stream: stream, payload: Array(body[0..<15_000]))
                + RawH2Connection.frame(type: 0, flags: 0, stream: stream, payload: Array(body[15_000...]))
        }
        // Header blocks decoded in arrival order (HPACK's table depends on it).
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
        var frames: [RawH2Connection.Frame] = []
        var endings: [UInt32: String] = [:]
        func status(_ stream: UInt32) -> String? { endings[stream] }
        func readMore(until done: @escaping ([RawH2Connection.Frame]) -> Bool) {
            let before = frames
            let more = connection.read(until: { done(before + $0) }, deadline: .now() + .seconds(10))
            for frame in more.list where frame.type == 1 {
                var buffer = ByteBuffer(bytes: frame.payload)
                let headers = try? decoder.decodeHeaders(from: &buffer)
                if frame.flags & 1 == 1 { endings[frame.stream] = headers?.first(name: "grpc-status") ?? "?" }
            }
            frames += more.list
        }
        // The server widens its connection window after the first bytes: wait for that.
        connection.send(partial(1))
        readMore { $0.contains { $0.type == 8 && $0.stream == 0 } }
        connection.send(partial(3) + partial(5))
        connection.send(connection.request(stream: 7, path: "/test.Echo/Echo"))
        readMore { $0.contains { $0.stream == 7 && $0.type == 1 && $0.flags & 1 == 1 } }
        XCTAssertEqual(status(7), "0", "a complete call is served beside 90 KB of unfinished ones")
        connection.send(partial(9))
        readMore { $0.contains { $0.stream == 9 && $0.type == 1 && $0.flags & 1 == 1 } }
        XCTAssertEqual(status(9), "8", "the stream taking the connection over 100 KB: RESOURCE_EXHAUSTED")
        for stream: UInt32 in [1, 3, 5] {
            XCTAssertNil(status(stream), "stream \(stream) goes on")
        }
        // Resetting stream 1 gives its 30 KB back: a new unfinished message fits and completes.
        connection.send(RawH2Connection.frame(type: 3, flags: 0, stream: 1, payload: be32(8)) + partial(11))
        connection.send(RawH2Connection.frame(type: 0, flags: 1, stream: 11, payload: [UInt8](repeating: 9, count: claimed + 5 - 30_000)))
        readMore { $0.contains { $0.stream == 11 && $0.type == 1 && $0.flags & 1 == 1 } }
        XCTAssertEqual(status(11), "0")
        let echoed = frames.filter { $0.stream == 11 && $0.type == 0 }.reduce(0) { $0 + $1.payload.count }
        XCTAssertEqual(echoed, claimed + 5, "the whole message echoed")
    }

    func testTheServerAdvertisesItsStreamLimit() async throws {
        let port = try await start { $0.maxConcurrentStreams = 7 }
        let connection = try RawH2Connection(port: port)
        defer { connection.close() }
        connection.sendPreface()
        let frames = connection.read(until: { $0.contains { $0.type == 4 && $0.flags & 1 == 0 } }, deadline: .now() + .seconds(10))
        let settings = try XCTUnwrap(frames.list.first { $0.type == 4 && $0.flags & 1 == 0 })
        var values: [UInt16: UInt32] = [:]
        var i = 0
        while i + 6 <= settings.payload.count {
            let id = UInt16(settings.payload[i]) << 8 | UInt16(settings.payload[i + 1])
            values[id] = settings.payload[(i + 2)..<(i + 6)].reduce(0) { $0 << 8 | UInt32($1) }
            i += 6
        }
        XCTAssertEqual(values[3], 7, "SETTINGS_MAX_CONCURRENT_STREAMS")
    }
}

/// A blocking HTTP/2 client on a plain socket that sends raw frames and parses what comes back.
/// Ends the call OK at its first message.
private final class StopAtFirst: GRPCStreamingCall {
    let sender: GRPCStreamSender
    init(sender: GRPCStreamSender) { self.sender = sender }
    func received(_ message: [UInt8]) { sender.finish() }
    func receivedEnd() {}
    func writabilityChanged(_ isWritable: Bool) {}
    func closed() {}
}

/// Sends 16 KiB messages while its stream is writable, `total` in all, then finishes.
private final class FloodStream: GRPCStreamingCall {
    static let total = 300
    let sender: GRPCStreamSender
    let sent: ConnectionGuardTests.Counter
    private var started = false
    init(sender: GRPCStreamSender, sent: ConnectionGuardTests.Counter) {
        self.sender = sender
        self.sent = sent
    }
    func received(_ message: [UInt8]) {
        guard !started else { return }
        started = true
        pump()
    }
    private func pump() {
        while sender.isWritable && sent.value.load(ordering: .relaxed) < Self.total {
            sender.send([UInt8](repeating: 5, count: 16 * 1024))
            if sent.value.add(1, ordering: .relaxed).newValue == Self.total { sender.finish() }
        }
    }
    func receivedEnd() {}
    func writabilityChanged(_ isWritable: Bool) { if isWritable { pump() } }
    func closed() {}
}

final class RawH2Connection {
    struct Frame {
        var type: UInt8
        var flags: UInt8
        var stream: UInt32
        var payload: [UInt8]
    }

    private let fd: Int32
    private var buffer: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw POSIXError(.ECONNREFUSED) }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    func close() { _ = Glibc.close(fd) }

    func sendPreface(initialWindow: Int32? = nil) {
        let settings = initialWindow.map { [0, 4] + be32(UInt32($0)) } ?? []
        send(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + Self.frame(type: 4, flags: 0, stream: 0, payload: settings))
    }

    /// HEADERS (literal fields, no Huffman) and one DATA frame ending the stream: `messages`
    /// (framed gRPC messages), one empty message by default.
    func request(stream: UInt32, path: String, messages: [UInt8] = [0, 0, 0, 0, 0]) -> [UInt8] {
        var block: [UInt8] = []
        for (name, value) in [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
                              ("content-type", "application/grpc"), ("te", "trailers")] {
            block += [0, UInt8(name.utf8.count)] + Array(name.utf8) + [UInt8(value.utf8.count)] + Array(value.utf8)
        }
        return Self.frame(type: 1, flags: 4, stream: stream, payload: block)
            + Self.frame(type: 0, flags: 1, stream: stream, payload: messages)
    }

    /// Sends without failing the test when the server has closed (a flood meets a closed socket).
    func send(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    static func frame(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8]) -> [UInt8] {
        let n = payload.count
        return [UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), type, flags,
                UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)] + payload
    }

    static func ping(_ data: UInt64) -> [UInt8] {
        frame(type: 6, flags: 0, stream: 0, payload: withUnsafeBytes(of: data.bigEndian) { Array($0) })
    }

    /// Reads frames until `done` holds for them, the server closes, or the deadline passes.
    func read(until done: ([Frame]) -> Bool, deadline: NIODeadline, readBytes: Bool = true, acknowledgeData: Bool = false,
              between: () -> Void = {}, onPing: ([UInt8]) -> Void = { _ in }) -> (list: [Frame], closed: Bool) {
        var frames: [Frame] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        guard readBytes else {
            while NIODeadline.now() < deadline { usleep(10_000) }
            return (frames, false)
        }
        while NIODeadline.now() < deadline && !done(frames) {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                return (frames, true)
            }
            if n > 0 { buffer += chunk[0..<n] }
            while buffer.count >= 9 {
                let length = Int(buffer[0]) << 16 | Int(buffer[1]) << 8 | Int(buffer[2])
                guard buffer.count >= 9 + length else { break }
                let stream = buffer[5..<9].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7fff_ffff
                let frame = Frame(type: buffer[3], flags: buffer[4], stream: stream, payload: Array(buffer[9..<(9 + length)]))
                frames.append(frame)
                if frame.type == 6 && frame.flags & 1 == 0 { onPing(frame.payload) }
                if acknowledgeData && frame.type == 0 && !frame.payload.isEmpty {
                    let credit = be32(UInt32(frame.payload.count))
                    send(Self.frame(type: 8, flags: 0, stream: 0, payload: credit)
                         + Self.frame(type: 8, flags: 0, stream: frame.stream, payload: credit))
                }
                buffer.removeFirst(9 + length)
            }
            between()
        }
        return (frames, false)
    }

    func readUntilClosed(deadline: NIODeadline, between: () -> Void = {}) -> (list: [Frame], closed: Bool) {
        read(until: { _ in false }, deadline: deadline, between: between)
    }
}

func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
