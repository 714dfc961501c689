@testable import LatticeCore
import XCTest

/// `StoredKeyMap` behaves as one dictionary below and above the size at which it splits into
/// shards, and a copy (what a snapshot holds) never sees later changes.
final class StoredKeyMapTests: XCTestCase {
    func testBehavesLikeADictionaryAcrossSharding() {
        var map = StoredKeyMap<Int>()
        var reference: [StoredKey: Int] = [:]
        var generator = SystemRandomNumberGenerator()
        var copies: [(StoredKeyMap<Int>, [StoredKey: Int])] = []
        let total = StoredKeyMap<Int>.shardingThreshold * 3
        for step in 0..<total {
            let key = StoredKey(Array("/registry/pods/ns/p-\(Int.random(in: 0..<(total / 2), using: &generator))".utf8))
            switch step % 5 {
            case 0: XCTAssertEqual(map.updateValue(step, forKey: key), reference.updateValue(step, forKey: key))
            case 1: map[key] = nil; reference[key] = nil
            case 2: map[key, default: 0] += 1; reference[key, default: 0] += 1
            default: map[key] = step; reference[key] = step
            }
            if step % 9_973 == 0 { copies.append((map, reference)) }
        }
        XCTAssertGreaterThan(reference.count, StoredKeyMap<Int>.shardingThreshold, "the map split into shards")
        func assertSame(_ m: StoredKeyMap<Int>, _ r: [StoredKey: Int], _ what: String) {
            XCTAssertEqual(m.count, r.count, what)
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: m.map { ($0.key, $0.value) }), r, what)
            for (key, value) in r.prefix(500) {
                XCTAssertEqual(m[key], value, what)
                XCTAssertEqual(m.entry(forKey: key)?.key, key, what)
            }
        }
        assertSame(map, reference, "final")
        for (i, (m, r)) in copies.enumerated() { assertSame(m, r, "copy \(i), taken before later changes") }
        XCTAssertNil(map[StoredKey(Array("absent".utf8))])
    }

    /// Keys spread evenly over the shards, whichever of their bytes differ: Kubernetes keys
    /// share long prefixes and differ in their last bytes, others only in length or in a byte
    /// in the middle.
    func testKeysSpreadEvenlyOverTheShards() {
        let n = StoredKeyMap<Int>.shardCount * 200
        let families: [(String, (Int) -> [UInt8])] = [
            ("kube names", { Array("/registry/configmaps/default/cm-\($0)".utf8) }),
            ("middle byte", { i in Array("/registry/\(String(i, radix: 36))/fixed-suffix-that-is-long".utf8) }),
            ("binary counters", { i in withUnsafeBytes(of: UInt64(i).bigEndian) { Array($0) } }),
            ("lengths and a byte", { i in [UInt8](repeating: 7, count: i % 97) + [UInt8(truncatingIfNeeded: i / 97)] }),
        ]
        for (name, make) in families {
            var map = StoredKeyMap<Int>()
            map.reserveCapacity(n)
            var perShard = [Int](repeating: 0, count: StoredKeyMap<Int>.shardCount)
            var distinct = Set<StoredKey>()
            for i in 0..<n {
                let key = StoredKey(make(i))
                guard distinct.insert(key).inserted else { continue }
                perShard[map.shard(key)] += 1
            }
            let mean = Double(distinct.count) / Double(perShard.count)
            XCTAssertGreaterThan(Double(perShard.min()!), mean * 0.6, name)
            XCTAssertLessThan(Double(perShard.max()!), mean * 1.4, name)
        }
    }

    func testReservingCapacityUpFrontShardsAndKeepsEntries() {
        var map = StoredKeyMap<Int>()
        map[StoredKey([1])] = 1
        map.reserveCapacity(StoredKeyMap<Int>.shardingThreshold * 4)
        for i in 0..<50_000 { map[StoredKey(Array("k\(i)".utf8))] = i }
        XCTAssertEqual(map[StoredKey([1])], 1)
        XCTAssertEqual(map.count, 50_001)
        XCTAssertEqual(map[StoredKey(Array("k49999".utf8))], 49_999)
    }

    /// The storage a dictionary value refers to (on Linux a dictionary is one reference).
    private func storage<V>(_ table: KeyTable<V>) -> ObjectIdentifier { ObjectIdentifier(table.storage) }

    /// A captured copy is the map as it was, whatever changes follow (sets, removals, defaults,
    /// captures on top of captures); the map reads its own changes meanwhile; and once the copies
    /// are gone its next change merges them in. Across all of that the shards themselves are
    /// never copied: the writer's changes after a snapshot's capture cost no shard copies.
    func testCapturesSeeTheirMomentAndTheWriterNeverCopiesAShard() {
        var map = StoredKeyMap<Int>()
        var reference: [StoredKey: Int] = [:]
        let keyCount = StoredKeyMap<Int>.shardingThreshold * 2
        func key(_ i: Int) -> StoredKey { StoredKey(Array("/registry/configmaps/default/cm-\(i)".utf8)) }
        for i in 0..<keyCount { map[key(i)] = i; reference[key(i)] = i }
        XCTAssertGreaterThan(map.shards.count, 1)
        // Room for the keys added below, so that no shard grows (a grown shard is a new one).
        map.reserveCapacity(keyCount + 1_000)
        var generator = SystemRandomNumberGenerator()
        for round in 0..<4 {
            var captured: [(StoredKeyMap<Int>, [StoredKey: Int])] = [(map.capture(), reference)]
            XCTAssertTrue(map.isFrozen)
            let shardStorage = map.shards.map(storage)
            for step in 0..<3_000 {
                let k = key(Int.random(in: 0..<(keyCount + 500), using: &generator))
                switch step % 4 {
                case 0: XCTAssertEqual(map.updateValue(step, forKey: k), reference.updateValue(step, forKey: k))
                case 1: map[k] = nil; reference[k] = nil
                case 2: map[k, default: 0] += 1; reference[k, default: 0] += 1
                default:
                    if map[k] != nil { map[k]! += 10; reference[k]! += 10 }
                }
                XCTAssertEqual(map[k], reference[k])
                if step == 1_500 { captured.append((map.capture(), reference)) }
            }
            XCTAssertEqual(map.shards.map(storage), shardStorage, "round \(round): a shard was copied while captured")
            XCTAssertEqual(map.count, reference.count)
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: map.map { ($0.key, $0.value) }), reference)
            for (i, (copy, then)) in captured.enumerated() {
                XCTAssertEqual(copy.count, then.count, "capture \(i)")
                XCTAssertEqual(Dictionary(uniqueKeysWithValues: copy.map { ($0.key, $0.value) }), then, "capture \(i)")
                XCTAssertEqual(copy.entry(forKey: key(7))?.value, then[key(7)])
            }
            captured.removeAll()
            // The copies are gone: the next change merges the overlay into the shards it owns.
            map[key(0)] = -round
            reference[key(0)] = -round
            XCTAssertFalse(map.isFrozen)
            XCTAssertEqual(map.shards.map(storage), shardStorage, "round \(round): merging copied a shard")
            XCTAssertEqual(map.count, reference.count)
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: map.map { ($0.key, $0.value) }), reference)
        }
    }

    /// A capture taken after the previous one was dropped, with no change in between, starts a
    /// fresh overlay: the earlier changes are merged first, not carried on in the new copy.
    func testACaptureAfterTheLastOneWasDroppedMergesItsChangesFirst() {
        var map = StoredKeyMap<Int>()
        for i in 0..<100 { map[StoredKey([UInt8(i)])] = i }
        var first: StoredKeyMap<Int>? = map.capture()
        map[StoredKey([1])] = -1
        XCTAssertEqual(map.overlay?.count, 1)
        XCTAssertEqual(first?[StoredKey([1])], 1)
        first = nil
        let second = map.capture()
        XCTAssertNil(second.overlay, "the new copy reads the shards alone")
        XCTAssertEqual(map.overlay?.count, 0)
        XCTAssertEqual(second[StoredKey([1])], -1)
        XCTAssertEqual(map[StoredKey([1])], -1)
    }

    /// While a capture is alive the map stays frozen, however many changes it takes.
    func testAMapStaysFrozenWhileACaptureLives() {
        var map = StoredKeyMap<Int>()
        for i in 0..<100 { map[StoredKey([UInt8(i)])] = i }
        let copy = map.capture()
        for i in 0..<100 { map[StoredKey([UInt8(i)])] = nil }
        XCTAssertTrue(map.isFrozen)
        XCTAssertTrue(map.isEmpty)
        XCTAssertEqual(copy.count, 100)
        XCTAssertEqual(copy[StoredKey([42])], 42)
        XCTAssertNil(map[StoredKey([42])])
        XCTAssertNil(map.entry(forKey: StoredKey([42])))
    }
}
