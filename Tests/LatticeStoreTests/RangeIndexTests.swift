import LatticeStore
import LatticeTestSupport
import XCTest

/// The watch range index against the obvious answer: every registered range checked one by one.
final class RangeIndexTests: XCTestCase {
    func testLookupsMatchCheckingEveryRange() {
        for seed in 1...40 {
            var random = SplitMix64(seed: UInt64(seed) &* 104_729)
            var index = RangeIndex<Int>()
            var registered: [(WatchRange, Int)] = []
            func key() -> [UInt8] { (0..<Int(random.next(upTo: 3) + 1)).map { _ in UInt8(97 + random.next(upTo: 4)) } }
            for step in 0..<400 {
                switch random.next(upTo: 10) {
                case 0..<5:
                    let start = key()
                    let range: WatchRange
                    switch random.next(upTo: 4) {
                    case 0: range = WatchRange(key: start, end: [])                 // one key
                    case 1: range = WatchRange(key: start, end: [0])                // from the key on
                    default:
                        let end = key()
                        range = WatchRange(key: start, end: end)
                        if range.isEmpty { continue }
                    }
                    let id = Int(random.next(upTo: 30))
                    index.insert(range, id)
                    registered.append((range, id))
                case 5..<7 where !registered.isEmpty:
                    let i = Int(random.next(upTo: UInt64(registered.count)))
                    let (range, id) = registered.remove(at: i)
                    index.remove(range, id)
                default:
                    let probe = key()
                    var hits = Set<Int>()
                    index.collect(probe, into: &hits)
                    let expected = Set(registered.filter { $0.0.contains(probe) }.map(\.1))
                    XCTAssertEqual(hits, expected, "seed \(seed), step \(step), key \(probe)")
                }
                XCTAssertEqual(index.count, registered.count)
            }
        }
    }

    func testRemovingOneOfTwoEqualRegistrationsKeepsTheOther() {
        var index = RangeIndex<Int>()
        let prefix = WatchRange(key: Array("a/".utf8), end: Array("a0".utf8))
        index.insert(prefix, 1)
        index.insert(prefix, 1)
        index.remove(prefix, 1)
        var hits = Set<Int>()
        index.collect(Array("a/x".utf8), into: &hits)
        XCTAssertEqual(hits, [1])
        index.remove(prefix, 1)
        hits = []
        index.collect(Array("a/x".utf8), into: &hits)
        XCTAssertEqual(hits, [])
    }
}
