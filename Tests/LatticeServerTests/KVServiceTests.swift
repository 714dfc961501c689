import EtcdAPI
import GRPCWire
import LatticeServer
import Logging
import NIOCore
import NIOPosix
import ProtoWire
import XCTest

/// The KV service end to end over our gRPC client: wire format, limits, error codes and
/// messages exactly as etcd's.
final class KVServiceTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var server: LatticeServer!
    private var client: GRPCClient!

    override func setUp() async throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var configuration = ServerConfiguration()
        configuration.listenClientURLs = [try ServerURL(parsing: "http://127.0.0.1:0")]
        configuration.inMemory = true
        server = try await LatticeServer.start(configuration, group: group, logger: Logger(label: "test"))
        client = try await GRPCClient.connect(host: "127.0.0.1", port: server.clientAddresses[0].port!, group: group)
    }

    override func tearDown() async throws {
        await client?.close()
        await server?.shutdown()
        try await group.shutdownGracefully()
    }

    private func call<Request: ProtoMessage, Response: ProtoMessage>(
        _ method: String, _ request: Request, as: Response.Type = Response.self, gzip: Bool = false
    ) async throws -> Response {
        try Response(protoBytes: try await client.unary(path: "/etcdserverpb.KV/\(method)", request: request.protoBytes(), gzip: gzip))
    }

    func testHeadersCarryEtcdsDefaultMemberAndClusterIDs() async throws {
        let r: RangeResponse = try await call("Range", RangeRequest(key: Array("k".utf8)))
        XCTAssertEqual(r.header?.memberID, 0x8e9e05c52164694d)
        XCTAssertEqual(r.header?.clusterID, 0xcdf818194e3a8c32)
        XCTAssertEqual(r.header?.revision, 1)
        XCTAssertEqual(r.header?.raftTerm, 2)
    }

    func testPutThenRangeReturnsTheExactBytes() async throws {
        let value: [UInt8] = Array("k8s".utf8) + [0, 0xff, 0x80, 0x01]
        let put: PutResponse = try await call("Put", PutRequest(key: Array("/registry/pods/a".utf8), value: value))
        XCTAssertEqual(put.header?.revision, 2)
        let r: RangeResponse = try await call("Range", RangeRequest(key: Array("/registry/pods/a".utf8)))
        XCTAssertEqual(r.kvs.map(\.value), [value])
        XCTAssertEqual(r.kvs.first?.createRevision, 2)
    }

    func testGzipCompressedPutIsApplied() async throws {
        let value = [UInt8](repeating: 0x61, count: 100_000)
        _ = try await call("Put", PutRequest(key: Array("z".utf8), value: value), as: PutResponse.self, gzip: true)
        let r: RangeResponse = try await call("Range", RangeRequest(key: Array("z".utf8)), gzip: true)
        XCTAssertEqual(r.kvs.first?.value, value)
    }

    func testWriteOverMaxRequestBytesIsRequestTooLarge() async throws {
        // etcd: 1.5 MiB --max-request-bytes; 1.4 MiB passes, 1.6 MiB is InvalidArgument.
        _ = try await call("Put", PutRequest(key: Array("ok".utf8), value: [UInt8](repeating: 1, count: 1_400_000)), as: PutResponse.self)
        await expectStatus(.invalidArgument, "etcdserver: request is too large") {
            _ = try await self.call("Put", PutRequest(key: Array("big".utf8), value: [UInt8](repeating: 1, count: 1_600_000)), as: PutResponse.self)
        }
        let r: RangeResponse = try await call("Range", RangeRequest(key: Array("big".utf8)))
        XCTAssertTrue(r.kvs.isEmpty, "a rejected put must not be applied")
    }

    func testMessageOverTheGrpcLimitIsResourceExhausted() async {
        // --max-request-bytes + 512 KiB is the transport limit, as in etcd.
        let limit = 1_572_864 + 512 * 1024
        let request = PutRequest(key: Array("huge".utf8), value: [UInt8](repeating: 1, count: limit))
        await expectStatus(.resourceExhausted, "grpc: received message larger than max (\(request.protoSize) vs. \(limit))") {
            _ = try await self.call("Put", request, as: PutResponse.self)
        }
    }

    func testMalformedProtobufIsAnErrorNotACrash() async throws {
        for garbage: [UInt8] in [[0x0a, 0x05, 0x61], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], [0x0f]] {
            do {
                _ = try await client.unary(path: "/etcdserverpb.KV/Put", request: garbage)
                XCTFail("malformed request accepted")
            } catch let status as GRPCStatus {
                XCTAssertEqual(status.code, .internal)
                XCTAssertTrue(status.message.hasPrefix("grpc: error unmarshalling request"), status.message)
            }
        }
        let r: RangeResponse = try await call("Range", RangeRequest(key: [0], rangeEnd: [0]))
        XCTAssertEqual(r.header?.revision, 1, "no write happened")
    }

    func testErrorsCarryEtcdsCodesAndMessages() async {
        await expectStatus(.invalidArgument, "etcdserver: key is not provided") {
            _ = try await self.call("Put", PutRequest(key: [], value: [1]), as: PutResponse.self)
        }
        await expectStatus(.outOfRange, "etcdserver: mvcc: required revision is a future revision") {
            _ = try await self.call("Range", RangeRequest(key: Array("a".utf8), revision: 5), as: RangeResponse.self)
        }
        await expectStatus(.notFound, "etcdserver: requested lease not found") {
            _ = try await self.call("Put", PutRequest(key: Array("a".utf8), value: [1], lease: 42), as: PutResponse.self)
        }
        let ops = (0..<129).map { RequestOp(.put(PutRequest(key: Array("k\($0)".utf8), value: []))) }
        await expectStatus(.invalidArgument, "etcdserver: too many operations in txn request") {
            _ = try await self.call("Txn", TxnRequest(compare: [], success: ops), as: TxnResponse.self)
        }
    }

    func testKubeCreateTxnSucceedsOnceThenFailsWithoutResponses() async throws {
        let key = Array("/registry/pods/default/p".utf8)
        let create = TxnRequest(
            compare: [Compare(key: key, target: .mod, result: .equal, .modRevision(0))],
            success: [RequestOp(.put(PutRequest(key: key, value: Array("v".utf8))))])
        let first: TxnResponse = try await call("Txn", create)
        XCTAssertTrue(first.succeeded)
        guard case .put(let inner)? = first.responses.first?.response else { return XCTFail("no put response") }
        XCTAssertEqual(inner.header?.revision, first.header?.revision)
        let second: TxnResponse = try await call("Txn", create)
        XCTAssertFalse(second.succeeded)
        XCTAssertTrue(second.responses.isEmpty)
        XCTAssertEqual(second.header?.revision, first.header?.revision)
    }

    func testUnimplementedServicesAnswerUnimplemented() async {
        await expectStatus(.unimplemented, "unknown method NoSuchMethod for service etcdserverpb.Auth") {
            _ = try await self.client.unary(path: "/etcdserverpb.Auth/NoSuchMethod", request: [])
        }
    }

    func testConcurrentWritersOnOneConnectionGetDenseRevisions() async throws {
        let client = self.client!
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for i in 0..<500 {
                tasks.addTask {
                    _ = try await client.unary(path: "/etcdserverpb.KV/Put", request: PutRequest(key: Array("c\(i)".utf8), value: [1]).protoBytes())
                }
            }
            try await tasks.waitForAll()
        }
        let r: RangeResponse = try await call("Range", RangeRequest(key: Array("c".utf8), rangeEnd: Array("d".utf8)))
        XCTAssertEqual(r.count, 500)
        XCTAssertEqual(r.header?.revision, 501)
    }
}
