import XCTest
import EtcdAPI
import LatticeStore

/// The global revision counter and the per-key create_revision / mod_revision / version fields
/// (usage doc §3.2, §3.3).
final class RevisionTests: XCTestCase {
    func testFreshStoreReportsRevisionOne() throws {
        let store = makeStore()
        let response = try store.range(RangeRequest(key: b("/registry/health")))
        XCTAssertEqual(response.header?.revision, 1)
        XCTAssertEqual(response.kvs, [])
        XCTAssertEqual(response.count, 0)
        XCTAssertFalse(response.more)
        XCTAssertEqual(store.currentRevision, 1)
    }

    func testResponseHeaderCarriesClusterMemberAndRaftTerm() throws {
        let store = makeStore()
        let put = try store.put(PutRequest(key: b("a"), value: b("1")))
        let range = try store.range(RangeRequest(key: b("a")))
        for header in [put.header, range.header] {
            XCTAssertEqual(header?.clusterID, 2)
            XCTAssertEqual(header?.memberID, 1)
            XCTAssertEqual(header?.raftTerm, MVCCStore.raftTerm)
        }
    }

    func testFirstPutGetsRevisionTwo() throws {
        let store = makeStore()
        XCTAssertEqual(try store.put("a", "1"), 2)
        XCTAssertEqual(store.currentRevision, 2)
        XCTAssertEqual(try store.range(RangeRequest(key: b("zzz"))).header?.revision, 2)
    }

    func testEveryPutBumpsRevisionByExactlyOne() throws {
        let store = makeStore()
        for i in 0..<20 {
            XCTAssertEqual(try store.put("k\(i % 3)", "\(i)"), Int64(2 + i))
        }
    }

    func testCreateUpdateDeleteRecreateTrackCreateModAndVersion() throws {
        let store = makeStore()
        try store.put("a", "v1")                                   // 2
        var kv = try XCTUnwrap(store.get("a"))
        XCTAssertEqual([kv.createRevision, kv.modRevision, kv.version], [2, 2, 1])

        try store.put("a", "v2")                                   // 3
        kv = try XCTUnwrap(store.get("a"))
        XCTAssertEqual([kv.createRevision, kv.modRevision, kv.version], [2, 3, 2])
        XCTAssertEqual(kv.valueString, "v2")

        try store.put("other", "x")                                // 4: a untouched
        kv = try XCTUnwrap(store.get("a"))
        XCTAssertEqual([kv.createRevision, kv.modRevision, kv.version], [2, 3, 2])

        let deleted = try store.delete("a")                        // 5
        XCTAssertEqual(deleted.deleted, 1)
        XCTAssertEqual(deleted.header?.revision, 5)
        XCTAssertNil(try store.get("a"))

        try store.put("a", "v3")                                   // 6: a new lifetime
        kv = try XCTUnwrap(store.get("a"))
        XCTAssertEqual([kv.createRevision, kv.modRevision, kv.version], [6, 6, 1])
        XCTAssertEqual(kv.lease, 0)
    }

    func testPutOfIdenticalValueStillWritesANewVersion() throws {
        let store = makeStore()
        try store.put("a", "same")
        XCTAssertEqual(try store.put("a", "same"), 3)
        let kv = try XCTUnwrap(store.get("a"))
        XCTAssertEqual([kv.createRevision, kv.modRevision, kv.version], [2, 3, 2])
    }

    func testDeleteOfMissingKeyDoesNotBumpRevision() throws {
        let store = makeStore()
        try store.put("a", "1")
        let response = try store.delete("missing")
        XCTAssertEqual(response.deleted, 0)
        XCTAssertEqual(response.header?.revision, 2)
        XCTAssertEqual(store.currentRevision, 2)
        XCTAssertEqual(try store.put("b", "1"), 3, "the next write gets exactly +1")
    }

    func testDeleteOfEmptyRangeDoesNotBumpRevision() throws {
        let store = makeStore()
        try store.put("a", "1")
        let response = try store.delete("p/", rangeEnd: prefixEnd("p/"))
        XCTAssertEqual(response.deleted, 0)
        XCTAssertEqual(response.header?.revision, 2)
        XCTAssertEqual(store.currentRevision, 2)
    }

    func testDeleteOfAlreadyDeletedKeyDoesNotBumpRevision() throws {
        let store = makeStore()
        try store.put("a", "1")
        try store.delete("a")
        XCTAssertEqual(try store.delete("a").deleted, 0)
        XCTAssertEqual(store.currentRevision, 3)
    }

    func testReadOnlyTxnDoesNotBumpRevision() throws {
        let store = makeStore()
        try store.put("a", "1")
        let response = try store.txn(TxnRequest(compare: [.version("a", .equal, 1)],
                                                 success: [.range("a"), .range("b")],
                                                 failure: [.put("a", "x")]))
        XCTAssertTrue(response.succeeded)
        XCTAssertEqual(response.header?.revision, 2)
        XCTAssertEqual(store.currentRevision, 2)
    }

    func testTxnWhoseTakenBranchOnlyReadsDoesNotBumpRevision() throws {
        let store = makeStore()
        try store.put("a", "1")
        let response = try store.txn(TxnRequest(compare: [.mod("a", .equal, 99)],
                                                 success: [.put("a", "2")],
                                                 failure: [.range("a")]))
        XCTAssertFalse(response.succeeded)
        XCTAssertEqual(response.header?.revision, 2)
        XCTAssertEqual(try store.put("b", "1"), 3)
    }

    func testTxnThatOnlyDeletesMissingKeysDoesNotBumpRevision() throws {
        let store = makeStore()
        try store.put("a", "1")
        let response = try store.txn(TxnRequest(compare: [], success: [.delete("x"), .delete("y", rangeEnd: b("z"))]))
        XCTAssertEqual(response.header?.revision, 2)
        XCTAssertEqual(response.responses.map { $0.deleteRange?.deleted }, [0, 0])
        XCTAssertEqual(store.currentRevision, 2)
    }

    func testTxnWithSeveralWritesUsesOneRevision() throws {
        let store = makeStore()
        try store.put("old", "1")                                  // 2
        let response = try store.txn(TxnRequest(compare: [], success: [
            .put("a", "1"), .put("b", "2"), .put("c", "3"), .delete("old"),
        ]))
        XCTAssertEqual(response.header?.revision, 3)
        XCTAssertEqual(store.currentRevision, 3)
        let kvs = try store.range(RangeRequest(key: fromKey, rangeEnd: fromKey)).kvs
        XCTAssertEqual(kvs.map(\.keyString), ["a", "b", "c"])
        XCTAssertEqual(Set(kvs.map(\.modRevision)), [3])
        XCTAssertEqual(Set(kvs.map(\.createRevision)), [3])
        XCTAssertEqual(try store.get("old", revision: 2)?.valueString, "1", "deleted at 3, so still visible at 2")
        XCTAssertEqual(try store.put("d", "4"), 4)
    }

    func testCompactionDoesNotBumpRevision() throws {
        let store = makeStore()
        try store.put("a", "1")
        try store.put("a", "2")
        let response = try store.compact(CompactionRequest(revision: 2))
        XCTAssertEqual(response.header?.revision, 3)
        XCTAssertEqual(store.currentRevision, 3)
        XCTAssertEqual(try store.put("a", "3"), 4)
    }

    func testFailedWritesDoNotBumpRevision() throws {
        let store = makeStore()
        try store.put("a", "1")
        assertThrows(.emptyKey) { try store.put(PutRequest(key: [], value: b("x"))) }
        assertThrows(.leaseNotFound) { try store.put(PutRequest(key: b("a"), value: b("x"), lease: 5)) }
        assertThrows(.tooManyOps) {
            _ = try store.txn(TxnRequest(compare: [], success: (0..<129).map { .put("k\($0)", "v") }))
        }
        XCTAssertEqual(store.currentRevision, 2)
        XCTAssertEqual(try store.put("b", "1"), 3)
    }
}
