import XCTest
@testable import LatticeCore
import LatticeTestSupport

/// `KeyTable` (one shard of the store's key maps) behaves as a dictionary, copies as a value,
/// and stays between 68 % and 85 % full as it grows.
final class KeyTableTests: XCTestCase {
    private func key(_ n: Int) -> StoredKey { StoredKey(Array("/registry/pods/ns/p-\(n)".utf8)) }

    private func assertSame(_ table: KeyTable<Int>, _ model: [StoredKey: Int], _ what: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(table.count, model.count, "count \(what)", file: file, line: line)
        var seen: [StoredKey: Int] = [:]
        for (k, v) in table { XCTAssertNil(seen.updateValue(v, forKey: k), "key listed twice \(what)", file: file, line: line) }
        XCTAssertEqual(seen, model, "entries \(what)", file: file, line: line)
        for (k, v) in model {
            XCTAssertEqual(table[k], v, "lookup \(what)", file: file, line: line)
            XCTAssertEqual(table.entry(forKey: k)?.value, v, "entry \(what)", file: file, line: line)
        }
    }

    /// Random inserts, updates, removals through every mutating entry point, over a small key
    /// space so that tables stay small, probe sequences wrap around the end and removals shift
    /// runs back; copies taken along the way must keep their contents.
    func testMatchesADictionaryUnderRandomChanges() {
        var rng = SplitMix64(seed: 0x5eed_7ab1e)
        for round in 0..<6 {
            let keySpace = [8, 30, 200, 2_000, 20_000, 200_000][round]
            var table = KeyTable<Int>()
            var model: [StoredKey: Int] = [:]
            var copies: [(KeyTable<Int>, [StoredKey: Int])] = []
            let steps = max(4 * keySpace, 20_000)
            for step in 0..<steps {
                let k = key(Int(rng.next() % UInt64(keySpace)))
                let v = Int(rng.next() % 1_000_000)
                switch rng.next() % 8 {
                case 0: XCTAssertEqual(table.updateValue(v, forKey: k), model.updateValue(v, forKey: k))
                case 1: XCTAssertEqual(table.removeValue(forKey: k), model.removeValue(forKey: k))
                case 2: table[k] = v; model[k] = v
                case 3: table[k] = nil; model[k] = nil
                case 4: table[k, default: 7] += v; model[k, default: 7] += v
                case 5:
                    // A _modify that reads and changes only some entries.
                    if let old = table[k] { table[k] = old % 2 == 0 ? nil : old + 1 }
                    if let old = model[k] { model[k] = old % 2 == 0 ? nil : old + 1 }
                default:
                    XCTAssertEqual(table[k], model[k])
                }
                if step % (steps / 8) == 0 { copies.append((table, model)) }
            }
            assertSame(table, model, "after round \(round)")
            for (i, (copy, expected)) in copies.enumerated() { assertSame(copy, expected, "copy \(i) of round \(round)") }
            // Removing everything leaves an empty table that still works.
            for k in model.keys { table[k] = nil }
            assertSame(table, [:], "emptied")
            table[key(1)] = 1
            assertSame(table, [key(1): 1], "refilled")
        }
    }

    /// The point of the table: it is never less than 68 % full once it has grown (a dictionary
    /// is 37.5–75 %), and never more than 85 %.
    func testStaysBetweenSixtyEightAndEightyFivePercentFull() {
        var table = KeyTable<Int>()
        var minLoad = 1.0, maxLoad = 0.0
        for n in 0..<100_000 {
            table[key(n)] = n
            let load = Double(table.count) / Double(table.capacity)
            maxLoad = max(maxLoad, load)
            if n > 100 { minLoad = min(minLoad, load) }
        }
        XCTAssertLessThanOrEqual(maxLoad, 0.85)
        XCTAssertGreaterThanOrEqual(minLoad, 0.67)
        var reserved = KeyTable<Int>(minimumCapacity: 10_000)
        let capacity = reserved.capacity
        for n in 0..<10_000 { reserved[key(n)] = n }
        XCTAssertEqual(reserved.capacity, capacity, "a reserved table does not grow")
        XCTAssertLessThan(Double(capacity), 10_000 / 0.8)
    }

    /// Values are released when they are replaced, removed, or the table goes away, and only once.
    func testReleasesValuesExactlyOnce() {
        final class Tracked { nonisolated(unsafe) static var live = 0; init() { Tracked.live += 1 }; deinit { Tracked.live -= 1 } }
        do {
            var table = KeyTable<Tracked>()
            for n in 0..<1_000 { table[key(n)] = Tracked() }
            XCTAssertEqual(Tracked.live, 1_000)
            let copy = table
            for n in 0..<500 { table[key(n)] = nil }
            for n in 500..<700 { table[key(n)] = Tracked() }
            XCTAssertEqual(Tracked.live, 1_000 + 200, "the copy keeps what the table dropped")
            _ = copy
        }
        XCTAssertEqual(Tracked.live, 0)
    }
}
