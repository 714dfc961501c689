import EtcdAPI
import Dispatch
import GRPCWire
@testable import LatticeServer
@testable import LatticeStore
import Logging
import NIOCore
import NIOPosix
import ProtoWire
import Synchronization
import XCTest

/// Reads whose cost grows with the keyspace (ranges, Hash, HashKV, lease listings) run on the read pool: while
/// one waits for the store (here: the test holds its lock, as a long write or compaction would),
/// the event loop of its connection goes on serving every other call on it.
final class ReadPoolTests: XCTestCase {
    func testLongReadsDoNotHoldTheEventLoopOfTheirConnection() async throws {
        // One event loop for the server and the client: a blocked loop would block them all.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var configuration = ServerConfiguration()
        configuration.listenClientURLs = [try ServerURL(parsing: "http://127.0.0.1:0")]
        configuration.inMemory = true
        let server = try await LatticeServer.start(configuration, group: group, logger: Logger(label: "test"))
        let client = try await GRPCClient.connect(host: "127.0.0.1", port: server.clientAddresses[0].port!, group: group)
        var put = PutRequest()
        put.key = Array("k/1".utf8)
        put.value = Array("v".utf8)
        _ = try await client.unary(path: "/etcdserverpb.KV/Put", request: put.protoBytes())

        let store = server.store
        let held = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let holder = Thread { store.lock.withWriteLock { held.signal(); release.wait() } }
        holder.start()
        held.wait()
        var released = false
        func releaseLock() { if !released { released = true; release.signal() } }
        defer { releaseLock() }

        var range = RangeRequest()
        range.key = Array("k/".utf8)
        range.rangeEnd = Array("k0".utf8)
        // Written to the connection in this order: each read before the probe that follows it.
        let reads: [EventLoopFuture<[UInt8]>] = [
            client.unary(path: "/etcdserverpb.KV/Range", request: range.protoBytes()),
            client.unary(path: "/etcdserverpb.Maintenance/Hash", request: HashRequest().protoBytes()),
            client.unary(path: "/etcdserverpb.Maintenance/HashKV", request: HashKVRequest().protoBytes()),
            client.unary(path: "/etcdserverpb.Lease/LeaseLeases", request: LeaseLeasesRequest().protoBytes()),
        ]
        let readsDone = Atomic<Int>(0)
        for read in reads { read.whenComplete { _ in readsDone.add(1, ordering: .relaxed) } }
        for attempt in 0..<5 {
            // Answered by the transport (no store): only needs the event loop.
            let answered = Atomic<Bool>(false)
            let probe: EventLoopFuture<[UInt8]> = client.unary(path: "/etcdserverpb.KV/NoSuchMethod", request: [])
            probe.whenComplete { _ in
                answered.store(true, ordering: .releasing)
            }
            try await eventually("probe \(attempt) answered while the reads wait for the store", within: 5) {
                answered.load(ordering: .acquiring)
            }
        }
        XCTAssertEqual(readsDone.load(ordering: .relaxed), 0, "the reads wait for the store")
        releaseLock()
        let response = try RangeResponse(protoBytes: try await reads[0].get())
        XCTAssertEqual(response.kvs.map { String(decoding: $0.key, as: UTF8.self) }, ["k/1"])
        _ = try await reads[1].get()
        _ = try await reads[2].get()
        _ = try await reads[3].get()
        holder.cancel()
        await client.close()
        await server.shutdown()
        try await group.shutdownGracefully()
    }
}

