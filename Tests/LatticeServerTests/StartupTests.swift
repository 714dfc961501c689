import EtcdAPI
import GRPCWire
import LatticeServer
import LatticeTestSupport
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

/// The client ports during a member's start: bound before the data directory opens, as etcd
/// binds them before it loads its data.
final class StartupTests: XCTestCase {
    private let directories = TemporaryDirectories(prefix: "lattice-startup")
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)

    override func tearDown() async throws {
        try await group.shutdownGracefully()
        directories.removeAll()
    }

    private func configuration(dataDir: String) throws -> ServerConfiguration {
        var c = ServerConfiguration()
        c.listenClientURLs = [try ServerURL(parsing: "http://127.0.0.1:0")]
        c.dataDir = dataDir
        return c
    }

    /// A client that connects while the member is still opening its data is answered from that
    /// data once the member serves, instead of being refused (and left to back off).
    func testAClientConnectingWhileTheDataOpensIsAnsweredOnceTheMemberServes() async throws {
        let dir = directories.make()
        var c = try configuration(dataDir: dir)
        let first = try await LatticeServer.start(c, group: group, logger: Logger(label: "test"))
        let client = try await GRPCClient.connect(host: "127.0.0.1", port: first.clientAddresses[0].port!, group: group)
        _ = try await client.unary(path: "/etcdserverpb.KV/Put", request: PutRequest(key: Array("k".utf8), value: Array("v".utf8)).protoBytes()).get()
        await client.close()
        await first.shutdown()

        let early = NIOLockedValueBox<(client: GRPCClient, answer: EventLoopFuture<[UInt8]>)?>(nil)
        let group = self.group
        c.clientPortsBound = { addresses in
            // The data directory is not open yet: the connection completes (the kernel queues
            // it) and the call waits.
            guard let client = try? await GRPCClient.connect(host: "127.0.0.1", port: addresses[0].port!, group: group) else { return }
            let answer: EventLoopFuture<[UInt8]> = client.unary(path: "/etcdserverpb.KV/Range", request: RangeRequest(key: Array("k".utf8)).protoBytes())
            early.withLockedValue { $0 = (client, answer) }
        }
        let second = try await LatticeServer.start(c, group: group, logger: Logger(label: "test"))
        guard let (earlyClient, answer) = early.withLockedValue({ $0 }) else {
            await second.shutdown()
            return XCTFail("a client could not connect while the member opened its data directory")
        }
        let response = try RangeResponse(protoBytes: try await answer.get())
        XCTAssertEqual(response.kvs.map { String(decoding: $0.value, as: UTF8.self) }, ["v"])
        await earlyClient.close()
        await second.shutdown()
    }

    /// A start that fails after the ports were bound lets them go: the same port binds again.
    func testAFailedStartReleasesTheClientPorts() async throws {
        let notADirectory = directories.make()
        XCTAssertTrue(FileManager.default.createFile(atPath: notADirectory, contents: Data("x".utf8)))
        var c = try configuration(dataDir: notADirectory)
        let port = NIOLockedValueBox<Int?>(nil)
        c.clientPortsBound = { addresses in port.withLockedValue { $0 = addresses[0].port } }
        do {
            _ = try await LatticeServer.start(c, group: group, logger: Logger(label: "test"))
            XCTFail("a data directory that is a file opened")
        } catch {}
        let bound = try XCTUnwrap(port.withLockedValue { $0 })
        let again = try await GRPCListeners.bind(addresses: [("127.0.0.1", bound)], group: group)
        XCTAssertEqual(again.localAddresses.first?.port, bound)
        await again.close()
    }
}
