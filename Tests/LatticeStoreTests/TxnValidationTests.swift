import XCTest
import EtcdAPI
import LatticeStore

/// Txn requests etcd refuses before applying anything (v3rpc checkTxnRequest / checkIntervals,
/// applierV3backend checkRequestPut / checkRequestRange): nothing of a refused txn is applied.
final class TxnValidationTests: XCTestCase {
    // MARK: request validation

    func testTooManyOpsIsRejected() throws {
        let store = makeStore()
        let puts: [RequestOp] = (0..<129).map { .put("k\($0)", "v") }
        assertThrows(.tooManyOps) { try store.txn(TxnRequest(compare: [], success: puts)) }
        assertThrows(.tooManyOps) { try store.txn(TxnRequest(compare: [], success: [], failure: puts)) }
        let compares: [Compare] = (0..<129).map { .version("k\($0)", .equal, 0) }
        assertThrows(.tooManyOps) { try store.txn(TxnRequest(compare: compares, success: [])) }
        assertThrows(.tooManyOps) {
            _ = try store.txn(TxnRequest(compare: [], success: [.txn(TxnRequest(compare: [], success: puts))]))
        }
        XCTAssertEqual(store.currentRevision, 1)
        XCTAssertEqual(EtcdError.tooManyOps.message, "etcdserver: too many operations in txn request")
        XCTAssertEqual(EtcdError.tooManyOps.code, .invalidArgument)

        let response = try store.txn(TxnRequest(compare: Array(compares.prefix(128)), success: Array(puts.prefix(128)),
                                                 failure: Array(puts.prefix(128))))
        XCTAssertTrue(response.succeeded)
        XCTAssertEqual(response.responses.count, 128)
        XCTAssertEqual(store.currentRevision, 2)
    }

    /// As etcd (`checkTxnRequest(nested, maxTxnOps - opc)`): a nested txn gets the budget left
    /// after its parent's largest op list, so ops inside nested txns count too.
    func testOpsOfNestedTxnsCountTowardTheLimit() throws {
        let store = makeStore(maxTxnOps: 4)
        let two: [RequestOp] = [.put("n1", "v"), .put("n2", "v")]
        // Parent: 4 ops (3 puts and the nested txn) leave the nested txn a budget of 0.
        assertThrows(.tooManyOps) {
            try store.txn(TxnRequest(compare: [], success: [.put("a", "v"), .put("b", "v"), .put("c", "v"), .txn(TxnRequest(compare: [], success: two))]))
        }
        // Parent: 3 ops leave 1; the nested txn has 2.
        assertThrows(.tooManyOps) {
            try store.txn(TxnRequest(compare: [], success: [.put("a", "v"), .put("b", "v"), .txn(TxnRequest(compare: [], success: two))]))
        }
        XCTAssertEqual(store.currentRevision, 1)
        // Parent: 2 ops leave 2; the nested txn has 2.
        XCTAssertTrue(try store.txn(TxnRequest(compare: [], success: [.put("a", "v"), .txn(TxnRequest(compare: [], success: two))])).succeeded)
    }

    func testMaxTxnOpsIsConfigurable() throws {
        let store = makeStore(maxTxnOps: 2)
        assertThrows(.tooManyOps) {
            _ = try store.txn(TxnRequest(compare: [], success: [.put("a", "1"), .put("b", "1"), .put("c", "1")]))
        }
        XCTAssertNoThrow(try store.txn(TxnRequest(compare: [], success: [.put("a", "1"), .put("b", "1")])))
    }

    func testDuplicatePutKeysInOneBranchAreRejected() throws {
        let store = makeStore()
        assertThrows(.duplicateKey) { try store.txn(TxnRequest(compare: [], success: [.put("a", "1"), .put("a", "2")])) }
        // Both branches are checked, taken or not.
        assertThrows(.duplicateKey) {
            _ = try store.txn(TxnRequest(compare: [], success: [.put("x", "1")], failure: [.put("a", "1"), .put("a", "2")]))
        }
        XCTAssertEqual(store.currentRevision, 1)
        XCTAssertEqual(EtcdError.duplicateKey.message, "etcdserver: duplicate key given in txn request")
    }

    func testSameKeyInSuccessAndFailureIsAllowed() throws {
        let store = makeStore()
        let response = try store.txn(TxnRequest(compare: [], success: [.put("a", "s")], failure: [.put("a", "f")]))
        XCTAssertTrue(response.succeeded)
        XCTAssertEqual(try store.get("a")?.valueString, "s")
    }

    func testPutInsideADeletedRangeOfTheSameBranchIsRejected() throws {
        let store = makeStore()
        assertThrows(.duplicateKey) {
            _ = try store.txn(TxnRequest(compare: [], success: [.delete("p/", rangeEnd: prefixEnd("p/")), .put("p/a", "1")]))
        }
        assertThrows(.duplicateKey) {
            _ = try store.txn(TxnRequest(compare: [], success: [.put("a", "1"), .delete("a")]))
        }
        assertThrows(.duplicateKey) {
            _ = try store.txn(TxnRequest(compare: [], success: [.delete("a", rangeEnd: b("c")), .put("b", "1")]))
        }
        XCTAssertEqual(store.currentRevision, 1)
    }

    func testPutOutsideADeletedRangeAndOverlappingDeletesAreAllowed() throws {
        let store = makeStore()
        try store.put("a", "1")
        try store.put("b", "1")
        let response = try store.txn(TxnRequest(compare: [], success: [
            .delete("a", rangeEnd: b("c")), .delete("b"), .put("0", "x"), .put("c", "x"),
        ]))
        XCTAssertTrue(response.succeeded)
        XCTAssertEqual(try store.keys(RangeRequest(key: [0], rangeEnd: [0])), ["0", "c"])
    }

    func testPutInsideAFromKeyDeleteIsRejectedUnlikeEtcd35() throws {
        // Deliberate divergence: etcd 3.5's checkIntervals builds the interval [key, "\0") for a
        // from-key delete, which is empty, so it accepts this txn (etcd-io/etcd #22445, fix in
        // #22395). Lattice rejects it like any other put inside a deleted range.
        let store = makeStore()
        assertThrows(.duplicateKey) {
            _ = try store.txn(TxnRequest(compare: [], success: [.delete("a", rangeEnd: fromKey), .put("b", "1")]))
        }
    }

    func testSameKeyInThenAndElseOfOneNestedTxnIsAllowed() throws {
        let store = makeStore()
        let nested = TxnRequest(compare: [.mod("a", .equal, 0)], success: [.put("a", "then")], failure: [.put("a", "else")])
        var response = try store.txn(TxnRequest(compare: [], success: [.txn(nested)]))
        XCTAssertEqual(response.responses[0].txn?.succeeded, true)
        XCTAssertEqual(try store.get("a")?.valueString, "then")
        response = try store.txn(TxnRequest(compare: [], success: [.txn(nested)]))
        XCTAssertEqual(response.responses[0].txn?.succeeded, false)
        XCTAssertEqual(try store.get("a")?.valueString, "else")
    }

    func testNestedPutsConflictingWithTheEnclosingBranchAreRejected() throws {
        let store = makeStore()
        let nestedPutA = TxnRequest(compare: [], success: [.put("a", "n")])
        // A nested put and an outer put of the same key.
        assertThrows(.duplicateKey) { try store.txn(TxnRequest(compare: [], success: [.txn(nestedPutA), .put("a", "o")])) }
        // Two nested txns putting the same key.
        assertThrows(.duplicateKey) { try store.txn(TxnRequest(compare: [], success: [.txn(nestedPutA), .txn(nestedPutA)])) }
        // An else-put of a later nested txn and a then-put of an earlier one.
        assertThrows(.duplicateKey) {
            _ = try store.txn(TxnRequest(compare: [], success: [
                .txn(nestedPutA), .txn(TxnRequest(compare: [], success: [], failure: [.put("a", "e")])),
            ]))
        }
        // A nested put inside an outer deleted range.
        assertThrows(.duplicateKey) {
            _ = try store.txn(TxnRequest(compare: [], success: [.delete("a", rangeEnd: b("b")), .txn(nestedPutA)]))
        }
        // An outer put inside a nested deleted range.
        assertThrows(.duplicateKey) {
            _ = try store.txn(TxnRequest(compare: [], success: [
                .txn(TxnRequest(compare: [], success: [.delete("a")])), .put("a", "o"),
            ]))
        }
        XCTAssertEqual(store.currentRevision, 1)
    }

    func testMalformedOpsAreRejectedInEitherBranch() throws {
        let store = makeStore()
        assertThrows(.keyNotFound) { try store.txn(TxnRequest(compare: [], success: [RequestOp()])) }
        assertThrows(.emptyKey) { try store.txn(TxnRequest(compare: [Compare(key: [], target: .mod, result: .equal, .modRevision(0))], success: [])) }
        assertThrows(.emptyKey) { try store.txn(TxnRequest(compare: [], success: [], failure: [.put("", "v")])) }
        assertThrows(.emptyKey) { try store.txn(TxnRequest(compare: [], success: [.delete("")])) }
        assertThrows(.emptyKey) { try store.txn(TxnRequest(compare: [], success: [.range("")])) }
        assertThrows(.emptyKey) {
            _ = try store.txn(TxnRequest(compare: [], success: [.txn(TxnRequest(compare: [.mod("", .equal, 0)], success: []))]))
        }
        var badSort = RangeRequest(key: b("a"))
        badSort.sortOrder = .init(rawValue: 7)
        assertThrows(.invalidSortOption) { try store.txn(TxnRequest(compare: [], success: [], failure: [.range(badSort)])) }
        var ignoreWithValue = PutRequest(key: b("a"), value: b("v"))
        ignoreWithValue.ignoreValue = true
        assertThrows(.valueProvided) { try store.txn(TxnRequest(compare: [], success: [.put(ignoreWithValue)])) }
        XCTAssertEqual(store.currentRevision, 1)
    }

    // MARK: failing txns apply nothing

    func testTxnWithUnknownLeaseAppliesNothing() throws {
        // Checklist 47.
        let store = makeStore()
        try store.put("a", "1")                                    // 2
        assertThrows(.leaseNotFound) {
            _ = try store.txn(TxnRequest(compare: [], success: [.put("b", "1"), .put("a", "2"), .put("c", "1", lease: 77)]))
        }
        XCTAssertEqual(try store.get("a")?.valueString, "1")
        XCTAssertNil(try store.get("b"))
        XCTAssertEqual(store.currentRevision, 2)
        XCTAssertEqual(try store.put("d", "1"), 3)
    }

    func testUnknownLeaseInTheBranchNotTakenIsNotChecked() throws {
        let store = makeStore()
        let response = try store.txn(TxnRequest(compare: [.mod("a", .equal, 1)],
                                                 success: [.put("a", "1", lease: 77)], failure: [.put("b", "1")]))
        XCTAssertFalse(response.succeeded)
        XCTAssertEqual(try store.get("b")?.valueString, "1")
    }

    func testIgnoreValueInTxnUsesTheCurrentValue() throws {
        let store = makeStore()
        try store.put("a", "keep")
        var p = PutRequest(key: b("a"), value: [])
        p.ignoreValue = true
        let response = try store.txn(TxnRequest(compare: [], success: [.put(p)]))
        XCTAssertEqual(response.responses[0].put?.header?.revision, 3)
        XCTAssertEqual(try store.get("a")?.valueString, "keep")
        XCTAssertEqual(try store.get("a")?.version, 2)
    }

    func testIgnoreValueOnAbsentKeyInTxnAppliesNothing() throws {
        let store = makeStore()
        var p = PutRequest(key: b("absent"), value: [])
        p.ignoreValue = true
        assertThrows(.keyNotFound) { try store.txn(TxnRequest(compare: [], success: [.put("a", "1"), .put(p)])) }
        XCTAssertNil(try store.get("a"))
        XCTAssertEqual(store.currentRevision, 1)
    }

    func testInTxnKeyExistenceIsCheckedBeforeTheLease() throws {
        // applierV3backend.checkRequestPut: ignore_value/ignore_lease lookup first, then the lease.
        let store = makeStore()
        var p = PutRequest(key: b("absent"), value: [], lease: 9)
        p.ignoreValue = true
        assertThrows(.keyNotFound) { try store.txn(TxnRequest(compare: [], success: [.put(p)])) }
    }

    func testInTxnPutChecksPrecedeRangeChecks() throws {
        // applierV3backend.Txn runs checkRequestPut over the whole path, then checkRequestRange.
        let store = makeStore()
        assertThrows(.leaseNotFound) {
            _ = try store.txn(TxnRequest(compare: [], success: [.range("a", revision: 50), .put("b", "1", lease: 9)]))
        }
        assertThrows(.leaseNotFound) {
            _ = try store.txn(TxnRequest(compare: [], success: [
                .txn(TxnRequest(compare: [], success: [.range("a", revision: 50)])),
                .txn(TxnRequest(compare: [], success: [.put("b", "1", lease: 9)])),
            ]))
        }
    }
}
