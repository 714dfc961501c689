import XCTest
import EtcdAPI
import LatticeStore

/// Compaction (usage doc §3.6; mvcc store.updateCompactRev, keyIndex.compact).
final class CompactionTests: XCTestCase {
    func testRangeAtCompactRevisionWorksAndBelowFails() throws {
        // Checklist 24.
        let store = makeStore()
        for i in 1...5 { try store.put("k", "v\(i)") }             // 2...6
        _ = try store.compact(CompactionRequest(revision: 4))
        XCTAssertEqual(store.compactRevision, 4)
        XCTAssertEqual(try store.get("k", revision: 4)?.valueString, "v3")
        XCTAssertEqual(try store.get("k", revision: 5)?.valueString, "v4")
        XCTAssertEqual(try store.get("k")?.valueString, "v5")
        assertThrows(.compacted) { try store.range(RangeRequest(key: b("k"), revision: 3)) }
        assertThrows(.compacted) { try store.range(RangeRequest(key: b("k"), revision: 1)) }
        XCTAssertEqual(EtcdError.compacted.code, .outOfRange)
        XCTAssertEqual(EtcdError.compacted.message, "etcdserver: mvcc: required revision has been compacted")
    }

    func testCompactResponseReportsCurrentRevision() throws {
        let store = makeStore()
        try store.put("a", "1")
        try store.put("a", "2")
        try store.put("a", "3")
        let response = try store.compact(CompactionRequest(revision: 3))
        XCTAssertEqual(response.header?.revision, 4)
        XCTAssertEqual(response.header?.clusterID, 2)
        XCTAssertEqual(store.currentRevision, 4)
    }

    func testCompactingTwiceAtTheSameOrAnOlderRevisionFails() throws {
        // Checklist 25.
        let store = makeStore()
        for i in 1...5 { try store.put("k", "v\(i)") }
        _ = try store.compact(CompactionRequest(revision: 4))
        assertThrows(.compacted) { try store.compact(CompactionRequest(revision: 4)) }
        assertThrows(.compacted) { try store.compact(CompactionRequest(revision: 2)) }
        XCTAssertEqual(store.compactRevision, 4)
        XCTAssertNoThrow(try store.compact(CompactionRequest(revision: 5)))
        XCTAssertEqual(store.compactRevision, 5)
    }

    func testCompactingBeyondTheCurrentRevisionFails() throws {
        let store = makeStore()
        try store.put("a", "1")                                    // 2
        assertThrows(.futureRevision) { try store.compact(CompactionRequest(revision: 3)) }
        XCTAssertEqual(store.compactRevision, -1)
        XCTAssertNoThrow(try store.compact(CompactionRequest(revision: 2)), "the current revision itself can be compacted")
        XCTAssertEqual(try store.get("a")?.valueString, "1")
    }

    func testLatestValueOfEveryKeyIsStillReadableAfterCompaction() throws {
        let store = makeStore()
        for round in 1...3 {
            for key in ["a", "b", "c"] { try store.put(key, "\(key)\(round)") }
        }                                                          // 2...10
        _ = try store.compact(CompactionRequest(revision: 10))
        let kvs = try store.range(RangeRequest(key: [0], rangeEnd: [0])).kvs
        XCTAssertEqual(kvs.map(\.valueString), ["a3", "b3", "c3"])
        XCTAssertEqual(kvs.map(\.version), [3, 3, 3], "versions survive compaction")
        XCTAssertEqual(kvs.map(\.createRevision), [2, 3, 4], "create revisions survive compaction")
    }

    func testUnchangedKeyWrittenLongBeforeCompactionIsStillReadableAtCompactRevision() throws {
        let store = makeStore()
        try store.put("old", "o")                                  // 2
        for i in 1...5 { try store.put("hot", "\(i)") }            // 3...7
        _ = try store.compact(CompactionRequest(revision: 6))
        XCTAssertEqual(try store.get("old", revision: 6)?.valueString, "o")
        XCTAssertEqual(try store.get("old", revision: 6)?.modRevision, 2)
        XCTAssertEqual(try store.get("hot", revision: 6)?.valueString, "4")
    }

    func testKeysDeletedBeforeTheCompactRevisionAreGone() throws {
        let store = makeStore()
        try store.put("gone", "1")                                 // 2
        try store.put("stay", "1")                                 // 3
        try store.delete("gone")                                   // 4
        try store.put("stay", "2")                                 // 5
        _ = try store.compact(CompactionRequest(revision: 4))
        XCTAssertNil(try store.get("gone", revision: 4))
        XCTAssertNil(try store.get("gone"))
        var countAll = RangeRequest(key: [0], rangeEnd: [0], revision: 4)
        countAll.countOnly = true
        XCTAssertEqual(try store.range(countAll).count, 1)
        XCTAssertEqual(try store.keys(RangeRequest(key: [0], rangeEnd: [0], revision: 4)), ["stay"])
        XCTAssertEqual(try store.get("stay", revision: 4)?.valueString, "1")
    }

    func testKeyDeletedAfterTheCompactRevisionIsStillVisibleAtIt() throws {
        let store = makeStore()
        try store.put("k", "1")                                    // 2
        try store.put("x", "1")                                    // 3
        try store.delete("k")                                      // 4
        _ = try store.compact(CompactionRequest(revision: 3))
        XCTAssertEqual(try store.get("k", revision: 3)?.valueString, "1")
        XCTAssertNil(try store.get("k", revision: 4))
        XCTAssertNil(try store.get("k"))
    }

    func testRecreatedKeyStartsANewLifetimeAfterCompaction() throws {
        let store = makeStore()
        try store.put("k", "1")                                    // 2
        try store.delete("k")                                      // 3
        try store.put("x", "1")                                    // 4
        _ = try store.compact(CompactionRequest(revision: 4))
        try store.put("k", "2")                                    // 5
        let kv = try XCTUnwrap(store.get("k"))
        XCTAssertEqual([kv.createRevision, kv.modRevision, kv.version], [5, 5, 1])
        XCTAssertNil(try store.get("k", revision: 4))
    }

    func testCompactionAtTheDeleteRevisionDropsTheKey() throws {
        let store = makeStore()
        try store.put("k", "1")                                    // 2
        try store.delete("k")                                      // 3
        _ = try store.compact(CompactionRequest(revision: 3))
        XCTAssertNil(try store.get("k", revision: 3))
        XCTAssertEqual(try store.put("k", "2"), 4)
        XCTAssertEqual(try store.get("k")?.version, 1)
        XCTAssertEqual(try store.get("k")?.createRevision, 4)
    }

    func testPagedListPinnedBelowTheCompactRevisionFails() throws {
        // Checklist 26: kube turns this into 410 Gone.
        let store = makeStore()
        for i in 1...5 { try store.put("/registry/pods/ns/p\(i)", "v") }
        let prefix = b("/registry/pods/ns/")
        let page1 = try store.range(RangeRequest(key: prefix, rangeEnd: prefixEnd(prefix), limit: 2))
        let pinned = try XCTUnwrap(page1.header?.revision)
        try store.put("/registry/pods/ns/p1", "v2")
        _ = try store.compact(CompactionRequest(revision: store.currentRevision))
        assertThrows(.compacted) {
            try store.range(RangeRequest(key: page1.kvs.last!.key + [0], rangeEnd: prefixEnd(prefix), limit: 2, revision: pinned))
        }
    }

    func testTxnRangeBelowTheCompactRevisionFailsAndAppliesNothing() throws {
        let store = makeStore()
        for i in 1...4 { try store.put("k", "v\(i)") }             // 2...5
        _ = try store.compact(CompactionRequest(revision: 4))
        assertThrows(.compacted) {
            _ = try store.txn(TxnRequest(compare: [], success: [.put("a", "1"), .range("k", revision: 3)]))
        }
        XCTAssertNil(try store.get("a"))
        XCTAssertEqual(store.currentRevision, 5)
        let response = try store.txn(TxnRequest(compare: [], success: [.range("k", revision: 4)]))
        XCTAssertEqual(response.responses[0].range?.kvs.map(\.valueString), ["v3"])
    }

    func testCompareStillSeesCompactedKeysLatestState() throws {
        let store = makeStore()
        for i in 1...3 { try store.put("k", "v\(i)") }             // 2...4
        _ = try store.compact(CompactionRequest(revision: 4))
        let response = try store.txn(TxnRequest(compare: [.mod("k", .equal, 4), .version("k", .equal, 3)],
                                                 success: [.put("k", "v4")]))
        XCTAssertTrue(response.succeeded)
        XCTAssertEqual(try store.get("k")?.version, 4)
    }

    func testFreshStoreCanBeCompactedAtRevisionOne() throws {
        let store = makeStore()
        XCTAssertNoThrow(try store.compact(CompactionRequest(revision: 1)))
        assertThrows(.compacted) { try store.compact(CompactionRequest(revision: 1)) }
        XCTAssertEqual(try store.range(RangeRequest(key: b("a"), revision: 1)).kvs, [])
    }
}
