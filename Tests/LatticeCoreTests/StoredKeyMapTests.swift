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

    func testReservingCapacityUpFrontShardsAndKeepsEntries() {
        var map = StoredKeyMap<Int>()
        map[StoredKey([1])] = 1
        map.reserveCapacity(StoredKeyMap<Int>.shardingThreshold * 4)
        for i in 0..<50_000 { map[StoredKey(Array("k\(i)".utf8))] = i }
        XCTAssertEqual(map[StoredKey([1])], 1)
        XCTAssertEqual(map.count, 50_001)
        XCTAssertEqual(map[StoredKey(Array("k49999".utf8))], 49_999)
    }
}
