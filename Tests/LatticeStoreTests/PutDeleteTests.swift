import Dispatch
import Synchronization
import XCTest
import EtcdAPI
import LatticeStore

/// Put and DeleteRange outside transactions (applierV3backend.Put / DeleteRange, v3rpc checks).
final class PutDeleteTests: XCTestCase {
    // MARK: put

    func testPutResponseCarriesTheNewRevision() throws {
        let store = makeStore()
        let response = try store.put(PutRequest(key: b("a"), value: b("1")))
        XCTAssertEqual(response.header?.revision, 2)
        XCTAssertNil(response.prevKV)
    }

    /// A write whose client gave up (reset the call) before the writer reached it is not
    /// applied: it ends with "context canceled" and takes no revision.
    func testAWriteCancelledBeforeItIsEvaluatedIsDropped() throws {
        let store = makeStore()
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<PutResponse, EtcdError>?>(nil)
        store.put(PutRequest(key: b("gone"), value: b("1")), cancelled: { true }) { result in
            outcome.withLock { $0 = result }
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(outcome.withLock { $0.map { r in (try? r.get()) == nil } }, true)
        if case .failure(let error)? = outcome.withLock({ $0 }) {
            XCTAssertEqual(error, .canceled)
        }
        XCTAssertEqual(try store.range(RangeRequest(key: b("gone"))).kvs.count, 0)
        XCTAssertEqual(try store.put(PutRequest(key: b("next"), value: b("1"))).header?.revision, 2, "no revision was used")
    }

    func testPutReturnsPrevKVOnlyWhenAsked() throws {
        let store = makeStore()
        let first = try store.put(PutRequest(key: b("a"), value: b("1"), prevKV: true))
        XCTAssertNil(first.prevKV, "no previous kv for a new key")

        let second = try store.put(PutRequest(key: b("a"), value: b("2"), prevKV: true))
        XCTAssertEqual(second.prevKV, KeyValue(key: b("a"), createRevision: 2, modRevision: 2, version: 1, value: b("1"), lease: 0))

        let third = try store.put(PutRequest(key: b("a"), value: b("3")))
        XCTAssertNil(third.prevKV)
    }

    func testPutAfterDeleteHasNoPrevKV() throws {
        let store = makeStore()
        try store.put("a", "1")
        try store.delete("a")
        XCTAssertNil(try store.put(PutRequest(key: b("a"), value: b("2"), prevKV: true)).prevKV)
    }

    func testValuesAreStoredByteExact() throws {
        let store = makeStore()
        let values: [[UInt8]] = [
            [0x00],
            [0xff, 0xfe, 0x00, 0x80],
            Array(0...255),
            b("k8s\0") + [0x0a, 0x0b, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x03, 0x50, 0x6f, 0x64, 0x00, 0xff],
            b("k8s:enc:aescbc:v1:key1:") + [0x00, 0xde, 0xad, 0xbe, 0xef],
            b("{\"kind\":\"Widget\"}"),
        ]
        for (i, value) in values.enumerated() {
            try store.put(b("/registry/things/\(i)"), value)
        }
        for (i, value) in values.enumerated() {
            let kv = try XCTUnwrap(store.range(RangeRequest(key: b("/registry/things/\(i)"))).kvs.first)
            XCTAssertEqual(kv.value, value)
        }
    }

    func testKeysAreStoredByteExact() throws {
        let store = makeStore()
        let keys: [[UInt8]] = [[0x00], [0xff], b("/registry/a") + [0x00, 0xff, 0x00], b("k8s\0")]
        for key in keys { try store.put(key, key) }
        for key in keys {
            let kv = try XCTUnwrap(store.range(RangeRequest(key: key)).kvs.first)
            XCTAssertEqual(kv.key, key)
            XCTAssertEqual(kv.value, key)
        }
        XCTAssertEqual(try store.range(RangeRequest(key: [0], rangeEnd: [0])).count, 4)
    }

    func testEmptyValueIsAValue() throws {
        let store = makeStore()
        try store.put("a", "")
        let kv = try XCTUnwrap(store.get("a"))
        XCTAssertEqual(kv.value, [])
        XCTAssertEqual(kv.version, 1)
    }

    func testPutWithEmptyKeyFails() throws {
        let store = makeStore()
        assertThrows(.emptyKey) { try store.put(PutRequest(key: [], value: b("v"))) }
        XCTAssertEqual(store.currentRevision, 1)
    }

    func testPutWithUnknownLeaseFails() throws {
        let store = makeStore()
        try store.put("a", "1")
        assertThrows(.leaseNotFound) { try store.put(PutRequest(key: b("a"), value: b("2"), lease: 42)) }
        assertThrows(.leaseNotFound) { try store.put(PutRequest(key: b("b"), value: b("2"), lease: -1)) }
        XCTAssertEqual(try store.get("a")?.valueString, "1")
        XCTAssertNil(try store.get("b"))
        XCTAssertEqual(store.currentRevision, 2)
        XCTAssertEqual(EtcdError.leaseNotFound.code, .notFound)
        XCTAssertEqual(EtcdError.leaseNotFound.message, "etcdserver: requested lease not found")
    }

    func testPutIgnoreValueKeepsTheValueAndWritesANewVersion() throws {
        let store = makeStore()
        try store.put("a", "keep")
        var p = PutRequest(key: b("a"), value: [], prevKV: true)
        p.ignoreValue = true
        let response = try store.put(p)
        XCTAssertEqual(response.header?.revision, 3)
        XCTAssertEqual(response.prevKV?.valueString, "keep")
        let kv = try XCTUnwrap(store.get("a"))
        XCTAssertEqual(kv.valueString, "keep")
        XCTAssertEqual([kv.createRevision, kv.modRevision, kv.version], [2, 3, 2])
    }

    func testPutIgnoreLeaseKeepsTheLeaseAndTakesTheNewValue() throws {
        let store = makeStore()
        try store.put("a", "old")
        var p = PutRequest(key: b("a"), value: b("new"))
        p.ignoreLease = true
        XCTAssertEqual(try store.put(p).header?.revision, 3)
        let kv = try XCTUnwrap(store.get("a"))
        XCTAssertEqual(kv.valueString, "new")
        XCTAssertEqual(kv.lease, 0)
        XCTAssertEqual(kv.version, 2)
    }

    func testPutIgnoreValueWithAValueFails() throws {
        let store = makeStore()
        try store.put("a", "1")
        var p = PutRequest(key: b("a"), value: b("x"))
        p.ignoreValue = true
        assertThrows(.valueProvided) { try store.put(p) }
        XCTAssertEqual(store.currentRevision, 2)
        XCTAssertEqual(EtcdError.valueProvided.message, "etcdserver: value is provided")
    }

    func testPutIgnoreLeaseWithALeaseFails() throws {
        let store = makeStore()
        try store.put("a", "1")
        var p = PutRequest(key: b("a"), value: b("x"), lease: 7)
        p.ignoreLease = true
        assertThrows(.leaseProvided) { try store.put(p) }
        XCTAssertEqual(store.currentRevision, 2)
        XCTAssertEqual(EtcdError.leaseProvided.message, "etcdserver: lease is provided")
    }

    func testPutIgnoreValueOrLeaseOnAbsentKeyFails() throws {
        let store = makeStore()
        var ignoreValue = PutRequest(key: b("a"), value: [])
        ignoreValue.ignoreValue = true
        var ignoreLease = PutRequest(key: b("a"), value: b("v"))
        ignoreLease.ignoreLease = true
        assertThrows(.keyNotFound) { try store.put(ignoreValue) }
        assertThrows(.keyNotFound) { try store.put(ignoreLease) }

        try store.put("a", "1")
        try store.delete("a")
        assertThrows(.keyNotFound) { try store.put(ignoreValue) }
        XCTAssertEqual(store.currentRevision, 3)
        XCTAssertEqual(EtcdError.keyNotFound.message, "etcdserver: key not found")
    }

    func testTopLevelPutChecksLeaseBeforeKeyExistence() throws {
        // applierV3backend.Put looks the lease up first when called outside a txn.
        let store = makeStore()
        var p = PutRequest(key: b("absent"), value: [], lease: 9)
        p.ignoreValue = true
        assertThrows(.leaseNotFound) { try store.put(p) }
    }

    // MARK: delete

    func testDeleteSingleKeyReportsCountAndNewRevision() throws {
        let store = makeStore()
        try store.put("a", "1")
        try store.put("ab", "1")
        let response = try store.delete("a")
        XCTAssertEqual(response.deleted, 1)
        XCTAssertEqual(response.header?.revision, 4)
        XCTAssertEqual(response.prevKVs, [])
        XCTAssertNil(try store.get("a"))
        XCTAssertNotNil(try store.get("ab"), "a single-key delete does not touch longer keys")
    }

    func testDeleteReturnsPrevKVsInKeyOrderWhenAsked() throws {
        let store = makeStore()
        try store.put("p/b", "b1")                                 // 2
        try store.put("p/a", "a1")                                 // 3
        try store.put("p/a", "a2")                                 // 4
        try store.put("q", "q")                                    // 5
        let response = try store.deleteRange(DeleteRangeRequest(key: b("p/"), rangeEnd: prefixEnd("p/"), prevKV: true))
        XCTAssertEqual(response.deleted, 2)
        XCTAssertEqual(response.header?.revision, 6)
        XCTAssertEqual(response.prevKVs, [
            KeyValue(key: b("p/a"), createRevision: 3, modRevision: 4, version: 2, value: b("a2"), lease: 0),
            KeyValue(key: b("p/b"), createRevision: 2, modRevision: 2, version: 1, value: b("b1"), lease: 0),
        ])
        XCTAssertEqual(try store.keys(RangeRequest(key: [0], rangeEnd: [0])), ["q"])
    }

    func testDeletePrefixLeavesSiblingPrefixes() throws {
        let store = makeStore()
        for key in ["/registry/pods", "/registry/pods/a", "/registry/pods/b", "/registry/podsx"] { try store.put(key, "v") }
        let response = try store.delete("/registry/pods/", rangeEnd: prefixEnd("/registry/pods/"))
        XCTAssertEqual(response.deleted, 2)
        XCTAssertEqual(try store.keys(RangeRequest(key: [0], rangeEnd: [0])), ["/registry/pods", "/registry/podsx"])
    }

    func testDeleteFromKeyRemovesEveryKeyAtOrAfterIt() throws {
        let store = makeStore()
        for key in ["a", "b", "c", "d"] { try store.put(key, "v") }
        let response = try store.delete("b", rangeEnd: fromKey)
        XCTAssertEqual(response.deleted, 3)
        XCTAssertEqual(try store.keys(RangeRequest(key: [0], rangeEnd: [0])), ["a"])
    }

    func testDeleteAllKeysWithZeroKeyAndZeroRangeEnd() throws {
        let store = makeStore()
        for key in ["a", "b", "c"] { try store.put(key, "v") }
        let response = try store.deleteRange(DeleteRangeRequest(key: [0], rangeEnd: [0]))
        XCTAssertEqual(response.deleted, 3)
        XCTAssertEqual(response.header?.revision, 5)
        XCTAssertEqual(try store.range(RangeRequest(key: [0], rangeEnd: [0])).count, 0)
    }

    func testDeletedKeysShareOneRevisionAndStayInHistory() throws {
        let store = makeStore()
        try store.put("p/a", "a")                                  // 2
        try store.put("p/b", "b")                                  // 3
        try store.delete("p/", rangeEnd: prefixEnd("p/"))          // 4
        XCTAssertEqual(try store.keys(RangeRequest(key: b("p/"), rangeEnd: prefixEnd("p/"), revision: 3)), ["p/a", "p/b"])
        XCTAssertEqual(try store.keys(RangeRequest(key: b("p/"), rangeEnd: prefixEnd("p/"), revision: 4)), [])
    }

    func testDeleteWithEmptyKeyFails() throws {
        let store = makeStore()
        assertThrows(.emptyKey) { try store.deleteRange(DeleteRangeRequest(key: [])) }
        assertThrows(.emptyKey) { try store.deleteRange(DeleteRangeRequest(key: [], rangeEnd: [0])) }
    }

    func testDeleteOfMissingKeyWithPrevKVReturnsNothing() throws {
        let store = makeStore()
        let response = try store.deleteRange(DeleteRangeRequest(key: b("nope"), prevKV: true))
        XCTAssertEqual(response.deleted, 0)
        XCTAssertEqual(response.prevKVs, [])
        XCTAssertEqual(response.header?.revision, 1)
    }
}
