import EtcdAPI
@testable import LatticeCore
import XCTest
@testable import LatticeStore

/// After a compaction, old versions are dropped in batches of keys (each batch one short hold
/// of the index lock) instead of one pass over every key: whatever point the trim has reached,
/// reads, counts, hashes, watch history and snapshots are exactly those of a finished trim.
final class HistoryTrimTests: XCTestCase {
    private func v(_ rev: Int64, _ value: String, tombstone: Bool = false) -> LatticeStore.KeyVersion {
        tombstone ? LatticeStore.KeyVersion.tombstone(at: rev)
            : LatticeStore.KeyVersion(modRevision: rev, createRevision: 2, version: rev, value: Array(value.utf8), lease: 0)
    }

    /// An index of 300 keys: each written twice, a third of them deleted, all before the
    /// compaction point, and a few written again after it.
    private func makeIndex() -> MVCCIndex {
        var index = MVCCIndex()
        var rev: Int64 = 1
        func write(_ key: String, _ version: (Int64) -> LatticeStore.KeyVersion) {
            rev += 1
            index.append(Array(key.utf8), version(rev))
            index.advance(to: rev)
        }
        for i in 0..<300 { write("k\(1000 + i)") { self.v($0, "a") } }
        for i in 0..<300 { write("k\(1000 + i)") { self.v($0, "b") } }
        for i in stride(from: 0, to: 300, by: 3) { write("k\(1000 + i)") { self.v($0, "", tombstone: true) } }
        for i in stride(from: 0, to: 300, by: 7) { write("k\(1000 + i)") { self.v($0, "c") } }
        return index
    }

    private func observe(_ index: MVCCIndex, compactedTo c: Int64) -> [String] {
        var out: [String] = []
        let all = KeyRange(key: [0], end: [0])
        for rev in [c, c + 10, index.currentRevision] {
            var visible: [String] = []
            index.forEachVisible(in: all, at: rev) { key, version in
                visible.append("\(String(decoding: key, as: UTF8.self))=\(String(decoding: version.value, as: UTF8.self))@\(version.modRevision)")
                return true
            }
            out.append("rev \(rev): \(visible.joined(separator: ","))")
            out.append("count \(rev): \(index.count(in: all, at: rev))")
            out.append("page count \(rev): \(index.count(in: KeyRange(key: Array("k1100".utf8), end: [0]), at: rev))")
        }
        for key in index.sortedKeys {
            let kept = index.retained(index.history(key) ?? []).map { "\($0.modRevision)" }
            if !kept.isEmpty { out.append("\(String(decoding: key, as: UTF8.self)): \(kept.joined(separator: " "))") }
        }
        for rev in c...index.currentRevision {
            out.append("event \(rev) k1000: \(index.event(of: Array("k1000".utf8), at: rev).prevKV?.modRevision ?? -1)")
        }
        // The deletion written at exactly the compaction revision: no prevKV, trimmed or not.
        let atCompaction = Array("k\(1000 + (c - 602) * 3)".utf8)
        let event = index.event(of: atCompaction, at: c)
        out.append("event \(c) \(String(decoding: atCompaction, as: UTF8.self)): \(event.type) \(event.kv?.modRevision ?? -1) prev \(event.prevKV?.modRevision ?? -1)")
        return out
    }

    /// A trimmed history of one version is held inline again, not left in an array buffer: at a
    /// million keys that is an allocation per key.
    func testATrimmedHistoryOfOneVersionIsHeldInline() {
        var index = makeIndex()
        index.compact(to: index.currentRevision)
        guard let history = index.history(Array("k1001".utf8)) else { return XCTFail("k1001 is live") }
        XCTAssertEqual(history.count, 1)
        guard case .one = history.storage else { return XCTFail("a single version is held inline") }
    }

    func testEveryTrimStepReadsLikeAFinishedTrim() {
        let compaction: Int64 = 650  // among the deletions (602...701); writes end at 744
        var finished = makeIndex()
        finished.compact(to: compaction)
        let expected = observe(finished, compactedTo: compaction)
        XCTAssertLessThan(finished.approximateBytes, makeIndex().approximateBytes)

        var index = makeIndex()
        index.beginCompaction(to: compaction)
        XCTAssertEqual(observe(index, compactedTo: compaction), expected, "before any batch")
        var cursor: [UInt8]? = []
        var batches = 0
        while let from = cursor {
            cursor = index.compactBatch(from: from, maxKeys: 25)
            batches += 1
            XCTAssertEqual(observe(index, compactedTo: compaction), expected, "after batch \(batches)")
        }
        XCTAssertEqual(batches, 12, "300 keys in batches of 25")
        XCTAssertEqual(index.approximateBytes, finished.approximateBytes)
        XCTAssertEqual(Array(index.sortedKeys), Array(finished.sortedKeys), "deleted keys left the index")
    }

    /// A put at exactly the compaction revision has no `prevKV` (etcd reads it at the revision
    /// before, which is compacted), before and after the trim; one above it keeps it.
    func testAPutAtTheCompactionRevisionHasNoPreviousValue() {
        var index = MVCCIndex()
        let key = Array("k".utf8)
        for rev: Int64 in 2...4 {
            index.append(key, v(rev, "v\(rev)"))
            index.advance(to: rev)
        }
        XCTAssertEqual(index.event(of: key, at: 3).prevKV?.modRevision, 2)
        index.beginCompaction(to: 3)
        XCTAssertNil(index.event(of: key, at: 3).prevKV, "before the trim")
        XCTAssertEqual(index.event(of: key, at: 4).prevKV?.modRevision, 3)
        _ = index.compactBatch(from: [], maxKeys: 10)
        XCTAssertNil(index.event(of: key, at: 3).prevKV, "after the trim")
        XCTAssertEqual(index.event(of: key, at: 3).kv?.modRevision, 3)
        XCTAssertEqual(index.event(of: key, at: 4).prevKV?.modRevision, 3)
    }

    /// Through the store: the background trim finishes, drops the old versions (the reported
    /// size falls), and the hash is the same before and after it.
    func testTheStoreTrimsInTheBackgroundAndHashesTheSameThroughout() throws {
        let store = makeStore()
        for round in 0..<3 {
            for i in 0..<3_000 { _ = try store.put(PutRequest(key: b("k\(i)"), value: [UInt8](repeating: UInt8(round), count: 100))) }
        }
        let sizeBefore = store.approximateSizeBytes
        let compaction = store.currentRevision - 100
        _ = try store.compact(CompactionRequest(revision: compaction))
        let hashDuring = try store.hashKV(revision: 0).hash
        let deadline = Date().addingTimeInterval(20)
        while store.isTrimmingHistory && Date() < deadline { usleep(1_000) }
        XCTAssertFalse(store.isTrimmingHistory, "the trim finished")
        XCTAssertLessThan(store.approximateSizeBytes, sizeBefore * 2 / 5, "old versions were dropped")
        XCTAssertEqual(try store.hashKV(revision: 0).hash, hashDuring)
        XCTAssertEqual(try store.range(RangeRequest(key: b("k1"))).kvs.first?.value, [UInt8](repeating: 2, count: 100))
        assertThrows(.compacted) { try store.range(RangeRequest(key: b("k1"), revision: compaction - 1)) }
    }
}
