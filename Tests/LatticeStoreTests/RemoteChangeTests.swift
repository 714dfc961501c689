import EtcdAPI
import LatticeCore
import XCTest
@testable import LatticeStore

/// Changes from another member go through the store's one apply path: the replica decides what
/// readers see (JSON merge, add-wins, LWW), the store gives each visible change its own local
/// revision and watch events, and the outcome survives a restart.
final class RemoteChangeTests: XCTestCase {
    private func member(_ id: UInt64, dataDirectory: String? = nil) throws -> MVCCStore {
        var c = MVCCStore.Configuration(memberID: id, clusterID: 99)
        c.collectGarbage = false  // keep the change log: the test ships it to the other member
        c.dataDirectory = dataDirectory
        return try MVCCStore(configuration: c)
    }

    /// Delivers everything `from` has that `to` lacks.
    private func sync(_ from: MVCCStore, to: MVCCStore) throws {
        for change in from.changes(since: to.versionVector) ?? [] { try to.applyRemote(change) }
    }

    private func value(_ store: MVCCStore, _ key: String) throws -> String? {
        try store.range(RangeRequest(key: b(key))).kvs.first.map { String(decoding: $0.value, as: UTF8.self) }
    }

    func testRemotePutTakesTheNextLocalRevisionAndEmitsAnEvent() throws {
        let a = try member(1), bStore = try member(2)
        _ = try bStore.put(PutRequest(key: b("local"), value: b("x")))      // b is at revision 2
        _ = try a.put(PutRequest(key: b("/registry/pods/p"), value: b("{\"spec\":1}")))
        try sync(a, to: bStore)
        let r = try bStore.range(RangeRequest(key: b("/registry/pods/p")))
        XCTAssertEqual(r.kvs.first?.value, b("{\"spec\":1}"), "exact bytes")
        XCTAssertEqual(r.kvs.first?.modRevision, 3, "the receiving member's own numbering")
        guard case .events(let batches, _) = bStore.events(from: 3, maxRevisions: 10) else { return XCTFail() }
        XCTAssertEqual(batches.map(\.revision), [3])
        XCTAssertEqual(batches.first?.events.first?.type, .put)
    }

    func testConcurrentJSONFieldEditsOnTwoMembersBothSurvive() throws {
        let a = try member(1), bStore = try member(2)
        _ = try a.put(PutRequest(key: b("obj"), value: b("{\"labels\":{},\"spec\":{\"replicas\":1}}")))
        try sync(a, to: bStore)
        _ = try a.put(PutRequest(key: b("obj"), value: b("{\"labels\":{\"a\":\"1\"},\"spec\":{\"replicas\":1}}")))
        _ = try bStore.put(PutRequest(key: b("obj"), value: b("{\"labels\":{\"b\":\"2\"},\"spec\":{\"replicas\":1}}")))
        try sync(a, to: bStore)
        try sync(bStore, to: a)
        let merged = try value(a, "obj")
        XCTAssertEqual(merged, try value(bStore, "obj"))
        XCTAssertTrue(merged!.contains("\"a\":\"1\"") && merged!.contains("\"b\":\"2\""), merged!)
        XCTAssertEqual(a.replicatedStateHash, bStore.replicatedStateHash)
    }

    func testPutWinsOverAConcurrentDelete() throws {
        let a = try member(1), bStore = try member(2)
        _ = try a.put(PutRequest(key: b("k"), value: b("v1")))
        try sync(a, to: bStore)
        _ = try a.deleteRange(DeleteRangeRequest(key: b("k")))
        _ = try bStore.put(PutRequest(key: b("k"), value: b("v2")))
        try sync(a, to: bStore)
        try sync(bStore, to: a)
        XCTAssertEqual(try value(a, "k"), "v2")
        XCTAssertEqual(try value(bStore, "k"), "v2")
    }

    func testAChangeIsBufferedUntilItsDependencyArrivesAndDuplicatesAreIgnored() throws {
        let a = try member(1), bStore = try member(2)
        _ = try a.put(PutRequest(key: b("first"), value: b("1")))
        _ = try a.put(PutRequest(key: b("second"), value: b("2")))
        let changes = a.changes(since: VersionVector())!
        XCTAssertEqual(try bStore.applyRemote(changes[1]), [], "dependency missing: buffered, no revision")
        XCTAssertNil(try value(bStore, "second"))
        XCTAssertEqual(try bStore.applyRemote(changes[0]), [2, 3], "both applied, in causal order")
        XCTAssertEqual(try value(bStore, "second"), "2")
        XCTAssertEqual(try bStore.applyRemote(changes[0]), [], "duplicate ignored")
        XCTAssertEqual(bStore.currentRevision, 3)
    }

    func testMergedRemoteStateSurvivesARestart() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lattice-remote-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try member(1)
        var bStore: MVCCStore? = try member(2, dataDirectory: dir)
        _ = try a.put(PutRequest(key: b("obj"), value: b("{\"x\":1}")))
        try sync(a, to: bStore!)
        _ = try a.put(PutRequest(key: b("obj"), value: b("{\"x\":1,\"a\":true}")))
        _ = try bStore!.put(PutRequest(key: b("obj"), value: b("{\"x\":1,\"b\":true}")))
        try sync(a, to: bStore!)
        let before = try bStore!.range(RangeRequest(key: [0], rangeEnd: [0]))
        let hash = bStore!.replicatedStateHash
        bStore!.close()
        bStore = nil
        let reopened = try member(2, dataDirectory: dir)
        defer { reopened.close() }
        XCTAssertEqual(try reopened.range(RangeRequest(key: [0], rangeEnd: [0])).kvs, before.kvs)
        XCTAssertEqual(reopened.replicatedStateHash, hash)
        XCTAssertEqual(reopened.currentRevision, before.header?.revision)
    }
}
