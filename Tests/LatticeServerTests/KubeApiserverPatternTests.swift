import EtcdAPI
import GRPCWire
import NIOCore
import XCTest

/// kube-apiserver's storage pattern end to end over gRPC (usage doc §2 and §5): a watch cache
/// started from a paged, pinned LIST; creates, guaranteed updates and deletes as txns; event
/// leases; the compactor's bookkeeping txn; health reads; the Status version check.
final class KubeApiserverPatternTests: XCTestCase {
    private var h: ServerHarness!

    override func setUp() async throws {
        h = ServerHarness()
        try await h.start { $0.watchProgressNotifyInterval = .milliseconds(300) }
    }

    override func tearDown() async throws { try await h.stop() }

    private func key(_ name: String) -> [UInt8] { Array("/registry/pods/default/\(name)".utf8) }
    private let prefix = Array("/registry/pods/".utf8)
    private let prefixEnd = Array("/registry/pods0".utf8)

    private func create(_ name: String, _ value: String, lease: Int64 = 0) async throws -> TxnResponse {
        try await h.txn(TxnRequest(
            compare: [Compare(key: key(name), target: .mod, result: .equal, .modRevision(0))],
            success: [RequestOp(.put(PutRequest(key: key(name), value: Array(value.utf8), lease: lease)))]))
    }

    /// GuaranteedUpdate: read, then CAS on mod_revision; on conflict the else branch returns the
    /// current object and the caller retries.
    private func update(_ name: String, _ transform: (String) -> String) async throws -> Int64 {
        var current = try await h.get("/registry/pods/default/\(name)")
        while true {
            let kv = current.kvs[0]
            let t = TxnRequest(
                compare: [Compare(key: key(name), target: .mod, result: .equal, .modRevision(kv.modRevision))],
                success: [RequestOp(.put(PutRequest(key: key(name), value: Array(transform(String(decoding: kv.value, as: UTF8.self)).utf8))))],
                failure: [RequestOp(.range(RangeRequest(key: key(name))))])
            let r = try await h.txn(t)
            if r.succeeded {
                guard case .put(let put)? = r.responses.first?.response else { XCTFail("no put response"); return 0 }
                XCTAssertEqual(put.header?.revision, r.header?.revision, "1.28–1.31 read the inner header")
                return r.header!.revision
            }
            guard case .range(let fresh)? = r.responses.first?.response else { XCTFail("no else-branch range"); return 0 }
            current = fresh
        }
    }

    private func delete(_ name: String, at modRevision: Int64) async throws -> TxnResponse {
        try await h.txn(TxnRequest(
            compare: [Compare(key: key(name), target: .mod, result: .equal, .modRevision(modRevision))],
            success: [RequestOp(.deleteRange(DeleteRangeRequest(key: key(name))))],
            failure: [RequestOp(.range(RangeRequest(key: key(name))))]))
    }

    /// A paged LIST pinned to the first page's revision, as the cacher does on start.
    private func list(pageSize: Int64) async throws -> (kvs: [KeyValue], revision: Int64, counts: [Int64]) {
        var request = RangeRequest(key: prefix, rangeEnd: prefixEnd, limit: pageSize)
        var all: [KeyValue] = []
        var counts: [Int64] = []
        var pinned: Int64 = 0
        while true {
            let page: RangeResponse = try await h.call("/etcdserverpb.KV/Range", request)
            if pinned == 0 { pinned = page.header!.revision }
            all += page.kvs
            counts.append(page.count)
            XCTAssertEqual(page.more, Int64(page.kvs.count) < page.count, "hasMore = len(kvs) < count (1.32+) agrees with more")
            guard page.more, let last = page.kvs.last else { break }
            request = RangeRequest(key: last.key + [0], rangeEnd: prefixEnd, limit: pageSize, revision: pinned)
        }
        return (all, pinned, counts)
    }

    func testWatchCacheSeesEveryChangeAfterAPinnedPagedList() async throws {
        // Version check at start-up (1.31+).
        let status: StatusResponse = try await h.call("/etcdserverpb.Maintenance/Status", StatusRequest())
        XCTAssertTrue(status.version >= "3.5.13")

        for i in 0..<7 { _ = try await create("p\(i)", "{\"i\":\(i)}") }
        let listed = try await list(pageSize: 2)
        XCTAssertEqual(listed.kvs.count, 7)
        XCTAssertEqual(listed.counts, [7, 5, 3, 1], "count is the keys left from the page's start key")

        // The cache's watch: from list revision + 1, prev_kv, progress_notify, kube metadata.
        let w = try await h.openWatch(metadata: [("hasleader", "true"), ("source", "cache"), ("client-api-version", "3.5")])
        w.create("/registry/pods/", end: "/registry/pods0", start: listed.revision + 1, prevKV: true, progressNotify: true)
        let confirmation = try await w.next()
        XCTAssertTrue(confirmation.created)

        // Meanwhile: a concurrent write lands between the list and the watch.
        let created = try await create("late", "{}")
        XCTAssertTrue(created.succeeded)
        let again = try await create("late", "{}")
        XCTAssertFalse(again.succeeded)
        XCTAssertTrue(again.responses.isEmpty)

        let updatedRevision = try await update("p3") { $0 + " " }
        let p5 = try await h.get("/registry/pods/default/p5")
        let stale = try await delete("p5", at: p5.kvs[0].modRevision - 1)
        XCTAssertFalse(stale.succeeded)
        guard case .range(let current)? = stale.responses.first?.response else { return XCTFail("no current object") }
        XCTAssertEqual(current.kvs.first?.modRevision, p5.kvs[0].modRevision)
        let deleted = try await delete("p5", at: p5.kvs[0].modRevision)
        XCTAssertTrue(deleted.succeeded)
        guard case .deleteRange(let dr)? = deleted.responses.first?.response else { return XCTFail("no delete response") }
        XCTAssertEqual(dr.deleted, 1)
        XCTAssertEqual(dr.header?.revision, deleted.header?.revision)

        let events = try await w.events(3)
        XCTAssertEqual(events.map(\.event.type), [.put, .put, .delete])
        XCTAssertEqual(events[0].event.kv?.key, key("late"))
        XCTAssertEqual(events[1].event.kv?.modRevision, updatedRevision)
        XCTAssertEqual(events[1].event.prevKV?.value, Array("{\"i\":3}".utf8))
        XCTAssertEqual(events[2].event.prevKV?.key, key("p5"))

        // Consistent read (1.31+): progress request, answered at the current revision once the
        // stream has delivered everything before it.
        w.requestProgress()
        var progress = try await w.next()
        while progress.watchID != -1 { progress = try await w.next() }
        XCTAssertEqual(progress.header?.revision, deleted.header?.revision)
    }

    func testEventLeasesCompactorAndHealthReads() async throws {
        // Events get a lease with --event-ttl (1 h) plus a minute.
        let lease = try await h.grant(ttl: 3660)
        let event = try await h.txn(TxnRequest(
            compare: [Compare(key: Array("/registry/events/default/e1".utf8), target: .mod, result: .equal, .modRevision(0))],
            success: [RequestOp(.put(PutRequest(key: Array("/registry/events/default/e1".utf8), value: Array("k8s\u{0}e".utf8), lease: lease.id)))]))
        XCTAssertTrue(event.succeeded)

        // The compactor's bookkeeping: VERSION == 0 on compact_rev_key elects this apiserver.
        let compactKey = Array("compact_rev_key".utf8)
        func compactorTxn(version: Int64) -> TxnRequest {
            TxnRequest(
                compare: [Compare(key: compactKey, target: .version, result: .equal, .version(version))],
                success: [RequestOp(.put(PutRequest(key: compactKey, value: Array("2".utf8))))],
                failure: [RequestOp(.range(RangeRequest(key: compactKey)))])
        }
        let first = try await h.txn(compactorTxn(version: 0))
        XCTAssertTrue(first.succeeded)
        let second = try await h.txn(compactorTxn(version: 0))
        XCTAssertFalse(second.succeeded)
        guard case .range(let r)? = second.responses.first?.response else { return XCTFail("no range") }
        XCTAssertEqual(r.kvs.first?.version, 1)
        let revision = first.header!.revision
        let _: CompactionResponse = try await h.call("/etcdserverpb.KV/Compact", CompactionRequest(revision: revision))
        do {
            _ = try await h.get("/registry/events/default/e1", revision: revision - 1)
            XCTFail("read below the compaction")
        } catch let status as GRPCStatus {
            XCTAssertEqual(status.code, .outOfRange)
            XCTAssertEqual(status.message, "etcdserver: mvcc: required revision has been compacted")
        }

        // /registry/health reads and the "current RV" probe on an absent exact key.
        let health = try await h.get("/registry/health")
        XCTAssertTrue(health.kvs.isEmpty)
        XCTAssertEqual(health.header?.revision, revision)
        let probe: RangeResponse = try await h.call("/etcdserverpb.KV/Range", RangeRequest(key: Array("/registry/pods".utf8), limit: 1))
        XCTAssertEqual(probe.header?.revision, revision)

        // Count for the object-count metric.
        var count = RangeRequest(key: Array("/registry/events/".utf8), rangeEnd: Array("/registry/events0".utf8))
        count.countOnly = true
        let counted: RangeResponse = try await h.call("/etcdserverpb.KV/Range", count)
        XCTAssertEqual(counted.count, 1)
        XCTAssertTrue(counted.kvs.isEmpty)

        // The event disappears with its lease, not before.
        h.clock.advance(byMilliseconds: 3_659_000)
        XCTAssertEqual(h.server.store.expireLeases(), [])
        h.clock.advance(byMilliseconds: 1_000)
        XCTAssertEqual(h.server.store.expireLeases(), [lease.id])
        let gone = try await h.get("/registry/events/default/e1")
        XCTAssertTrue(gone.kvs.isEmpty)
    }
}
