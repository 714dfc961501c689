import XCTest
import EtcdAPI
import LatticeStore

/// Txn semantics (usage doc §3.5; applierV3backend.Txn, applyCompare, checkRequests; v3rpc
/// checkTxnRequest / checkIntervals).
final class TxnTests: XCTestCase {
    /// Whether a read-only txn with `compare` takes its success branch.
    private func holds(_ store: MVCCStore, _ compare: [Compare], file: StaticString = #filePath, line: UInt = #line) throws -> Bool {
        let before = store.currentRevision
        let response = try store.txn(TxnRequest(compare: compare, success: [], failure: []))
        XCTAssertEqual(response.header?.revision, before, "a compare-only txn does not write", file: file, line: line)
        XCTAssertEqual(response.responses, [], file: file, line: line)
        return response.succeeded
    }

    // MARK: compares

    func testEveryCompareTargetWithEveryResult() throws {
        let store = makeStore()
        try store.put("k", "m")                                    // 2
        try store.put("other", "x")                                // 3
        try store.put("k", "m")                                    // 4: k create 2, mod 4, version 2, lease 0

        typealias Make = (Int) -> Compare                          // -1: operand below the kv's, 0: equal, +1: above
        let targets: [(String, Make)] = [
            ("VALUE", { .value("k", .equal, [b("l"), b("m"), b("n")][$0 + 1]) }),
            ("CREATE", { .create("k", .equal, 2 + Int64($0)) }),
            ("MOD", { .mod("k", .equal, 4 + Int64($0)) }),
            ("VERSION", { .version("k", .equal, 2 + Int64($0)) }),
            ("LEASE", { .lease("k", .equal, Int64($0)) }),
        ]
        // (result, holds when operand is below / equal / above the stored field)
        let results: [(Compare.CompareResult, String, [Bool])] = [
            (.equal, "EQUAL", [false, true, false]),
            (.notEqual, "NOT_EQUAL", [true, false, true]),
            (.greater, "GREATER", [true, false, false]),
            (.less, "LESS", [false, false, true]),
        ]
        for (targetName, make) in targets {
            for (result, resultName, expected) in results {
                for (i, position) in [-1, 0, 1].enumerated() {
                    var compare = make(position)
                    compare.result = result
                    XCTAssertEqual(try holds(store, [compare]), expected[i],
                                   "\(targetName) \(resultName) with operand \(["below", "equal", "above"][i])")
                }
            }
        }
    }

    func testValueCompareComparesUnsignedBytes() throws {
        let store = makeStore()
        try store.put(b("k"), [0x80])
        XCTAssertTrue(try holds(store, [.value("k", .greater, [0x7f])]))
        XCTAssertTrue(try holds(store, [.value("k", .less, [0x80, 0x00])]))
        XCTAssertTrue(try holds(store, [.value("k", .equal, [0x80])]))
    }

    func testValueCompareOnMissingKeyIsAlwaysFalse() throws {
        let store = makeStore()
        for result: Compare.CompareResult in [.equal, .notEqual, .greater, .less] {
            XCTAssertFalse(try holds(store, [.value("missing", result, [])]))
            XCTAssertFalse(try holds(store, [.value("missing", result, b("x"))]))
        }
    }

    func testOtherComparesOnMissingKeyCompareAgainstZero() throws {
        let store = makeStore()
        try store.put("other", "1")
        XCTAssertTrue(try holds(store, [.mod("missing", .equal, 0)]))
        XCTAssertTrue(try holds(store, [.create("missing", .equal, 0)]))
        XCTAssertTrue(try holds(store, [.version("missing", .equal, 0)]))
        XCTAssertTrue(try holds(store, [.lease("missing", .equal, 0)]))
        XCTAssertFalse(try holds(store, [.mod("missing", .greater, 0)]))
        XCTAssertTrue(try holds(store, [.mod("missing", .less, 5)]))
        XCTAssertFalse(try holds(store, [.mod("missing", .equal, 5)]))
    }

    func testCompareOnDeletedKeyTreatsItAsMissing() throws {
        let store = makeStore()
        try store.put("k", "v")
        try store.delete("k")
        XCTAssertTrue(try holds(store, [.mod("k", .equal, 0)]))
        XCTAssertTrue(try holds(store, [.version("k", .equal, 0)]))
        XCTAssertFalse(try holds(store, [.value("k", .equal, b("v"))]))
    }

    func testCompareWithMismatchedTargetUnionComparesAgainstZero() throws {
        // etcd reads the operand only from the union member matching `target`; otherwise 0.
        let store = makeStore()
        try store.put("k", "v")                                    // mod 2
        let mismatched = Compare(key: b("k"), target: .mod, result: .equal, .version(2))
        XCTAssertFalse(try holds(store, [mismatched]))
        var greater = mismatched
        greater.result = .greater
        XCTAssertTrue(try holds(store, [greater]))
    }

    func testDefaultCompareIsVersionEqualZero() throws {
        // proto3: target VERSION (0) and result EQUAL (0) are absent on the wire; no union either.
        let store = makeStore()
        var compare = Compare()
        compare.key = b("compact_rev_key")
        XCTAssertTrue(try holds(store, [compare]))
        try store.put("compact_rev_key", "1")
        XCTAssertFalse(try holds(store, [compare]))
    }

    func testCompareWithRangeEndRequiresEveryKeyToSatisfyIt() throws {
        let store = makeStore()
        try store.put("p/a", "x")                                  // 2
        try store.put("p/b", "x")                                  // 3
        try store.put("p/b", "x")                                  // 4: p/b version 2
        try store.put("q", "y")                                    // 5
        let end = prefixEnd("p/")
        XCTAssertTrue(try holds(store, [.version("p/", .greater, 0, rangeEnd: end)]))
        XCTAssertFalse(try holds(store, [.version("p/", .equal, 1, rangeEnd: end)]))
        XCTAssertTrue(try holds(store, [.version("p/", .less, 3, rangeEnd: end)]))
        XCTAssertTrue(try holds(store, [.value("p/", .equal, b("x"), rangeEnd: end)]))
        XCTAssertFalse(try holds(store, [.value("p/", .equal, b("x"), rangeEnd: fromKey)]), "q has another value")
        XCTAssertTrue(try holds(store, [.mod("p/", .less, 5, rangeEnd: end)]))
        XCTAssertFalse(try holds(store, [.mod("p/", .less, 5, rangeEnd: fromKey)]))
    }

    func testCompareOverEmptyRangeActsLikeAMissingKey() throws {
        let store = makeStore()
        try store.put("q", "1")
        let end = prefixEnd("p/")
        XCTAssertTrue(try holds(store, [.mod("p/", .equal, 0, rangeEnd: end)]))
        XCTAssertFalse(try holds(store, [.version("p/", .greater, 0, rangeEnd: end)]))
        XCTAssertFalse(try holds(store, [.value("p/", .equal, [], rangeEnd: end)]))
    }

    func testAllComparesMustHold() throws {
        let store = makeStore()
        try store.put("a", "1")
        XCTAssertTrue(try holds(store, [.version("a", .equal, 1), .mod("b", .equal, 0)]))
        XCTAssertFalse(try holds(store, [.version("a", .equal, 1), .mod("b", .equal, 0), .value("a", .equal, b("2"))]))
        XCTAssertTrue(try holds(store, []), "no compares: success")
    }

    // MARK: branches and responses

    func testSuccessBranchRunsWhenComparesHold() throws {
        let store = makeStore()
        try store.put("a", "1")
        let response = try store.txn(TxnRequest(compare: [.value("a", .equal, b("1"))],
                                                 success: [.put("b", "s")], failure: [.put("c", "f")]))
        XCTAssertTrue(response.succeeded)
        XCTAssertEqual(response.responses.count, 1)
        XCTAssertNotNil(response.responses[0].put)
        XCTAssertEqual(try store.get("b")?.valueString, "s")
        XCTAssertNil(try store.get("c"))
    }

    func testFailureBranchRunsWhenACompareFails() throws {
        let store = makeStore()
        try store.put("a", "1")
        let response = try store.txn(TxnRequest(compare: [.value("a", .equal, b("2"))],
                                                 success: [.put("b", "s")], failure: [.put("c", "f"), .range("a")]))
        XCTAssertFalse(response.succeeded)
        XCTAssertEqual(response.responses.count, 2)
        XCTAssertNotNil(response.responses[0].put)
        XCTAssertEqual(response.responses[1].range?.kvs.first?.valueString, "1")
        XCTAssertNil(try store.get("b"))
        XCTAssertEqual(try store.get("c")?.valueString, "f")
        XCTAssertEqual(response.header?.revision, 3)
    }

    func testInnerResponsesCarryTheTxnRevision() throws {
        let store = makeStore()
        try store.put("b", "1")                                    // 2
        let response = try store.txn(TxnRequest(compare: [], success: [
            .put("a", "1"), .range("a"), .delete("b"), .range("b"), .delete("missing"),
        ]))
        XCTAssertEqual(response.header?.revision, 3)
        let r = response.responses
        XCTAssertEqual(r[0].put?.header?.revision, 3, "inner put header = the new revision")
        XCTAssertEqual(r[1].range?.header?.revision, 3)
        XCTAssertEqual(r[1].range?.kvs.map(\.valueString), ["1"], "a range after a put in the same txn sees it")
        XCTAssertEqual(r[1].range?.kvs.first?.modRevision, 3)
        XCTAssertEqual(r[2].deleteRange?.header?.revision, 3)
        XCTAssertEqual(r[2].deleteRange?.deleted, 1)
        XCTAssertEqual(r[3].range?.kvs, [], "a range after a delete in the same txn no longer sees the key")
        XCTAssertEqual(r[4].deleteRange?.deleted, 0)
        XCTAssertEqual(r[4].deleteRange?.header?.revision, 3, "after a write, even a no-op delete reports the new revision")
    }

    func testInnerOpsBeforeTheFirstWriteReportTheBeginRevision() throws {
        // mvcc storeTxnWrite: Range and DeleteRange report beginRev until the txn has changes.
        let store = makeStore()
        try store.put("a", "1")                                    // 2
        let response = try store.txn(TxnRequest(compare: [], success: [
            .range("a"), .delete("missing"), .put("c", "1"), .range("c"),
        ]))
        let r = response.responses
        XCTAssertEqual(r[0].range?.header?.revision, 2)
        XCTAssertEqual(r[1].deleteRange?.header?.revision, 2)
        XCTAssertEqual(r[2].put?.header?.revision, 3)
        XCTAssertEqual(r[3].range?.header?.revision, 3)
        XCTAssertEqual(r[3].range?.kvs.map(\.keyString), ["c"])
        XCTAssertEqual(response.header?.revision, 3)
    }

    func testInnerRangeSeesEarlierWritesWithCountAndLimit() throws {
        let store = makeStore()
        try store.put("p/a", "a")
        try store.put("p/b", "b")
        let response = try store.txn(TxnRequest(compare: [], success: [
            .put("p/c", "c"), .delete("p/a"), .range("p/", rangeEnd: prefixEnd("p/"), limit: 1),
        ]))
        let range = try XCTUnwrap(response.responses[2].range)
        XCTAssertEqual(range.kvs.map(\.keyString), ["p/b"])
        XCTAssertEqual(range.count, 2)
        XCTAssertTrue(range.more)
    }

    func testInnerPutSeesEarlierWritesForPrevKVAndVersion() throws {
        let store = makeStore()
        try store.put("a", "1")                                    // 2
        try store.put("b", "1")                                    // 3
        let response = try store.txn(TxnRequest(compare: [], success: [
            .put(PutRequest(key: b("a"), value: b("2"), prevKV: true)),
            .range("a"),
        ]))
        XCTAssertEqual(response.responses[0].put?.prevKV?.valueString, "1")
        XCTAssertEqual(response.responses[1].range?.kvs,
                       [KeyValue(key: b("a"), createRevision: 2, modRevision: 4, version: 2, value: b("2"), lease: 0)])
    }

    func testInnerRangeAtHistoricalRevisionReadsThePast() throws {
        let store = makeStore()
        try store.put("a", "1")                                    // 2
        let response = try store.txn(TxnRequest(compare: [], success: [.put("a", "2"), .range("a", revision: 2)]))
        XCTAssertEqual(response.responses[1].range?.kvs.map(\.valueString), ["1"])
        XCTAssertEqual(response.responses[1].range?.header?.revision, 3)
    }

    func testInnerRangeAtFutureRevisionFailsAndAppliesNothing() throws {
        let store = makeStore()
        try store.put("a", "1")                                    // 2
        assertThrows(.futureRevision) {
            _ = try store.txn(TxnRequest(compare: [], success: [.range("a", revision: 3)]))
        }
        // The revision check is against the store before the txn, even after a put in it.
        assertThrows(.futureRevision) {
            _ = try store.txn(TxnRequest(compare: [], success: [.put("b", "1"), .range("b", revision: 3)]))
        }
        XCTAssertNil(try store.get("b"))
        XCTAssertEqual(store.currentRevision, 2)
    }

    func testInnerRangeRevisionCheckMatchesEtcdForNegativeRevisions() throws {
        // etcd checkRequestRange: any non-zero revision below the compact revision (-1 before the
        // first compaction) fails; the range itself then reads the latest.
        let store = makeStore()
        try store.put("a", "1")                                    // 2
        try store.put("a", "2")                                    // 3
        let ok = try store.txn(TxnRequest(compare: [], success: [.range("a", revision: -1)]))
        XCTAssertEqual(ok.responses[0].range?.kvs.map(\.valueString), ["2"])
        assertThrows(.compacted) { try store.txn(TxnRequest(compare: [], success: [.range("a", revision: -2)])) }
        _ = try store.compact(CompactionRequest(revision: 2))
        assertThrows(.compacted) { try store.txn(TxnRequest(compare: [], success: [.range("a", revision: -1)])) }
        XCTAssertEqual(try store.get("a", revision: -1)?.valueString, "2", "a top-level Range has no such check")
    }

    // MARK: nested txns

    func testNestedTxnRunsItsChosenBranchAtTheOuterRevision() throws {
        let store = makeStore()
        try store.put("b", "x")                                    // 2
        let nested = TxnRequest(compare: [.value("b", .equal, b("x"))],
                                success: [.put("c", "1"), .range("a")], failure: [.put("d", "1")])
        let response = try store.txn(TxnRequest(compare: [], success: [.put("a", "1"), .txn(nested), .range("c")]))
        XCTAssertTrue(response.succeeded)
        XCTAssertEqual(response.header?.revision, 3)
        let inner = try XCTUnwrap(response.responses[1].txn)
        XCTAssertTrue(inner.succeeded)
        XCTAssertEqual(inner.responses[0].put?.header?.revision, 3)
        XCTAssertEqual(inner.responses[1].range?.kvs.map(\.keyString), ["a"])
        XCTAssertEqual(response.responses[2].range?.kvs.map(\.keyString), ["c"])
        XCTAssertNil(try store.get("d"))
        XCTAssertEqual(try store.get("c")?.modRevision, 3)
    }

    func testNestedTxnResponseHeaderIsEmptyLikeEtcd() throws {
        // etcd newTxnResp gives nested txn responses an empty header; only the top one is filled.
        let store = makeStore()
        let response = try store.txn(TxnRequest(compare: [], success: [.txn(TxnRequest(compare: [], success: [.put("a", "1")]))]))
        let inner = try XCTUnwrap(response.responses[0].txn)
        XCTAssertEqual(inner.header?.revision ?? 0, 0)
        XCTAssertEqual(inner.responses[0].put?.header?.revision, 2)
        XCTAssertEqual(response.header?.revision, 2)
    }

    func testNestedComparesSeeTheStoreBeforeTheTxn() throws {
        let store = makeStore()
        let nested = TxnRequest(compare: [.value("a", .equal, b("new"))], success: [.put("s", "1")], failure: [.put("f", "1")])
        let response = try store.txn(TxnRequest(compare: [], success: [.put("a", "new"), .txn(nested)]))
        XCTAssertEqual(response.responses[1].txn?.succeeded, false)
        XCTAssertNil(try store.get("s"))
        XCTAssertEqual(try store.get("f")?.valueString, "1")
    }

    func testSeveralNestedTxnsEachTakeTheirOwnBranch() throws {
        let store = makeStore()
        try store.put("x", "1")                                    // 2
        let yes = Compare.value("x", .equal, b("1"))
        let no = Compare.value("x", .equal, b("2"))
        let deep = TxnRequest(compare: [no], success: [.put("deep-s", "1")], failure: [.put("deep-f", "1")])
        let response = try store.txn(TxnRequest(compare: [yes], success: [
            .txn(TxnRequest(compare: [yes], success: [.put("n1-s", "1")], failure: [.put("n1-f", "1")])),
            .txn(TxnRequest(compare: [no], success: [.put("n2-s", "1")], failure: [.put("n2-f", "1")])),
            .txn(TxnRequest(compare: [yes], success: [.txn(deep), .put("n3-s", "1")], failure: [])),
            .put("outer", "1"),
        ], failure: [.put("outer-f", "1")]))
        XCTAssertTrue(response.succeeded)
        XCTAssertEqual(response.responses.compactMap { $0.txn?.succeeded }, [true, false, true])
        XCTAssertEqual(response.responses[2].txn?.responses[0].txn?.succeeded, false)
        XCTAssertEqual(try store.keys(RangeRequest(key: [0], rangeEnd: [0])),
                       ["deep-f", "n1-s", "n2-f", "n3-s", "outer", "x"])
        XCTAssertEqual(store.currentRevision, 3)
    }

    func testNestedTxnInFailureBranch() throws {
        let store = makeStore()
        let response = try store.txn(TxnRequest(compare: [.version("a", .equal, 5)], success: [],
                                                 failure: [.txn(TxnRequest(compare: [], success: [.put("x", "1")]))]))
        XCTAssertFalse(response.succeeded)
        XCTAssertEqual(response.responses[0].txn?.succeeded, true)
        XCTAssertEqual(try store.get("x")?.valueString, "1")
    }
}
