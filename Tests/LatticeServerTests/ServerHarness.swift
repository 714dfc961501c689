import EtcdAPI
import GRPCWire
import LatticeCore
import LatticeServer
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ProtoWire
import XCTest

/// Polls `condition` until it holds; after `seconds`, fails the test and throws.
func eventually(_ what: String, within seconds: Double = 15, file: StaticString = #filePath, line: UInt = #line,
                _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    XCTFail("timed out: \(what)", file: file, line: line)
    throw CancellationError()
}

/// A Lattice server on a free loopback port with a manual clock, and a client for it.
final class ServerHarness: @unchecked Sendable {
    // @unchecked: set up once in `start`, read-only afterwards.
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let clock = ManualWallClock()
    private(set) var server: LatticeServer!
    private(set) var client: GRPCClient!

    func start(_ configure: (inout ServerConfiguration) -> Void = { _ in }) async throws {
        var configuration = ServerConfiguration()
        configuration.listenClientURLs = [try ServerURL(parsing: "http://127.0.0.1:0")]
        configuration.wallClock = clock
        configuration.inMemory = true
        // Lease expiry is driven by the tests through `store.expireLeases()`.
        configuration.leaseExpiryCheckInterval = .hours(1)
        configure(&configuration)
        server = try await LatticeServer.start(configuration, group: group, logger: Logger(label: "test"))
        client = try await connect()
    }

    func connect() async throws -> GRPCClient {
        try await GRPCClient.connect(host: "127.0.0.1", port: server.clientAddresses[0].port!, group: group)
    }

    func stop() async throws {
        await client?.close()
        await server?.shutdown()
        try await group.shutdownGracefully()
    }

    func call<Request: ProtoMessage, Response: ProtoMessage>(
        _ path: String, _ request: Request, as: Response.Type = Response.self
    ) async throws -> Response {
        try Response(protoBytes: try await client.unary(path: path, request: request.protoBytes()))
    }

    @discardableResult
    func put(_ key: String, _ value: String, lease: Int64 = 0) async throws -> PutResponse {
        try await call("/etcdserverpb.KV/Put", PutRequest(key: Array(key.utf8), value: Array(value.utf8), lease: lease))
    }

    func get(_ key: String, end: String? = nil, revision: Int64 = 0) async throws -> RangeResponse {
        try await call("/etcdserverpb.KV/Range", RangeRequest(key: Array(key.utf8), rangeEnd: end.map { Array($0.utf8) } ?? [], revision: revision))
    }

    @discardableResult
    func delete(_ key: String) async throws -> DeleteRangeResponse {
        try await call("/etcdserverpb.KV/DeleteRange", DeleteRangeRequest(key: Array(key.utf8)))
    }

    func txn(_ t: TxnRequest) async throws -> TxnResponse {
        try await call("/etcdserverpb.KV/Txn", t)
    }

    func grant(ttl: Int64, id: Int64 = 0) async throws -> LeaseGrantResponse {
        try await call("/etcdserverpb.Lease/LeaseGrant", LeaseGrantRequest(ttl: ttl, id: id))
    }

    func openWatch(metadata: [(String, String)] = []) async throws -> WatchClient {
        WatchClient(stream: try await client.openStream(path: "/etcdserverpb.Watch/Watch", metadata: metadata))
    }
}

/// The client side of one Watch stream: a pump task collects responses; `next` polls them
/// with a deadline.
final class WatchClient: Sendable {
    let stream: GRPCClientStream
    private let received = NIOLockedValueBox<[WatchResponse]>([])
    private let ended = NIOLockedValueBox<(any Error)?>(nil)
    private let pump: Task<Void, Never>

    init(stream: GRPCClientStream) {
        self.stream = stream
        let received = self.received
        let ended = self.ended
        pump = Task {
            do {
                for try await bytes in stream.responses {
                    let response = try WatchResponse(protoBytes: bytes)
                    received.withLockedValue { $0.append(response) }
                }
            } catch {
                ended.withLockedValue { $0 = error }
            }
        }
    }

    deinit { pump.cancel() }

    func send(_ request: WatchRequest) { stream.send(request.protoBytes()) }

    func create(_ key: String, end: String? = nil, start: Int64 = 0, prevKV: Bool = false, progressNotify: Bool = false,
                watchID: Int64 = 0, filters: [WatchCreateRequest.FilterType] = [], fragment: Bool = false) {
        var c = WatchCreateRequest()
        c.key = Array(key.utf8)
        c.rangeEnd = end.map { Array($0.utf8) } ?? []
        c.startRevision = start
        c.prevKV = prevKV
        c.progressNotify = progressNotify
        c.watchID = watchID
        c.filters = filters
        c.fragment = fragment
        send(WatchRequest(.createRequest(c)))
    }

    func cancel(_ id: Int64) {
        var c = WatchCancelRequest()
        c.watchID = id
        send(WatchRequest(.cancelRequest(c)))
    }

    func requestProgress() { send(WatchRequest(.progressRequest(WatchProgressRequest()))) }

    /// The next response; throws `WatchTimeout` if none arrives within `seconds`.
    func next(within seconds: Double = 5) async throws -> WatchResponse {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if let response = received.withLockedValue({ $0.isEmpty ? nil : $0.removeFirst() }) { return response }
            if let error = ended.withLockedValue({ $0 }) { throw error }
            try await Task.sleep(for: .milliseconds(2))
        }
        throw WatchTimeout()
    }

    /// Asserts that nothing arrives within `seconds` (used only where silence is the behaviour).
    func expectSilence(for seconds: Double) async throws -> WatchResponse? {
        do { return try await next(within: seconds) } catch is WatchTimeout { return nil }
    }

    /// Events until `count` have arrived, across responses (in order).
    func events(_ count: Int, within seconds: Double = 5) async throws -> [(watchID: Int64, revision: Int64, event: Event)] {
        var out: [(Int64, Int64, Event)] = []
        while out.count < count {
            let r = try await next(within: seconds)
            for e in r.events { out.append((r.watchID, r.header?.revision ?? 0, e)) }
        }
        return out
    }
}

struct WatchTimeout: Error {}
