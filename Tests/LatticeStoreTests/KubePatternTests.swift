import XCTest
import EtcdAPI
import LatticeStore

/// The requests kube-apiserver issues (usage doc §2), checked the way it reads the answers
/// (checklist items 1–26 that apply to the store).
final class KubePatternTests: XCTestCase {
    private let pod = "/registry/pods/default/web-0"
    /// A protobuf-encoded object as kube-apiserver stores it: "k8s\0" magic, then binary.
    private let podBytes: [UInt8] = b("k8s\0") + [0x0a, 0x0d, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x03, 0x50, 0x6f, 0x64,
                                                  0x00, 0xff, 0x80, 0x12, 0x00]

    // §2.2
    private func create(_ store: MVCCStore, _ key: String, _ value: [UInt8]) throws -> TxnResponse {
        try store.txn(TxnRequest(compare: [.mod(key, .equal, 0)],
                                 success: [.put(PutRequest(key: b(key), value: value))], failure: []))
    }

    // §2.3
    private func update(_ store: MVCCStore, _ key: String, _ value: [UInt8], expecting modRevision: Int64) throws -> TxnResponse {
        try store.txn(TxnRequest(compare: [.mod(key, .equal, modRevision)],
                                 success: [.put(PutRequest(key: b(key), value: value))], failure: [.range(key)]))
    }

    // §2.4
    private func delete(_ store: MVCCStore, _ key: String, expecting modRevision: Int64) throws -> TxnResponse {
        try store.txn(TxnRequest(compare: [.mod(key, .equal, modRevision)], success: [.delete(key)], failure: [.range(key)]))
    }

    // §2.9
    private func compactorTxn(_ store: MVCCStore, version: Int64, rev: Int64) throws -> TxnResponse {
        var compare = Compare()                                    // VERSION / EQUAL are the proto3 defaults
        compare.key = b("compact_rev_key")
        compare.targetUnion = .version(version)
        return try store.txn(TxnRequest(compare: [compare], success: [.put("compact_rev_key", "\(rev)")],
                                        failure: [.range("compact_rev_key")]))
    }

    func testHealthProbeOnFreshStore() throws {
        // Checklist 1.
        let store = makeStore()
        let response = try store.range(RangeRequest(key: b("/registry/health")))
        XCTAssertEqual(response.kvs, [])
        XCTAssertEqual(response.count, 0)
        XCTAssertEqual(response.header?.revision, 1)
    }

    func testCreateTxnOnAbsentKeySucceedsWithMatchingRevisions() throws {
        // Checklist 2.
        let store = makeStore()
        try store.put("/registry/other", "x")                      // 2
        let response = try create(store, pod, podBytes)
        XCTAssertTrue(response.succeeded)
        XCTAssertEqual(response.header?.revision, 3)
        let putHeader = try XCTUnwrap(response.responses[0].put?.header, "1.28–1.31 dereference this header")
        XCTAssertEqual(putHeader.revision, 3)
    }

    func testCreateTxnOnExistingKeyFailsWithoutResponses() throws {
        // Checklist 3.
        let store = makeStore()
        _ = try create(store, pod, podBytes)                       // 2
        let response = try create(store, pod, b("other"))
        XCTAssertFalse(response.succeeded)
        XCTAssertEqual(response.responses, [])
        XCTAssertEqual(response.header?.revision, 2)
        XCTAssertEqual(try store.put("/registry/x", "1"), 3, "the next write gets exactly +1")
    }

    func testCreatedObjectReadsBackByteExactWithFreshRevisions() throws {
        // Checklist 4.
        let store = makeStore()
        let rev = try XCTUnwrap(create(store, pod, podBytes).header?.revision)
        let response = try store.range(RangeRequest(key: b(pod), limit: 1))
        XCTAssertEqual(response.kvs, [KeyValue(key: b(pod), createRevision: rev, modRevision: rev, version: 1, value: podBytes, lease: 0)])
    }

    func testUpdateTxnWithCurrentModRevisionSucceeds() throws {
        // Checklist 5.
        let store = makeStore()
        let created = try XCTUnwrap(create(store, pod, podBytes).header?.revision)
        let response = try update(store, pod, podBytes + [1], expecting: created)
        XCTAssertTrue(response.succeeded)
        let newRevision = try XCTUnwrap(response.header?.revision)
        XCTAssertEqual(newRevision, created + 1)
        XCTAssertEqual(response.responses[0].put?.header?.revision, newRevision)
        let kv = try XCTUnwrap(store.get(pod))
        XCTAssertEqual([kv.createRevision, kv.modRevision, kv.version], [created, newRevision, 2])
        XCTAssertEqual(kv.value, podBytes + [1])
    }

    func testUpdateTxnWithStaleModRevisionReturnsTheCurrentObject() throws {
        // Checklist 6.
        let store = makeStore()
        let created = try XCTUnwrap(create(store, pod, podBytes).header?.revision)
        let updated = try XCTUnwrap(update(store, pod, b("v2"), expecting: created).header?.revision)
        let response = try update(store, pod, b("v3"), expecting: created)
        XCTAssertFalse(response.succeeded)
        XCTAssertEqual(response.header?.revision, updated, "no revision bump")
        let range = try XCTUnwrap(response.responses.first?.range)
        XCTAssertEqual(range.kvs, [KeyValue(key: b(pod), createRevision: created, modRevision: updated, version: 2, value: b("v2"), lease: 0)])
        XCTAssertEqual(store.currentRevision, updated)
    }

    func testUpdateTxnOnAbsentKeyReturnsAnEmptyRange() throws {
        // Checklist 7.
        let store = makeStore()
        let response = try update(store, pod, podBytes, expecting: 5)
        XCTAssertFalse(response.succeeded)
        let range = try XCTUnwrap(response.responses.first?.range, "1.32+ fails on an empty responses list")
        XCTAssertEqual(range.kvs, [])
        XCTAssertEqual(range.count, 0)
    }

    func testUpdateTxnWithModZeroCreatesAnAbsentKey() throws {
        // Checklist 8 (GuaranteedUpdate with ignoreNotFound, e.g. master leases).
        let store = makeStore()
        let response = try update(store, "/registry/masterleases/10.0.0.1", podBytes, expecting: 0)
        XCTAssertTrue(response.succeeded)
        XCTAssertEqual(try store.get("/registry/masterleases/10.0.0.1")?.version, 1)
    }

    func testDeleteTxnWithCurrentModRevisionDeletes() throws {
        // Checklist 9.
        let store = makeStore()
        let created = try XCTUnwrap(create(store, pod, podBytes).header?.revision)
        let response = try delete(store, pod, expecting: created)
        XCTAssertTrue(response.succeeded)
        let deleteResponse = try XCTUnwrap(response.responses.first?.deleteRange)
        XCTAssertEqual(deleteResponse.deleted, 1)
        XCTAssertEqual(deleteResponse.header?.revision, response.header?.revision)
        XCTAssertEqual(response.header?.revision, created + 1)
        XCTAssertEqual(try store.range(RangeRequest(key: b(pod))).kvs, [])
    }

    func testDeleteTxnWithStaleModRevisionLeavesTheObject() throws {
        // Checklist 10.
        let store = makeStore()
        let created = try XCTUnwrap(create(store, pod, podBytes).header?.revision)
        let updated = try XCTUnwrap(update(store, pod, b("v2"), expecting: created).header?.revision)
        let response = try delete(store, pod, expecting: created)
        XCTAssertFalse(response.succeeded)
        XCTAssertEqual(response.responses.first?.range?.kvs.first?.modRevision, updated)
        XCTAssertEqual(try store.get(pod)?.valueString, "v2")
    }

    func testRecreateAfterDeleteStartsANewLifetime() throws {
        // Checklist 11.
        let store = makeStore()
        let first = try XCTUnwrap(create(store, pod, podBytes).header?.revision)
        _ = try delete(store, pod, expecting: first)
        let second = try XCTUnwrap(create(store, pod, podBytes).header?.revision)
        let kv = try XCTUnwrap(store.get(pod))
        XCTAssertEqual([kv.createRevision, kv.modRevision, kv.version], [second, second, 1])
        XCTAssertNotEqual(second, first)
    }

    func testListPagesReportRemainingCountsLikeKubectlChunking() throws {
        // Checklist 59 at store level: 7 pods, chunk size 2 → 4 pages; remaining = count − limit.
        let store = makeStore()
        for i in 1...7 { _ = try create(store, "/registry/pods/ns/pod-\(i)", podBytes) }
        let prefix = b("/registry/pods/ns/")
        var key = prefix
        var pinned: Int64 = 0
        var remaining: [Int64] = []
        var pages = 0
        var seen: [String] = []
        while true {
            let page = try store.range(RangeRequest(key: key, rangeEnd: prefixEnd(prefix), limit: 2, revision: pinned))
            pages += 1
            if pinned == 0 { pinned = page.header!.revision }
            seen += page.kvs.map(\.keyString)
            let hasMore = Int64(page.kvs.count) < page.count       // 1.32+ ignores `more`
            XCTAssertEqual(hasMore, page.more)                     // 1.28–1.31 use `more`
            guard hasMore else { break }
            remaining.append(page.count - 2)
            key = page.kvs.last!.key + [0]
        }
        XCTAssertEqual(pages, 4)
        XCTAssertEqual(remaining, [5, 3, 1])
        XCTAssertEqual(seen, (1...7).map { "/registry/pods/ns/pod-\($0)" })
    }

    func testObjectCountMetricUsesCountOnly() throws {
        // Usage doc §2.6.
        let store = makeStore()
        for i in 1...4 { _ = try create(store, "/registry/pods/ns/p\(i)", podBytes) }
        _ = try create(store, "/registry/podtemplates/ns/t", podBytes)
        var r = RangeRequest(key: b("/registry/pods/"), rangeEnd: prefixEnd("/registry/pods/"))
        r.countOnly = true
        XCTAssertEqual(try store.range(r).count, 4)
    }

    func testAbsentKeyProbeReturnsTheGlobalCurrentRevision() throws {
        // Checklist 20; usage doc §2.7.
        let store = makeStore()
        _ = try create(store, "/registry/pods/ns/p", podBytes)     // 2
        _ = try create(store, "/registry/configmaps/ns/c", podBytes) // 3
        try store.put("compact_rev_key", "0")                      // 4
        let probe = try store.range(RangeRequest(key: b("/registry/pods"), limit: 1))
        XCTAssertEqual(probe.kvs, [])
        XCTAssertEqual(probe.header?.revision, 4, "the store's revision, not the newest under /registry/pods/")
        XCTAssertEqual(try store.range(RangeRequest(key: b("/registry/pods"))).header?.revision, 4)
    }

    func testCompactorElectionTxnOnFreshKey() throws {
        // Checklist 23.
        let store = makeStore()
        try store.put("/registry/x", "1")                          // 2
        let first = try compactorTxn(store, version: 0, rev: 0)
        XCTAssertTrue(first.succeeded)
        XCTAssertEqual(try store.get("compact_rev_key")?.version, 1)

        let second = try compactorTxn(store, version: 0, rev: 0)
        XCTAssertFalse(second.succeeded)
        let kv = try XCTUnwrap(second.responses.first?.range?.kvs.first, "kube indexes kvs[0] without a check")
        XCTAssertEqual(kv.version, 1)
        XCTAssertEqual(second.header?.revision, first.header?.revision)
    }

    func testCompactorLoopCompactsThePreviouslyObservedRevision() throws {
        // Usage doc §2.9: t/rev local state; Compact(previous rev) after each won election.
        let store = makeStore()
        var t: Int64 = 0
        var rev: Int64 = 0
        var compacted: [Int64] = []
        for tick in 1...3 {
            for i in 0..<3 { try store.put("/registry/events/ns/e\(tick)-\(i)", "x") }
            let response = try compactorTxn(store, version: t, rev: rev)
            XCTAssertTrue(response.succeeded)
            let previous = rev
            t += 1
            rev = try XCTUnwrap(response.header?.revision)
            if previous != 0 {
                _ = try store.compact(CompactionRequest(revision: previous))
                compacted.append(previous)
            }
        }
        XCTAssertEqual(try store.get("compact_rev_key")?.version, 3, "version grows by exactly one per won election")
        XCTAssertEqual(compacted.count, 2)
        XCTAssertEqual(store.compactRevision, compacted.last)
        // A second apiserver with stale state loses and learns the current version.
        let stale = try compactorTxn(store, version: 1, rev: 5)
        XCTAssertFalse(stale.succeeded)
        XCTAssertEqual(stale.responses.first?.range?.kvs.first?.version, 3)
        // Another party compacting further makes the compactor's Compact fail harmlessly.
        assertThrows(.compacted) { try store.compact(CompactionRequest(revision: compacted.first!)) }
    }

    func testWatchCacheConsistentListFlowAtPinnedRevision() throws {
        // Usage doc §2.8 (1.29+): paged initial list of 10000 pinned to page 1's revision.
        let store = makeStore()
        for i in 0..<25 { _ = try create(store, "/registry/secrets/ns/s\(i < 10 ? "0" : "")\(i)", podBytes) }
        let prefix = b("/registry/secrets/")
        var key = prefix
        var pinned: Int64 = 0
        var synced: [KeyValue] = []
        repeat {
            let page = try store.range(RangeRequest(key: key, rangeEnd: prefixEnd(prefix), limit: 10, revision: pinned))
            if pinned == 0 { pinned = page.header!.revision }
            synced += page.kvs
            _ = try create(store, "/registry/secrets/ns/zz-during-\(synced.count)", podBytes)
            guard page.more else { break }
            key = page.kvs.last!.key + [0]
        } while true
        XCTAssertEqual(synced.count, 25)
        XCTAssertTrue(synced.allSatisfy { $0.modRevision <= pinned })
        XCTAssertEqual(Set(synced.map(\.key)).count, 25)
    }
}
