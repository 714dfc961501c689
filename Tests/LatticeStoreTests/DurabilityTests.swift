import EtcdAPI
import LatticeCore
@testable import LatticeStorage
import Synchronization
import XCTest
@testable import LatticeStore

/// Restart keeps revisions, history (for watches from old revisions), leases with their keys and
/// the compaction point: recovery replays the WAL after the newest snapshot.
final class DurabilityTests: XCTestCase {
    private var dir: String!

    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("lattice-durability-\(UUID().uuidString)").path
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func open(snapshotCount: Int = 100_000, clock: any WallClock = SystemWallClock(),
                      walSegmentBytes: Int = 64 << 20) throws -> MVCCStore {
        var c = MVCCStore.Configuration(memberID: 1, clusterID: 2)
        c.dataDirectory = dir
        c.snapshotCount = snapshotCount
        c.walSegmentBytes = walSegmentBytes
        c.wallClock = clock
        return try MVCCStore(configuration: c)
    }

    /// fsyncgate, through the store: a put whose fdatasync fails is not acknowledged, the member
    /// accepts no write after it, and a restart (no reboot: the failed batch's pages could
    /// still be cached) holds every acknowledged put and not the failed one.
    func testAFailedFdatasyncIsNeitherAcknowledgedNorRevived() throws {
        let failing = Flag()
        var c = MVCCStore.Configuration(memberID: 1, clusterID: 2)
        c.dataDirectory = dir
        c.walFault = { point in point == .sync && failing.isSet ? EIO : nil }
        var store: MVCCStore? = try MVCCStore(configuration: c)
        let observed = ReportLog()
        store!.onStorageFailure { _ in observed.append(StorageError(.logUnusable, "observed")) }
        for i in 0..<5 { _ = try store!.put(PutRequest(key: b("k\(i)"), value: b("v\(i)"))) }
        XCTAssertEqual(observed.count, 0)
        failing.set()
        XCTAssertThrowsError(try store!.put(PutRequest(key: b("lost"), value: b("x")))) { error in
            XCTAssertEqual((error as? EtcdError)?.code, .unavailable)
            XCTAssertTrue("\(error)".contains("fdatasync"), "\(error)")
        }
        XCTAssertThrowsError(try store!.put(PutRequest(key: b("after"), value: b("y"))), "no write after a failed sync")
        XCTAssertEqual(observed.count, 1, "the failure is announced once (the server exits on it)")
        store!.close()
        store = nil

        let reopened = try open()
        defer { reopened.close() }
        let kvs = try reopened.range(RangeRequest(key: [0], rangeEnd: [0])).kvs
        XCTAssertEqual(kvs.map { String(decoding: $0.key, as: UTF8.self) }, (0..<5).map { "k\($0)" })
        XCTAssertEqual(reopened.currentRevision, 6)
        _ = try reopened.put(PutRequest(key: b("again"), value: b("z")))
        XCTAssertEqual(reopened.currentRevision, 7)
    }

    /// A snapshot that cannot be written is reported (not swallowed) and tried again after a
    /// backoff, without waiting for another `--snapshot-count` entries; nothing is lost.
    func testAFailedSnapshotIsReportedAndRetried() throws {
        let failing = Flag()
        failing.set()
        let reports = ReportLog()
        var c = MVCCStore.Configuration(memberID: 1, clusterID: 2)
        c.dataDirectory = dir
        c.snapshotCount = 10
        c.walFault = { point in point == .snapshot && failing.isSet ? ENOSPC : nil }
        c.snapshotFailed = { reports.append($0) }
        let store = try MVCCStore(configuration: c)
        for i in 0..<12 { _ = try store.put(PutRequest(key: b("k\(i)"), value: b("v"))) }
        try waitFor("the failure to be reported") { reports.count > 0 }
        XCTAssertEqual(reports.first?.kind, .io(errno: ENOSPC))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/snap").filter { $0.hasSuffix(".snap") }, [])
        failing.clear()
        // Writes keep triggering the check; the retry comes after the backoff, not after 10 more.
        try waitFor("a retried snapshot on disk") {
            _ = try? store.put(PutRequest(key: b("tick"), value: b("t")))
            return ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/snap")) ?? []).contains { $0.hasSuffix(".snap") }
        }
        store.close()
        let reopened = try open()
        defer { reopened.close() }
        XCTAssertEqual(try reopened.range(RangeRequest(key: b("k"), rangeEnd: b("l"))).kvs.count, 12)
    }

    private func waitFor(_ what: String, within seconds: Double = 20, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return }
            usleep(50_000)
        }
        XCTFail("timed out waiting for \(what)")
    }

    private func history(_ store: MVCCStore) -> [Int64] {
        guard case .events(let batches, _) = store.events(from: 0, maxRevisions: 10_000) else { return [] }
        return batches.map(\.revision)
    }

    private func restartKeepsEverything(snapshotCount: Int) throws {
        let clock = ManualWallClock()
        var store: MVCCStore? = try open(snapshotCount: snapshotCount, clock: clock)
        let lease = try store!.leaseGrant(LeaseGrantRequest(ttl: 60))
        for i in 0..<40 { _ = try store!.put(PutRequest(key: b("k\(i % 7)"), value: b("v\(i)"), lease: i % 2 == 0 ? lease.id : 0)) }
        _ = try store!.deleteRange(DeleteRangeRequest(key: b("k3")))
        _ = try store!.compact(CompactionRequest(revision: 10))
        let all = RangeRequest(key: [0], rangeEnd: [0])
        let before = try store!.range(all)
        let historyBefore = history(store!)
        let ttlBefore = store!.leaseTimeToLive(LeaseTimeToLiveRequest(id: lease.id, keys: true))
        let historicalBefore = try store!.range(RangeRequest(key: [0], rangeEnd: [0], revision: 12))
        store!.close()
        store = nil

        let reopened = try open(snapshotCount: snapshotCount, clock: clock)
        defer { reopened.close() }
        XCTAssertEqual(try reopened.range(all).kvs, before.kvs)
        XCTAssertEqual(reopened.currentRevision, before.header?.revision)
        XCTAssertEqual(reopened.compactRevision, 10)
        XCTAssertThrowsError(try reopened.range(RangeRequest(key: b("k1"), revision: 9)))
        XCTAssertEqual(try reopened.range(RangeRequest(key: [0], rangeEnd: [0], revision: 12)).kvs, historicalBefore.kvs,
                       "historical reads after the compaction point are unchanged")
        XCTAssertEqual(history(reopened).last, historyBefore.last, "a watch from an old revision still finds every event")
        XCTAssertEqual(Set(history(reopened).filter { $0 > 10 }), Set(historyBefore.filter { $0 > 10 }))
        let ttl = reopened.leaseTimeToLive(LeaseTimeToLiveRequest(id: lease.id, keys: true))
        XCTAssertEqual(ttl.grantedTTL, 60)
        XCTAssertEqual(ttl.keys, ttlBefore.keys, "attached keys survive")
        XCTAssertGreaterThanOrEqual(ttl.ttl, ttlBefore.ttl - 1, "a restart never shortens a lease")
        // The lease still expires after the restart, no earlier than its TTL.
        clock.advance(byMilliseconds: 59_000)
        XCTAssertEqual(reopened.expireLeases(), [])
        clock.advance(byMilliseconds: 2_000)
        XCTAssertEqual(reopened.expireLeases(), [lease.id])
        XCTAssertTrue(try reopened.range(RangeRequest(key: b("k1"))).kvs.isEmpty, "k1 was last written with the lease")
        XCTAssertFalse(try reopened.range(RangeRequest(key: b("k0"))).kvs.isEmpty, "k0 was last written without it")
    }

    func testRestartFromTheWALAloneKeepsRevisionsHistoryLeasesAndCompaction() throws {
        try restartKeepsEverything(snapshotCount: 100_000)
    }

    func testRestartFromSnapshotPlusWALKeepsTheSame() throws {
        try restartKeepsEverything(snapshotCount: 7)
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: dir + "/snap").filter { $0.hasSuffix(".snap") }.isEmpty)
    }

    /// Snapshots are encoded and written on their own thread while writes go on: each must hold
    /// exactly the state up to its WAL index, so snapshot + replay gives back every write once.
    func testSnapshotsTakenWhileWritesContinueRestoreExactly() throws {
        var store: MVCCStore? = try open(snapshotCount: 25)
        let writing = store!
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for i in 0..<400 {
                _ = try? writing.put(PutRequest(key: b("w\(worker)/\(i % 37)"), value: b("v\(i)")))
                if i % 50 == 49 { _ = try? writing.deleteRange(DeleteRangeRequest(key: b("w\(worker)/"), rangeEnd: b("w\(worker)0"))) }
            }
        }
        let all = RangeRequest(key: [0], rangeEnd: [0])
        let before = try store!.range(all)
        let hashBefore = try store!.hashKV(revision: 0).hash
        let historyBefore = history(store!)
        store!.close()
        store = nil
        XCTAssertGreaterThan(try FileManager.default.contentsOfDirectory(atPath: dir + "/snap").filter { $0.hasSuffix(".snap") }.count, 0)

        let reopened = try open(snapshotCount: 25)
        defer { reopened.close() }
        XCTAssertEqual(reopened.currentRevision, before.header?.revision)
        XCTAssertEqual(try reopened.range(all).kvs, before.kvs)
        XCTAssertEqual(try reopened.hashKV(revision: 0).hash, hashBefore)
        XCTAssertEqual(history(reopened), historyBefore)
    }

    private func files(_ sub: String, _ suffix: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir + "/" + sub).filter { $0.hasSuffix(suffix) }
    }

    private func bytes(_ sub: String) throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: dir + "/" + sub).reduce(0) { total, name in
            total + ((try FileManager.default.attributesOfItem(atPath: dir + "/" + sub + "/" + name)[.size] as? Int) ?? 0)
        }
    }

    /// Defragment rewrites the data directory to one snapshot and one fresh WAL segment, and
    /// a restart afterwards (with writes after the defragmentation) gives back the same state.
    func testDefragmentShrinksTheDataDirectoryAndKeepsEverything() throws {
        var store: MVCCStore? = try open(snapshotCount: 700, walSegmentBytes: 64 * 1024)
        let value = [UInt8](repeating: 0x61, count: 200)
        for i in 0..<3_000 { _ = try store!.put(PutRequest(key: b("k\(i % 100)"), value: value + b("\(i)"))) }
        _ = try store!.compact(CompactionRequest(revision: store!.currentRevision - 10))
        let segmentsBefore = try files("wal", ".wal").count
        let bytesBefore = try bytes("wal") + bytes("snap")
        XCTAssertGreaterThan(segmentsBefore, 2)

        try store!.defragment()
        XCTAssertEqual(try files("wal", ".wal").count, 1)
        XCTAssertEqual(try files("snap", ".snap").count, 1)
        let bytesAfter = try bytes("wal") + bytes("snap")
        XCTAssertLessThan(bytesAfter, bytesBefore / 2, "\(bytesAfter) bytes after, \(bytesBefore) before")

        for i in 0..<5 { _ = try store!.put(PutRequest(key: b("after\(i)"), value: b("v"))) }
        let all = RangeRequest(key: [0], rangeEnd: [0])
        let before = try store!.range(all)
        let hashBefore = try store!.hashKV(revision: 0)
        let historyBefore = history(store!)
        store!.close()
        store = nil

        let reopened = try open(snapshotCount: 700, walSegmentBytes: 64 * 1024)
        defer { reopened.close() }
        XCTAssertEqual(reopened.currentRevision, before.header?.revision)
        XCTAssertEqual(try reopened.range(all).kvs, before.kvs)
        XCTAssertEqual(try reopened.hashKV(revision: 0).hash, hashBefore.hash)
        XCTAssertEqual(reopened.compactRevision, hashBefore.compactRevision)
        XCTAssertEqual(history(reopened), historyBefore)
    }

    /// A watch from an old revision gets the events the writes produced (rebuilt from the index,
    /// not stored): puts with `prevKV`, deletions of single keys and ranges, a key re-created
    /// with a lease, a multi-key txn; the same after a restart from a snapshot plus WAL; and after
    /// a compaction, the deletion at exactly the compaction revision keeps its event without a
    /// `prevKV` (etcd reads `prevKV` at the revision before, which is compacted).
    func testWatchHistoryHoldsTheEventsTheWritesProducedAcrossRestartAndCompaction() throws {
        var store: MVCCStore? = try open()
        let lease = try store!.leaseGrant(LeaseGrantRequest(ttl: 600)).id
        _ = try store!.put(PutRequest(key: b("a"), value: b("1")))                        // 2
        _ = try store!.put(PutRequest(key: b("b"), value: b("1")))                        // 3
        _ = try store!.put(PutRequest(key: b("a"), value: b("2")))                        // 4
        _ = try store!.deleteRange(DeleteRangeRequest(key: b("a")))                        // 5
        var txn = TxnRequest()
        txn.success = [.put("c", "1"), .put("d", "1")]
        _ = try store!.txn(txn)                                                            // 6
        _ = try store!.put(PutRequest(key: b("a"), value: b("3"), lease: lease))          // 7
        _ = try store!.deleteRange(DeleteRangeRequest(key: b("c"), rangeEnd: b("e")))     // 8
        func kv(_ k: String, _ v: String, create: Int64, mod: Int64, version: Int64, lease: Int64 = 0) -> KeyValue {
            KeyValue(key: b(k), createRevision: create, modRevision: mod, version: version, value: b(v), lease: lease)
        }
        func deletion(_ k: String, _ mod: Int64, prev: KeyValue?) -> Event {
            var kv = KeyValue()
            kv.key = b(k)
            kv.modRevision = mod
            return Event(type: .delete, kv: kv, prevKV: prev)
        }
        let a1 = kv("a", "1", create: 2, mod: 2, version: 1), a2 = kv("a", "2", create: 2, mod: 4, version: 2)
        let c1 = kv("c", "1", create: 6, mod: 6, version: 1), d1 = kv("d", "1", create: 6, mod: 6, version: 1)
        let expected: [(Int64, [Event])] = [
            (2, [Event(type: .put, kv: a1, prevKV: nil)]),
            (3, [Event(type: .put, kv: kv("b", "1", create: 3, mod: 3, version: 1), prevKV: nil)]),
            (4, [Event(type: .put, kv: a2, prevKV: a1)]),
            (5, [deletion("a", 5, prev: a2)]),
            (6, [Event(type: .put, kv: c1, prevKV: nil), Event(type: .put, kv: d1, prevKV: nil)]),
            (7, [Event(type: .put, kv: kv("a", "3", create: 7, mod: 7, version: 1, lease: lease), prevKV: nil)]),
            (8, [deletion("c", 8, prev: c1), deletion("d", 8, prev: d1)]),
        ]
        func events(_ store: MVCCStore, from revision: Int64) -> [(Int64, [Event])]? {
            guard case .events(let batches, _) = store.events(from: revision, maxRevisions: 100) else { return nil }
            return batches.map { ($0.revision, $0.events) }
        }
        func assertEvents(_ got: [(Int64, [Event])]?, _ want: [(Int64, [Event])], _ what: String, line: UInt = #line) {
            XCTAssertEqual(got?.map(\.0), want.map(\.0), what, line: line)
            for (g, w) in zip(got ?? [], want) { XCTAssertEqual(g.1, w.1, "\(what): revision \(w.0)", line: line) }
        }
        assertEvents(events(store!, from: 2), expected, "live")
        assertEvents(events(store!, from: 6), Array(expected.suffix(3)), "from revision 6")

        try store!.defragment()  // a snapshot holds all of it now
        store!.close()
        store = try open()
        assertEvents(events(store!, from: 2), expected, "restored from a snapshot")
        _ = try store!.put(PutRequest(key: b("b"), value: b("2")))                        // 9, replayed from the WAL
        store!.close()
        store = try open()
        let b1 = kv("b", "1", create: 3, mod: 3, version: 1)
        let afterPut = expected + [(9, [Event(type: .put, kv: kv("b", "2", create: 3, mod: 9, version: 2), prevKV: b1)])]
        assertEvents(events(store!, from: 2), afterPut, "restored from a snapshot and the WAL")

        _ = try store!.compact(CompactionRequest(revision: 5))
        guard case .compacted(5)? = Optional(store!.events(from: 4, maxRevisions: 100)) else { return XCTFail("revision 4 is compacted") }
        var compacted = Array(afterPut.drop { $0.0 < 5 })
        compacted[0] = (5, [deletion("a", 5, prev: nil)])
        assertEvents(events(store!, from: 5), compacted, "after compacting to 5")
        store!.close()
    }

    /// A snapshot holds each value once: the index's versions whose value the replicated state
    /// holds for the same key and change are written without it (snapshot format 2), and a
    /// restart restores them from there, byte for byte.
    func testASnapshotHoldsEachValueOnce() throws {
        var store: MVCCStore? = try open()
        let keys = 200, valueBytes = 2_000
        var values: [[UInt8]] = []
        for i in 0..<keys {
            let value = (0..<valueBytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i &* 7) }
            values.append(value)
            _ = try store!.put(PutRequest(key: b("k\(i)"), value: value))
        }
        try store!.defragment()
        let snapshotBytes = try bytes("snap")
        XCTAssertLessThan(snapshotBytes, keys * valueBytes * 3 / 2,
                          "\(snapshotBytes) bytes for \(keys * valueBytes) bytes of values: written twice")
        XCTAssertGreaterThan(snapshotBytes, keys * valueBytes, "every value is still written once")
        let hash = try store!.hashKV(revision: 0).hash
        store!.close()
        store = try open()
        defer { store!.close() }
        for i in 0..<keys {
            XCTAssertEqual(try store!.range(RangeRequest(key: b("k\(i)"))).kvs.first?.value, values[i])
        }
        XCTAssertEqual(try store!.hashKV(revision: 0).hash, hash)
    }

    /// Snapshots of format 1 (every value written twice, no shared flags) are still restored.
    func testAFormatOneSnapshotIsStillRestored() throws {
        var store: MVCCStore? = try open()
        for i in 0..<50 { _ = try store!.put(PutRequest(key: b("k\(i % 20)"), value: b("value \(i)"))) }
        try store!.defragment()
        let all = RangeRequest(key: [0], rangeEnd: [0])
        let before = try store!.range(all)
        let hashBefore = try store!.hashKV(revision: 0).hash
        store!.close()
        store = nil
        // Rewrite the snapshot as format 1 would have: values inline, no flags, version 1 header.
        let snapDir = dir + "/snap"
        let name = try files("snap", ".snap")[0]
        let index = SnapshotFile.index(ofFileName: name)!
        let loaded = try SnapshotFile.loadNewest(directory: snapDir).snapshot!
        var decoded = try StoreSnapshot(protoBytes: loaded.bytes)
        let replica = try Replica(decodingState: Array(decoded.replicaState[decoded.replicaStateRange]))
        XCTAssertTrue(decoded.histories.contains { !$0.sharedValues.isEmpty }, "format 2 shares values")
        for i in decoded.histories.indices {
            let key = decoded.histories[i].key
            for (j, dot) in decoded.histories[i].sharedValues {
                decoded.histories[i].versions[j].value = replica.dag(key)!.versions.first { $0.dot == dot }!.value!
            }
            decoded.histories[i].sharedValues = []
        }
        decoded.replicaState = Array(decoded.replicaState[decoded.replicaStateRange])
        var file = SnapshotFile.header(index: index, payload: decoded.protoBytes()) + decoded.protoBytes()
        file[8] = 1
        let crc = CRC32C.checksum(Array(file[0..<36]))
        withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { file[36 + i] = $0[i] } }
        try Data(file).write(to: URL(fileURLWithPath: snapDir + "/" + name))

        let reopened = try open()
        defer { reopened.close() }
        XCTAssertEqual(try reopened.range(all).kvs, before.kvs)
        XCTAssertEqual(try reopened.hashKV(revision: 0).hash, hashBefore)
    }

    /// A snapshot whose parts do not fit together is refused with the reason, whichever thread
    /// of the restart found it: a replicated state that does not decode, one of another data
    /// directory, or a history whose shared value the replicated state lacks.
    func testASnapshotWhosePartsDoNotFitIsRefusedWithTheReason() throws {
        var store: MVCCStore? = try open()
        for i in 0..<30 { _ = try store!.put(PutRequest(key: b("k\(i % 10)"), value: b("value \(i)"))) }
        try store!.defragment()
        store!.close()
        store = nil
        let snapDir = dir + "/snap"
        let name = try files("snap", ".snap")[0]
        let original = try SnapshotFile.loadNewest(directory: snapDir).snapshot!
        let good = try StoreSnapshot(protoBytes: original.bytes)
        let state = Array(good.replicaState[good.replicaStateRange])
        let replica = try Replica(decodingState: state)
        var otherMember = Replica(member: replica.member + 1)
        otherMember.makeChange([.put(key: b("x"), value: b("y"), lease: 0, parents: [])])
        var withoutKeys = Replica(member: replica.member)
        withoutKeys.makeChange([.put(key: b("x"), value: b("y"), lease: 0, parents: [])])
        let cases: [(String, [UInt8])] = [
            ("replicated state does not decode", Array("LTRS".utf8) + [1, 0x2a, 0xff, 0xff, 0xff] + [UInt8](repeating: 0, count: 8)),
            ("belongs to replica", otherMember.encodeState()),
            ("lacks the key", withoutKeys.encodeState()),
        ]
        for (reason, replicaState) in cases {
            var snapshot = good
            snapshot.replicaState = replicaState
            let payload = snapshot.protoBytes()
            try Data(SnapshotFile.header(index: original.index, payload: payload) + payload)
                .write(to: URL(fileURLWithPath: snapDir + "/" + name))
            XCTAssertThrowsError(try open(), reason) { error in
                XCTAssertTrue("\(error)".contains(reason), "\(reason): \(error)")
            }
        }
    }

    func testDefragmentInMemoryIsANoOp() throws {
        let store = try MVCCStore(configuration: MVCCStore.Configuration(memberID: 1, clusterID: 2))
        defer { store.close() }
        _ = try store.put(PutRequest(key: b("k"), value: b("v")))
        try store.defragment()
        XCTAssertEqual(try store.range(RangeRequest(key: b("k"))).kvs.first?.value, b("v"))
    }

    func testASecondStoreOnTheSameDataDirectoryIsRefused() throws {
        let first = try open()
        defer { first.close() }
        XCTAssertThrowsError(try open()) { error in
            XCTAssertTrue("\(error)".contains("in use by another lattice process"), "\(error)")
        }
    }
}

/// A flag a test flips while the store's writer thread reads it.
private final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
    func clear() { value.store(false, ordering: .releasing) }
}

private final class ReportLog: Sendable {
    private let reports = Mutex<[StorageError]>([])
    func append(_ error: StorageError) { reports.withLock { $0.append(error) } }
    var count: Int { reports.withLock { $0.count } }
    var first: StorageError? { reports.withLock { $0.first } }
}

/// A snapshot lists the replica's keys in byte order, taking the order from the index's sorted
/// keys; keys only the replica holds (deleted and compacted away from the index while the replica
/// still waits to collect them, as with peers) are merged in, and index keys the replica no longer
/// holds are left out.
final class SnapshotKeyOrderTests: XCTestCase {
    func testTheReplicasKeysComeOutInByteOrderWhateverTheIndexHolds() throws {
        var replica = Replica(member: 1)
        for key in ["/b", "/d", "/a", "/e/1", "/c"] {
            replica.makeChange([.put(key: b(key), value: b("v" + key), lease: 0, parents: [])])
        }
        func history(_ key: String, _ revision: Int64) -> (key: [UInt8], versions: CompactArray<LatticeStore.KeyVersion>) {
            (b(key), [KeyVersion.put(at: revision, over: nil, value: b("v"), lease: 0)])
        }
        // The index lacks /a, /c and /e/1 and holds /zz, which the replica does not.
        let index = try XCTUnwrap(MVCCIndex(restoring: [history("/b", 2), history("/d", 3), history("/zz", 4)],
                                            currentRevision: 4, compactRevision: -1))
        let sorted = MVCCStore.sortedDAGs(of: replica, index: index)
        XCTAssertEqual(sorted.map { String(decoding: $0.key.bytes, as: UTF8.self) }, ["/a", "/b", "/c", "/d", "/e/1"])
        for entry in sorted { XCTAssertEqual(entry.dag.visible?.value, b("v") + entry.key.bytes) }
        XCTAssertEqual(sorted.map { $0.key }, replica.sortedDAGs().map { $0.key })
    }
}

/// The shared values of a history (the first inline, the rest in a list): a history record
/// round-trips their positions and dots, in order, and writes none of their bytes.
final class SharedValuesTests: XCTestCase {
    func testPositionsAndDotsRoundTripInOrder() throws {
        var shared = SharedValues()
        XCTAssertTrue(shared.isEmpty)
        let positions = [0, 3, 63, 64, 69]
        for p in positions { shared.append(p, dot: Dot(member: 7, seq: UInt64(100 + p))) }
        XCTAssertFalse(shared.isEmpty)
        XCTAssertEqual(shared.map(\.position), positions)
        XCTAssertEqual(shared.map(\.dot.seq), positions.map { UInt64(100 + $0) })

        let versions = (1...70).map { i in
            LatticeStore.KeyVersion.put(at: Int64(i), over: nil, value: b("v\(i)" + String(repeating: "x", count: 100)), lease: 0)
        }
        let record = KeyHistoryRecord(key: b("k"), versions: CompactArray(versions), sharedValues: shared)
        let encoded = record.protoBytes()
        let decoded = try KeyHistoryRecord(protoBytes: encoded)
        XCTAssertEqual(decoded.sharedValues.map(\.position), positions)
        XCTAssertEqual(decoded.sharedValues.map(\.dot), positions.map { Dot(member: 7, seq: UInt64(100 + $0)) })
        XCTAssertTrue(decoded.versions[64].value.isEmpty, "a shared value is not written")
        XCTAssertEqual(decoded.versions[65].value, versions[65].value)
        XCTAssertEqual(decoded.versions.map(\.modRevision), versions.map(\.modRevision))
        let unshared = KeyHistoryRecord(key: b("k"), versions: CompactArray(versions)).protoBytes()
        XCTAssertLessThan(encoded.count, unshared.count)
    }
}

final class ReplicatedValuesTests: XCTestCase {
    private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    /// A key written `count` times, every seventh a deletion, while a peer has seen none of it
    /// (nothing becomes stable: every version stays).
    private func makeDAG(versions count: Int) -> KeyVersionDAG {
        var replica = Replica(member: 1)
        replica.setPeerMembers([2])
        for i in 0..<count {
            if i % 7 == 6 {
                replica.makeChange([.delete(key: b("k"), parents: [])])
            } else {
                replica.makeChange([.put(key: b("k"), value: b("v\(i)"), lease: 0, parents: [])])
            }
        }
        return replica.dag(b("k"))!
    }

    /// A snapshot writes a value once when a replicated version holds the same bytes: found by
    /// comparing bytes among few versions, by buffer among many (a value written once is one
    /// buffer in both); never for a tombstone or bytes no version holds.
    func testEveryHeldValueFindsAVersionHoldingIt() {
        for count in [3, ReplicatedValues.scanLimit + 1, 200] {
            let dag = makeDAG(versions: count)
            let holders = ReplicatedValueHolders(dag, lookups: count)
            for v in dag.versions {
                guard let value = v.value else { continue }
                XCTAssertEqual(holders.dot(holding: value), v.dot, "\(count) versions, \(v.dot)")
            }
            XCTAssertNil(holders.dot(holding: b("never written")), "\(count) versions")
            if count <= ReplicatedValues.scanLimit {
                // Few versions compare bytes: a copy is found too.
                XCTAssertEqual(holders.dot(holding: Array(b("v1"))), dag.versions[1].dot)
            }
        }
    }

    /// The lookup a snapshot's shared values go through answers as a scan of the key's versions
    /// would, with few versions (scanned) and many (a table): the value of each version, nil for
    /// a tombstone and for a dot the key does not hold.
    func testEveryDotFindsTheValueAScanFinds() {
        for count in [3, ReplicatedValues.scanLimit + 1, 200] {
            let dag = makeDAG(versions: count)
            XCTAssertEqual(dag.versions.count, count)
            let values = ReplicatedValues(dag)
            for v in dag.versions {
                XCTAssertEqual(values.value(at: v.dot), v.value, "\(count) versions, \(v.dot)")
            }
            XCTAssertNil(values.value(at: Dot(member: 1, seq: UInt64(count) + 1)), "\(count) versions: an absent dot")
            XCTAssertNil(values.value(at: Dot(member: 3, seq: 1)), "\(count) versions: another member's dot")
        }
    }
}
