import EtcdAPI
import GRPCWire
import LatticeStore
import NIOCore
import XCTest

/// Watch semantics as etcd 3.5.13+ serves them (kube-apiserver usage doc §5, items 27–43).
final class WatchTests: XCTestCase {
    private var h: ServerHarness!

    override func setUp() async throws {
        h = ServerHarness()
        try await h.start { $0.watchProgressNotifyInterval = .milliseconds(200) }
    }

    override func tearDown() async throws { try await h.stop() }

    func testCreateIsConfirmedBeforeAnyEventWithCurrentRevisionInHeader() async throws {
        try await h.put("/registry/pods/a", "1")
        let w = try await h.openWatch(metadata: [("hasleader", "true"), ("source", "cache")])
        w.create("/registry/pods/", end: "/registry/pods0", start: 3, prevKV: true, progressNotify: true)
        let created = try await w.next()
        XCTAssertTrue(created.created)
        XCTAssertEqual(created.watchID, 0)
        XCTAssertTrue(created.events.isEmpty)
        XCTAssertEqual(created.header?.revision, 2)
    }

    func testPutUpdateDeleteEventsWithPrevKV() async throws {
        let w = try await h.openWatch()
        w.create("/registry/pods/", end: "/registry/pods0", prevKV: true)
        _ = try await w.next()
        try await h.put("/registry/pods/a", "v1")
        try await h.put("/registry/pods/a", "v2")
        try await h.delete("/registry/pods/a")
        let events = try await w.events(3)
        XCTAssertEqual(events.map(\.event.type), [.put, .put, .delete])
        XCTAssertEqual(events[0].event.kv?.createRevision, events[0].event.kv?.modRevision)
        XCTAssertNil(events[0].event.prevKV)
        XCTAssertEqual(events[1].event.prevKV?.value, Array("v1".utf8))
        XCTAssertEqual(events[1].event.prevKV?.modRevision, 2)
        XCTAssertEqual(events[2].event.kv?.key, Array("/registry/pods/a".utf8))
        XCTAssertEqual(events[2].event.kv?.modRevision, 4)
        XCTAssertEqual(events[2].event.prevKV?.value, Array("v2".utf8))
        XCTAssertEqual(events.map(\.revision), [2, 3, 4])
    }

    func testWatchFromOldRevisionReplaysEveryVersionThenContinuesLiveWithoutGapOrDuplicate() async throws {
        for i in 0..<50 { try await h.put("/k/\(i % 5)", "v\(i)") }
        let w = try await h.openWatch()
        w.create("/k/", end: "/k0", start: 2, prevKV: true)
        _ = try await w.next()
        // Writes while the watcher is catching up.
        for i in 50..<100 { try await h.put("/k/\(i % 5)", "v\(i)") }
        let events = try await w.events(100)
        XCTAssertEqual(events.map { $0.event.kv!.modRevision }, Array(2...101))
        XCTAssertEqual(events.map { String(decoding: $0.event.kv!.value, as: UTF8.self) }, (0..<100).map { "v\($0)" })
        for e in events.dropFirst(5) { XCTAssertNotNil(e.event.prevKV, "every non-create carries prev_kv") }
        let extra = try await w.expectSilence(for: 0.2)
        XCTAssertNil(extra, "no duplicate after catching up")
    }

    /// etcd answers a watcher that is catching up from history with the store's revision in the
    /// header (the revision the history was read at); live events carry their own revision.
    func testReplayedHistoryCarriesTheStoresRevisionInItsHeaderLikeEtcd() async throws {
        for i in 0..<5 { try await h.put("/h/\(i)", "v") }  // revisions 2...6
        let w = try await h.openWatch()
        w.create("/h/", end: "/h0", start: 2)
        _ = try await w.next()
        let history = try await w.events(5)
        XCTAssertEqual(history.map { $0.event.kv!.modRevision }, [2, 3, 4, 5, 6])
        XCTAssertEqual(Set(history.map(\.revision)), [6])
        try await h.put("/h/x", "v")
        let live = try await w.events(1)
        XCTAssertEqual(live.map(\.revision), [7])
    }

    /// etcd sends an unsynced watcher's history in one response (up to 1,000 revisions), not
    /// one response per revision.
    func testReplayedHistoryArrivesInOneResponseLikeEtcd() async throws {
        for i in 0..<40 { try await h.put("/batch/\(i % 4)", "v\(i)") }  // revisions 2...41
        let w = try await h.openWatch()
        w.create("/batch/", end: "/batch0", start: 2, prevKV: true)
        _ = try await w.next()
        let history = try await w.next()
        XCTAssertEqual(history.events.map { $0.kv!.modRevision }, Array(2...41))
        XCTAssertEqual(history.events.dropFirst(4).filter { $0.prevKV == nil }.count, 0)
        let extra = try await w.expectSilence(for: 0.2)
        XCTAssertNil(extra)
    }

    func testAllEventsOfOneTxnArriveInOneResponse() async throws {
        let w = try await h.openWatch()
        w.create("a", end: "z")
        _ = try await w.next()
        let ops = ["a1", "b1", "c1"].map { RequestOp(.put(PutRequest(key: Array($0.utf8), value: [1]))) }
        _ = try await h.txn(TxnRequest(compare: [], success: ops))
        let r = try await w.next()
        XCTAssertEqual(r.events.count, 3)
        XCTAssertEqual(Set(r.events.map { $0.kv!.modRevision }), [2])
    }

    func testSeveralWatchesOnOneStreamGetDistinctIDsInRequestOrder() async throws {
        let w = try await h.openWatch()
        for key in ["x", "y", "z"] {
            w.create(key)
            let created = try await w.next()
            XCTAssertTrue(created.created)
        }
        try await h.put("y", "1")
        let r = try await w.next()
        XCTAssertEqual(r.watchID, 1)
        XCTAssertEqual(r.events.first?.kv?.key, Array("y".utf8))
    }

    func testWatchStartingBeforeCompactionIsCancelledWithCompactRevision() async throws {
        for i in 0..<5 { try await h.put("c", "\(i)") }
        let _: CompactionResponse = try await h.call("/etcdserverpb.KV/Compact", CompactionRequest(revision: 4))
        let w = try await h.openWatch()
        w.create("c", start: 2)
        let created = try await w.next()
        XCTAssertTrue(created.created)
        let canceled = try await w.next()
        XCTAssertTrue(canceled.canceled)
        XCTAssertEqual(canceled.compactRevision, 4)
        XCTAssertEqual(canceled.watchID, created.watchID)
    }

    func testWatchAtTheCompactionRevisionStillGetsTheDeleteEvent() async throws {
        try await h.put("d", "1")
        try await h.delete("d")  // revision 3
        let _: CompactionResponse = try await h.call("/etcdserverpb.KV/Compact", CompactionRequest(revision: 3))
        let w = try await h.openWatch()
        w.create("d", start: 3)
        _ = try await w.next()
        let r = try await w.next()
        XCTAssertEqual(r.events.first?.type, .delete)
        XCTAssertEqual(r.events.first?.kv?.modRevision, 3)
    }

    func testFutureStartRevisionIsSilentUntilThatRevision() async throws {
        let w = try await h.openWatch()
        w.create("f", start: 11)  // current is 1
        _ = try await w.next()
        for i in 0..<9 { try await h.put("f", "\(i)") }  // revisions 2…10
        let early = try await w.expectSilence(for: 0.2)
        XCTAssertNil(early)
        try await h.put("f", "last")  // revision 11
        let r = try await w.next()
        XCTAssertEqual(r.events.first?.kv?.modRevision, 11)
    }

    func testLeaseExpiryDeletesAllKeysInOneResponse() async throws {
        let lease = try await h.grant(ttl: 15)
        for k in ["e1", "e2", "e3"] { try await h.put(k, "v", lease: lease.id) }
        let w = try await h.openWatch()
        w.create("e", end: "f", prevKV: true)
        _ = try await w.next()
        h.clock.advance(byMilliseconds: 15_001)
        XCTAssertEqual(h.server.store.expireLeases(), [lease.id])
        let r = try await w.next()
        XCTAssertEqual(r.events.map(\.type), [.delete, .delete, .delete])
        XCTAssertEqual(Set(r.events.map { $0.kv!.modRevision }), [5])
        XCTAssertEqual(r.events.map { $0.prevKV?.value }, Array(repeating: Array("v".utf8), count: 3))
    }

    func testCancelStopsEventsAndUnknownCancelGetsNoResponse() async throws {
        let w = try await h.openWatch()
        w.create("g")
        let created = try await w.next()
        w.cancel(created.watchID)
        let canceled = try await w.next()
        XCTAssertTrue(canceled.canceled)
        XCTAssertEqual(canceled.compactRevision, 0)
        w.cancel(99)
        try await h.put("g", "1")
        let silence = try await w.expectSilence(for: 0.2)
        XCTAssertNil(silence)
    }

    func testSingleKeyWatchSeesOnlyThatKey() async throws {
        let w = try await h.openWatch()
        w.create("only")
        _ = try await w.next()
        try await h.put("only2", "x")
        try await h.put("onl", "x")
        try await h.put("only", "y")
        let r = try await w.next()
        XCTAssertEqual(r.events.map { $0.kv!.key }, [Array("only".utf8)])
    }

    /// Many watchers on one stream (single keys, prefixes, one open-ended range): a put reaches
    /// exactly the watchers whose range holds its key, in watch-id order, before and after
    /// half of them are cancelled.
    func testManyWatchersOnOneStreamGetExactlyTheirEvents() async throws {
        let w = try await h.openWatch()
        let n = 3_000
        for i in 0..<n {
            switch i % 3 {
            case 0: w.create("w/\(i)")
            case 1: w.create("p/\(i)/", end: "p/\(i)0")
            default: w.create("z/\(i)", end: "\0")
            }
        }
        var ids: [Int64] = []
        for _ in 0..<n { ids.append(try await w.next().watchID) }
        XCTAssertEqual(ids, (0..<Int64(n)).map { $0 })
        try await h.put("w/0", "x")
        let first = try await w.next().watchID
        XCTAssertEqual(first, 0)
        try await h.put("p/1/a", "x")
        let second = try await w.next().watchID
        XCTAssertEqual(second, 1)
        // Every open-ended range from a key bytewise ≤ "z/5" holds "z/5" ("z/1234" < "z/5").
        try await h.put("z/5", "x")
        let expected = (0..<n).filter { $0 % 3 == 2 && "z/\($0)" <= "z/5" }.map(Int64.init)
        var hit: [Int64] = []
        while hit.count < expected.count { hit.append(try await w.next().watchID) }
        XCTAssertEqual(hit, expected)
        for id in stride(from: 0, to: n, by: 2) { w.cancel(Int64(id)) }
        for _ in stride(from: 0, to: n, by: 2) {
            let canceled = try await w.next().canceled
            XCTAssertTrue(canceled)
        }
        try await h.put("w/3", "x")
        try await h.put("w/0", "y")
        try await h.put("w/6", "x")
        let third = try await w.next().watchID
        XCTAssertEqual(third, 3, "watchers 0 and 6 were cancelled")
        let silence = try await w.expectSilence(for: 0.2)
        XCTAssertNil(silence)
    }

    func testFiltersDropPutsOrDeletes() async throws {
        let w = try await h.openWatch()
        w.create("p", filters: [.noPut])
        _ = try await w.next()
        try await h.put("p", "1")
        try await h.delete("p")
        let r = try await w.next()
        XCTAssertEqual(r.events.map(\.type), [.delete])
    }

    func testProgressRequestWhenSyncedAnswersWithCurrentRevision() async throws {
        try await h.put("q", "1")
        let w = try await h.openWatch()
        w.create("q")
        _ = try await w.next()
        w.requestProgress()
        let r = try await w.next()
        XCTAssertEqual(r.watchID, -1)
        XCTAssertTrue(r.events.isEmpty)
        XCTAssertFalse(r.created)
        XCTAssertFalse(r.canceled)
        XCTAssertEqual(r.compactRevision, 0)
        XCTAssertEqual(r.header?.revision, 2)
    }

    func testProgressNeverOvertakesEvents() async throws {
        let w = try await h.openWatch()
        w.create("r", end: "s")
        _ = try await w.next()
        let harness = h!
        let writer = Task { for i in 0..<200 { try await harness.put("r\(i % 7)", "\(i)") } }
        var lastEventRevision: Int64 = 1
        var progressSeen = 0
        var eventsSeen = 0
        for _ in 0..<40 { w.requestProgress() }
        try await writer.value
        while eventsSeen < 200 || progressSeen < 40 {
            let r = try await w.next()
            if r.watchID == -1 {
                XCTAssertGreaterThanOrEqual(r.header!.revision, lastEventRevision, "progress reported before earlier events")
                progressSeen += 1
            } else {
                for e in r.events {
                    XCTAssertGreaterThan(e.kv!.modRevision, lastEventRevision)
                    lastEventRevision = e.kv!.modRevision
                    eventsSeen += 1
                }
            }
            if progressSeen >= 1 && eventsSeen == 200 { break }
        }
        XCTAssertEqual(eventsSeen, 200)
    }

    func testPeriodicProgressNotificationForIdleWatcher() async throws {
        try await h.put("idle", "1")
        let w = try await h.openWatch()
        w.create("idle", progressNotify: true)
        let created = try await w.next()
        let notify = try await w.next(within: 5)
        XCTAssertEqual(notify.watchID, created.watchID)
        XCTAssertTrue(notify.events.isEmpty)
        XCTAssertEqual(notify.header?.revision, 2)
    }

    func testDuplicateWatchIDAndEmptyRangeAreRefusedOnCreate() async throws {
        let w = try await h.openWatch()
        w.create("a", watchID: 7)
        let first = try await w.next()
        XCTAssertEqual(first.watchID, 7)
        w.create("b", watchID: 7)
        let dup = try await w.next()
        XCTAssertTrue(dup.created && dup.canceled)
        XCTAssertEqual(dup.cancelReason, "mvcc: duplicate watch ID provided on the WatchStream")
        w.create("z", end: "a")
        let empty = try await w.next()
        XCTAssertTrue(empty.canceled)
        XCTAssertEqual(empty.cancelReason, "mvcc: watcher range is empty")
    }

    func testSlowReaderIsCaughtUpFromHistoryNotDropped() async throws {
        // 10 MiB of events for a client that stopped reading: flow control fills the stream's
        // window and queue, the server stops queueing and later serves the rest from the event
        // log — in order, without loss or duplicates.
        let w = try await h.openWatch()
        w.create("big", end: "bih")
        _ = try await w.next()
        w.stream.pauseReading()
        let value = String(repeating: "x", count: 64 * 1024)
        for i in 0..<160 { try await h.put("big\(i)", value) }
        w.stream.resumeReading()
        let events = try await w.events(160, within: 20)
        XCTAssertEqual(events.map { $0.event.kv!.modRevision }, Array(2...161))
        let extra = try await w.expectSilence(for: 0.2)
        XCTAssertNil(extra)
    }
}

extension WatchTests {
    func testCompactionRacingACatchingUpWatchNeverSkipsOrRepeats() async throws {
        for i in 0..<400 { try await h.put("race/\(i % 9)", "\(i)") }   // revisions 2…401
        let w = try await h.openWatch()
        w.create("race/", end: "race0", start: 2)
        _ = try await w.next()
        let _: CompactionResponse = try await h.call("/etcdserverpb.KV/Compact", CompactionRequest(revision: 200))
        var expected: Int64 = 2
        while expected <= 401 {
            let r = try await w.next()
            if r.canceled {
                XCTAssertEqual(r.compactRevision, 200, "cancelled only because history it still needed was compacted")
                XCTAssertLessThan(expected, 200)
                return
            }
            for e in r.events {
                XCTAssertEqual(e.kv?.modRevision, expected, "no gap, no repeat")
                expected += 1
            }
        }
    }
}
