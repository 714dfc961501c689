import LatticeCore
import XCTest
import LatticeTestSupport
@testable import LatticeStore

/// The chunked key order behind every range read: checked against a plain sorted array through
/// inserts (in random order, duplicates included), chunk splits, removals and range walks.
final class SortedKeysTests: XCTestCase {
    private func key(_ n: Int) -> [UInt8] { Array("k\(n)".utf8) }

    private func walk(_ keys: SortedKeys, from start: [UInt8], limit: Int) -> [[UInt8]] {
        var out: [[UInt8]] = []
        keys.forEach(from: start) { k in
            out.append(k)
            return out.count < limit
        }
        return out
    }

    /// Keys created in ascending order (generated names) fill their chunks: a split after the
    /// last key keeps the full chunk, where halves would stay half full (twice the chunks, and
    /// twice the memory per key). Keys inserted below stay correct and split in halves.
    func testAscendingInsertsFillTheirChunks() {
        var keys = SortedKeys()
        let n = 10 * SortedKeys.chunkMax
        for i in 0..<n { XCTAssertTrue(keys.insert(Array("/registry/pods/p-\(100_000_000 + i)".utf8))) }
        XCTAssertEqual(keys.chunkCount, 10)
        XCTAssertEqual(keys.count, n)
        // Inserts into a full chunk below the end split it in halves; order holds.
        for i in 0..<3 { XCTAssertTrue(keys.insert(Array("/registry/pods/p-\(100_000_000 + i * 1000)-x".utf8))) }
        XCTAssertEqual(keys.chunkCount, 13)
        let all = Array(keys)
        XCTAssertEqual(all, all.sorted(by: bytesLess))
        XCTAssertEqual(all.count, n + 3)
    }

    func testMatchesASortedArrayThroughInsertsSplitsAndRemovals() {
        var rng = SplitMix64(seed: 42)
        var keys = SortedKeys()
        var reference: Set<[UInt8]> = []
        // Enough keys for dozens of chunk splits (chunkMax 512).
        for _ in 0..<20_000 {
            let k = key(Int(rng.next(upTo: 12_000)))
            XCTAssertEqual(keys.insert(k), reference.insert(k).inserted)
        }
        var sorted = reference.sorted(by: bytesLess)
        XCTAssertEqual(keys.count, sorted.count)
        XCTAssertEqual(Array(keys), sorted)
        for _ in 0..<200 {
            let start = key(Int(rng.next(upTo: 13_000)))
            let limit = 1 + Int(rng.next(upTo: 700))
            let expected = Array(sorted.filter { compareBytes($0, start) >= 0 }.prefix(limit))
            XCTAssertEqual(walk(keys, from: start, limit: limit), expected, "walk from \(String(decoding: start, as: UTF8.self))")
            XCTAssertEqual(keys.contains(start), reference.contains(start))
        }
        // Remove a third, then keep inserting: order and lookups stay right.
        let removed = Set(sorted.enumerated().filter { $0.offset % 3 == 0 }.map(\.element))
        for k in removed { keys.remove(k) }
        reference.subtract(removed)
        for _ in 0..<5_000 {
            let k = key(12_000 + Int(rng.next(upTo: 4_000)))
            XCTAssertEqual(keys.insert(k), reference.insert(k).inserted)
        }
        sorted = reference.sorted(by: bytesLess)
        XCTAssertEqual(Array(keys), sorted)
        XCTAssertEqual(keys.count, sorted.count)
        XCTAssertEqual(walk(keys, from: [0], limit: .max), sorted)
        XCTAssertEqual(walk(keys, from: Array("l".utf8), limit: .max), [])
        // Every removed key, the last keys of chunks among them: lookups and walks from them
        // find the keys after them.
        for k in removed {
            XCTAssertFalse(keys.contains(k))
            var lo = 0, hi = sorted.count  // the first kept key after k
            while lo < hi {
                let mid = (lo + hi) / 2
                if compareBytes(sorted[mid], k) <= 0 { lo = mid + 1 } else { hi = mid }
            }
            let next = lo < sorted.count ? sorted[lo] : nil
            XCTAssertEqual(walk(keys, from: k, limit: 1), next.map { [$0] } ?? [], "walk from \(String(decoding: k, as: UTF8.self))")
        }
    }

    func testRemovingEveryKeyLeavesAnEmptySetThatStillAcceptsKeys() {
        var keys = SortedKeys()
        for i in 0..<1_500 { keys.insert(key(i)) }
        for i in 0..<1_500 { keys.remove(key(i)) }
        XCTAssertEqual(keys.count, 0)
        XCTAssertEqual(Array(keys), [])
        XCTAssertEqual(walk(keys, from: [0], limit: .max), [])
        XCTAssertTrue(keys.insert(key(7)))
        XCTAssertEqual(Array(keys), [key(7)])
    }
}
