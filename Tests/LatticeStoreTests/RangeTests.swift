import XCTest
import EtcdAPI
import LatticeStore
import LatticeTestSupport

/// Range semantics (usage doc §3.1, §3.4; applierV3backend.Range, mvcc rangeKeys).
final class RangeTests: XCTestCase {
    /// A page's `count` (taken from per-chunk statistics where a chunk was not written since the
    /// read revision) equals the number of keys a full read returns, at current and older
    /// revisions, through inserts that split chunks, overwrites, deletes and compactions.
    func testPageCountsMatchFullReadsAtEveryRevision() throws {
        let store = makeStore()
        var rng = SplitMix64(seed: 42)
        var revisions: [Int64] = []
        for round in 0..<12 {
            var ops: [RequestOp] = []
            for _ in 0..<100 {
                let key = b(String(format: "k/%05d", Int(rng.next(upTo: 3_000))))
                if rng.next(upTo: 4) == 0 {
                    ops.append(RequestOp(.deleteRange(DeleteRangeRequest(key: key))))
                } else {
                    ops.append(RequestOp(.put(PutRequest(key: key, value: b("r\(round)")))))
                }
            }
            for chunk in stride(from: 0, to: ops.count, by: 50) {
                // Distinct keys per txn (etcd refuses a key twice in one txn).
                var seen = Set<[UInt8]>()
                let batch = ops[chunk..<(chunk + 50)].filter { op in
                    switch op.request {
                    case .put(let p): return seen.insert(p.key).inserted
                    case .deleteRange(let d): return seen.insert(d.key).inserted
                    default: return false
                    }
                }
                _ = try store.txn(TxnRequest(compare: [], success: Array(batch)))
            }
            revisions.append(store.currentRevision)
            if round == 6 { _ = try store.compact(CompactionRequest(revision: revisions[3])) }
        }
        let ranges: [(String, String)] = [("k/", "k0"), ("k/00500", "k/02500"), ("k/01000", "k0"), ("\0", "\0"), ("k/02999", "k0")]
        for revision in revisions.suffix(8) + [0] {
            for (from, to) in ranges {
                let full = try store.range(RangeRequest(key: b(from), rangeEnd: b(to), revision: revision))
                let page = try store.range(RangeRequest(key: b(from), rangeEnd: b(to), limit: 7, revision: revision))
                XCTAssertEqual(page.count, Int64(full.kvs.count), "revision \(revision), [\(from), \(to))")
                XCTAssertEqual(page.kvs, Array(full.kvs.prefix(7)))
                XCTAssertEqual(page.more, full.kvs.count > 7)
                var countOnly = RangeRequest(key: b(from), rangeEnd: b(to), revision: revision)
                countOnly.countOnly = true
                XCTAssertEqual(try store.range(countOnly).count, Int64(full.kvs.count))
            }
        }
    }

    // MARK: key ranges

    func testRangeWithoutRangeEndReturnsOnlyThatKey() throws {
        let store = makeStore()
        for key in ["a", "a\0", "ab", "b", "\u{7f}"] { try store.put(key, "v") }
        let response = try store.range(RangeRequest(key: b("a")))
        XCTAssertEqual(response.kvs.map(\.keyString), ["a"])
        XCTAssertEqual(response.count, 1)
        XCTAssertFalse(response.more)
    }

    func testRangeOfAbsentKeyIsEmptyWithCurrentHeaderRevision() throws {
        let store = makeStore()
        try store.put("a", "1")
        try store.put("c", "1")
        let response = try store.range(RangeRequest(key: b("b")))
        XCTAssertEqual(response.kvs, [])
        XCTAssertEqual(response.count, 0)
        XCTAssertEqual(response.header?.revision, 3)
    }

    func testPrefixRangeReturnsOnlyKeysUnderThePrefix() throws {
        // Checklist 14.
        let store = makeStore()
        for key in ["/registry/pods", "/registry/pods/b", "/registry/pods/a", "/registry/podsx", "/registry/pods0"] {
            try store.put(key, "v")
        }
        let keys = try store.keys(RangeRequest(key: b("/registry/pods/"), rangeEnd: prefixEnd("/registry/pods/")))
        XCTAssertEqual(keys, ["/registry/pods/a", "/registry/pods/b"])
    }

    func testRangeIsHalfOpen() throws {
        let store = makeStore()
        for key in ["a", "b", "c", "d"] { try store.put(key, "v") }
        XCTAssertEqual(try store.keys(RangeRequest(key: b("b"), rangeEnd: b("d"))), ["b", "c"])
    }

    func testRangeWithZeroRangeEndReturnsEveryKeyFromKey() throws {
        let store = makeStore()
        for key in ["a", "b", "c", "\u{7f}zz"] { try store.put(key, "v") }
        XCTAssertEqual(try store.keys(RangeRequest(key: b("b"), rangeEnd: fromKey)), ["b", "c", "\u{7f}zz"])
    }

    func testKeyZeroWithRangeEndZeroReturnsAllKeys() throws {
        let store = makeStore()
        let keys: [[UInt8]] = [[0], [0, 0], [0x01], b("compact_rev_key"), b("/registry/x"), [0xff, 0xff]]
        for key in keys.shuffled() { try store.put(key, b("v")) }
        let response = try store.range(RangeRequest(key: [0], rangeEnd: [0]))
        XCTAssertEqual(response.kvs.map(\.key), keys.sorted { $0.lexicographicallyPrecedes($1) })
        XCTAssertEqual(response.count, Int64(keys.count))
    }

    func testKeysAreOrderedAsUnsignedBytes() throws {
        let store = makeStore()
        let keys: [[UInt8]] = [[0x80], [0x7f], [0xff], [0x00, 0x01], [0x7f, 0x00], [0x7f, 0xff]]
        for key in keys { try store.put(key, b("v")) }
        let response = try store.range(RangeRequest(key: [0], rangeEnd: [0]))
        XCTAssertEqual(response.kvs.map(\.key), [[0x00, 0x01], [0x7f], [0x7f, 0x00], [0x7f, 0xff], [0x80], [0xff]])
    }

    func testRangeEndBeforeKeyIsEmpty() throws {
        let store = makeStore()
        for key in ["a", "b", "c"] { try store.put(key, "v") }
        let response = try store.range(RangeRequest(key: b("c"), rangeEnd: b("a")))
        XCTAssertEqual(response.kvs, [])
        XCTAssertEqual(response.count, 0)
    }

    func testDeletedKeysAreNotReturned() throws {
        let store = makeStore()
        for key in ["p/a", "p/b", "p/c"] { try store.put(key, "v") }
        try store.delete("p/b")
        let response = try store.range(RangeRequest(key: b("p/"), rangeEnd: prefixEnd("p/")))
        XCTAssertEqual(response.kvs.map(\.keyString), ["p/a", "p/c"])
        XCTAssertEqual(response.count, 2)
    }

    // MARK: limit, count, more, paging

    func testRangeWithLimitReportsMoreAndTotalCount() throws {
        // Checklist 15.
        let store = makeStore()
        for i in 1...5 { try store.put("p/\(i)", "v") }
        let response = try store.range(RangeRequest(key: b("p/"), rangeEnd: prefixEnd("p/"), limit: 2))
        XCTAssertEqual(response.kvs.map(\.keyString), ["p/1", "p/2"])
        XCTAssertTrue(response.more)
        XCTAssertEqual(response.count, 5, "count is every key in the range, not the page")
    }

    func testRangeWithLimitEqualToKeyCountHasNoMore() throws {
        let store = makeStore()
        for i in 1...3 { try store.put("p/\(i)", "v") }
        let response = try store.range(RangeRequest(key: b("p/"), rangeEnd: prefixEnd("p/"), limit: 3))
        XCTAssertEqual(response.kvs.count, 3)
        XCTAssertFalse(response.more)
        XCTAssertEqual(response.count, 3)
    }

    func testRangeWithLimitLargerThanKeyCountHasNoMore() throws {
        let store = makeStore()
        for i in 1...3 { try store.put("p/\(i)", "v") }
        let response = try store.range(RangeRequest(key: b("p/"), rangeEnd: prefixEnd("p/"), limit: 10))
        XCTAssertEqual(response.kvs.count, 3)
        XCTAssertFalse(response.more)
        XCTAssertEqual(response.count, 3)
    }

    func testSingleKeyRangeWithLimitOne() throws {
        // kube 1.32+ Get: Range{key: K, limit: 1}.
        let store = makeStore()
        try store.put("k", "v")
        try store.put("k0", "v")
        let response = try store.range(RangeRequest(key: b("k"), limit: 1))
        XCTAssertEqual(response.kvs.map(\.keyString), ["k"])
        XCTAssertEqual(response.count, 1)
        XCTAssertFalse(response.more)
    }

    func testNegativeLimitMeansNoLimit() throws {
        let store = makeStore()
        for i in 1...3 { try store.put("p/\(i)", "v") }
        let response = try store.range(RangeRequest(key: b("p/"), rangeEnd: prefixEnd("p/"), limit: -1))
        XCTAssertEqual(response.kvs.count, 3)
        XCTAssertFalse(response.more)
        XCTAssertEqual(response.count, 3)
    }

    func testMaximumLimitMeansNoLimit() throws {
        // etcd computes limit+1, which wraps to a negative (= unlimited) fetch; it must not trap.
        let store = makeStore()
        for i in 1...3 { try store.put("p/\(i)", "v") }
        let response = try store.range(RangeRequest(key: b("p/"), rangeEnd: prefixEnd("p/"), limit: .max))
        XCTAssertEqual(response.kvs.count, 3)
        XCTAssertFalse(response.more)
        XCTAssertEqual(response.count, 3)
    }

    func testPagingWithLastKeyPlusZeroByteVisitsEveryKeyOnce() throws {
        // Checklist 16; usage doc §2.5: page n starts at lastKey+"\0", pinned to page 1's revision.
        let store = makeStore()
        for i in 1...5 { try store.put("/registry/pods/ns/p\(i)", "v\(i)") }
        let prefix = b("/registry/pods/ns/")
        let end = prefixEnd(prefix)

        let page1 = try store.range(RangeRequest(key: prefix, rangeEnd: end, limit: 2))
        let pinned = try XCTUnwrap(page1.header?.revision)
        XCTAssertEqual(page1.count, 5)
        XCTAssertTrue(page1.more)

        // Writes between pages must not show up in the pinned pages.
        try store.put("/registry/pods/ns/p0", "new")
        try store.put("/registry/pods/ns/p9", "new")
        try store.delete("/registry/pods/ns/p4")

        let page2 = try store.range(RangeRequest(key: page1.kvs.last!.key + [0], rangeEnd: end, limit: 2, revision: pinned))
        XCTAssertEqual(page2.kvs.map(\.keyString), ["/registry/pods/ns/p3", "/registry/pods/ns/p4"])
        XCTAssertEqual(page2.count, 3, "count is taken from the continue key, not the whole prefix")
        XCTAssertTrue(page2.more)
        XCTAssertEqual(page2.header?.revision, store.currentRevision, "header is the current revision, not the pinned one")

        let page3 = try store.range(RangeRequest(key: page2.kvs.last!.key + [0], rangeEnd: end, limit: 2, revision: pinned))
        XCTAssertEqual(page3.kvs.map(\.keyString), ["/registry/pods/ns/p5"])
        XCTAssertEqual(page3.count, 1)
        XCTAssertEqual(Int(page3.count), page3.kvs.count)
        XCTAssertFalse(page3.more)

        let all = page1.kvs + page2.kvs + page3.kvs
        XCTAssertEqual(all.map(\.valueString), ["v1", "v2", "v3", "v4", "v5"])
    }

    func testContinueKeyExcludesTheLastKeyButIncludesItsExtensions() throws {
        // "a\0" sorts right after "a": a continue from "a"+"\0" must still return it.
        let store = makeStore()
        for key in ["a", "a\0", "a\0\0", "b"] { try store.put(key, "v") }
        let keys = try store.keys(RangeRequest(key: b("a\0"), rangeEnd: fromKey))
        XCTAssertEqual(keys, ["a\0", "a\0\0", "b"])
    }

    // MARK: revisions

    func testRangeAtHistoricalRevisionReturnsThatSnapshot() throws {
        // Checklist 17.
        let store = makeStore()
        try store.put("p/a", "a1")                                 // 2
        try store.put("p/b", "b1")                                 // 3
        try store.put("p/a", "a2")                                 // 4
        let h = store.currentRevision
        try store.delete("p/b")                                    // 5
        try store.put("p/c", "c1")                                 // 6
        try store.put("p/a", "a3")                                 // 7

        let response = try store.range(RangeRequest(key: b("p/"), rangeEnd: prefixEnd("p/"), revision: h))
        XCTAssertEqual(response.kvs, [
            KeyValue(key: b("p/a"), createRevision: 2, modRevision: 4, version: 2, value: b("a2"), lease: 0),
            KeyValue(key: b("p/b"), createRevision: 3, modRevision: 3, version: 1, value: b("b1"), lease: 0),
        ])
        XCTAssertEqual(response.count, 2)
        XCTAssertEqual(response.header?.revision, 7, "header.revision is the current revision, not the requested one")
    }

    func testRangeAtEveryPastRevisionSeesTheValueWrittenUpToIt() throws {
        let store = makeStore()
        for i in 1...10 { try store.put("k", "v\(i)") }           // revisions 2...11
        for rev in Int64(2)...11 {
            let kv = try XCTUnwrap(store.get("k", revision: rev))
            XCTAssertEqual(kv.valueString, "v\(rev - 1)")
            XCTAssertEqual(kv.modRevision, rev)
            XCTAssertEqual(kv.version, rev - 1)
        }
        XCTAssertNil(try store.get("k", revision: 1), "the key did not exist at revision 1")
    }

    func testRangeAtCurrentRevisionWorks() throws {
        let store = makeStore()
        try store.put("a", "1")
        XCTAssertEqual(try store.get("a", revision: 2)?.valueString, "1")
    }

    func testRangeAtFutureRevisionFails() throws {
        // Checklist 18.
        let store = makeStore()
        try store.put("a", "1")
        assertThrows(.futureRevision) { try store.range(RangeRequest(key: b("a"), revision: 3)) }
        assertThrows(.futureRevision) { try store.range(RangeRequest(key: b("a"), revision: .max)) }
        XCTAssertEqual(EtcdError.futureRevision.code, .outOfRange)
        XCTAssertEqual(EtcdError.futureRevision.message, "etcdserver: mvcc: required revision is a future revision")
    }

    func testNegativeRevisionReadsTheLatest() throws {
        let store = makeStore()
        try store.put("a", "1")
        try store.put("a", "2")
        XCTAssertEqual(try store.get("a", revision: -1)?.valueString, "2")
    }

    func testHeaderRevisionIsCurrentForHistoricalAndEmptyReads() throws {
        let store = makeStore()
        try store.put("a", "1")
        try store.put("b", "1")
        try store.put("c", "1")
        XCTAssertEqual(try store.range(RangeRequest(key: b("a"), revision: 2)).header?.revision, 4)
        XCTAssertEqual(try store.range(RangeRequest(key: b("zz"))).header?.revision, 4)
        XCTAssertEqual(try store.range(RangeRequest(key: b("c"), revision: 2)).header?.revision, 4)
        var countOnly = RangeRequest(key: b("x"), rangeEnd: b("y"))
        countOnly.countOnly = true
        XCTAssertEqual(try store.range(countOnly).header?.revision, 4)
    }

    // MARK: count_only, keys_only

    func testCountOnlyReturnsCountWithoutKvs() throws {
        // Checklist 19.
        let store = makeStore()
        for i in 1...7 { try store.put("/registry/pods/ns/p\(i)", "v") }
        try store.put("/registry/podsx", "v")
        try store.delete("/registry/pods/ns/p3")
        var r = RangeRequest(key: b("/registry/pods/"), rangeEnd: prefixEnd("/registry/pods/"))
        r.countOnly = true
        let response = try store.range(r)
        XCTAssertEqual(response.count, 6)
        XCTAssertEqual(response.kvs, [])
        XCTAssertFalse(response.more)
    }

    func testCountOnlyIgnoresLimit() throws {
        let store = makeStore()
        for i in 1...3 { try store.put("p/\(i)", "v") }
        var r = RangeRequest(key: b("p/"), rangeEnd: prefixEnd("p/"), limit: 1)
        r.countOnly = true
        let response = try store.range(r)
        XCTAssertEqual(response.count, 3)
        XCTAssertEqual(response.kvs, [])
        XCTAssertFalse(response.more)
    }

    func testCountOnlyOfAllKeysAtHistoricalRevision() throws {
        let store = makeStore()
        for i in 1...4 { try store.put("k\(i)", "v") }             // 2...5
        try store.delete("k1")                                     // 6
        var r = RangeRequest(key: [0], rangeEnd: [0])
        r.countOnly = true
        XCTAssertEqual(try store.range(r).count, 3)
        r.revision = 5
        XCTAssertEqual(try store.range(r).count, 4)
        r.revision = 3
        XCTAssertEqual(try store.range(r).count, 2)
    }

    func testKeysOnlyOmitsValuesButKeepsMetadata() throws {
        let store = makeStore()
        try store.put("a", "value-a")
        try store.put("a", "value-a2")
        var r = RangeRequest(key: b("a"))
        r.keysOnly = true
        let response = try store.range(r)
        XCTAssertEqual(response.kvs, [KeyValue(key: b("a"), createRevision: 2, modRevision: 3, version: 2, value: [], lease: 0)])
        XCTAssertEqual(response.count, 1)
    }

    // MARK: validation

    func testEmptyKeyIsRejected() throws {
        let store = makeStore()
        assertThrows(.emptyKey) { try store.range(RangeRequest(key: [])) }
        assertThrows(.emptyKey) { try store.range(RangeRequest(key: [], rangeEnd: [0])) }
        XCTAssertEqual(EtcdError.emptyKey.code, .invalidArgument)
        XCTAssertEqual(EtcdError.emptyKey.message, "etcdserver: key is not provided")
    }
}
