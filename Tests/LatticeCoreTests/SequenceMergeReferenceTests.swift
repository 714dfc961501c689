import Foundation
import LatticeCore
import LatticeTestSupport
import XCTest

/// The array merge against a reference sequence CRDT: an op-based RGA over the same edits.
/// Each side edits its copy of a base list of unique elements by inserting fresh elements after
/// an anchor (an element it holds) and removing elements; the RGA applies both sides' ops (an
/// insert goes after its anchor, among the anchor's children the lower side's before the higher
/// side's and each side's newer before its older, removals leave tombstones). Whenever the
/// edits are unambiguous from the two resulting lists — no side inserted after an element it
/// removed itself, so its list still shows where the insertion went — `JSONMerge.diff3` must give
/// exactly the RGA's list. Plus, always: every inserted element survives, a base element
/// survives iff both sides kept it, and each side's order is preserved.
final class SequenceMergeReferenceTests: XCTestCase {
    struct RGA {
        struct Node { var value: Int; var anchor: Int?; var side: Int; var time: Int; var removed = false }
        var nodes: [Int: Node] = [:]
        var base: [Int]

        init(base: [Int]) {
            self.base = base
            var previous: Int?
            for (i, v) in base.enumerated() {
                nodes[v] = Node(value: v, anchor: previous, side: -1, time: -1 - (base.count - i))
                previous = v
            }
        }

        /// The visible list: depth-first from the head.
        func list() -> [Int] {
            var children: [Int?: [Node]] = [:]
            for n in nodes.values { children[n.anchor, default: []].append(n) }
            for k in children.keys {
                // Inserted elements before the base element that followed the anchor (they are
                // newer); among them the lower side's first, each side's newer first.
                children[k]!.sort { ($0.side < 0 ? 1 : 0, $0.side, -$0.time) < ($1.side < 0 ? 1 : 0, $1.side, -$1.time) }
            }
            var out: [Int] = []
            func visit(_ anchor: Int?) {
                for c in children[anchor] ?? [] {
                    if !c.removed { out.append(c.value) }
                    visit(c.value)
                }
            }
            visit(nil)
            return out
        }
    }

    func testArrayMergeMatchesAReferenceRGA() {
        let seed = ProcessInfo.processInfo.environment["LATTICE_PROPERTY_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
        var rng = SplitMix64(seed: seed)
        var compared = 0, sameGap = 0
        for round in 0..<2_000 {
            let base = Array(0..<rng.int(0...6))
            var reference = RGA(base: base)
            var fresh = 100
            var time = 0
            var sides: [[Int]] = []
            var ambiguous = false
            for side in 0..<2 {
                var list = base
                var removedHere = Set<Int>()
                var anchorsUsed = Set<Int?>()
                for _ in 0..<rng.int(0...4) {
                    time += 1
                    if !list.isEmpty && rng.chance(0.4) {
                        let i = rng.int(0...(list.count - 1))
                        reference.nodes[list[i]]!.removed = true
                        removedHere.insert(list[i])
                        list.remove(at: i)
                    } else {
                        let at = rng.int(0...list.count)
                        let anchor: Int? = at == 0 ? nil : list[at - 1]
                        fresh += 1
                        reference.nodes[fresh] = RGA.Node(value: fresh, anchor: anchor, side: side, time: time)
                        anchorsUsed.insert(anchor)
                        list.insert(fresh, at: at)
                    }
                }
                if anchorsUsed.contains(where: { $0.map(removedHere.contains) ?? false }) { ambiguous = true }
                sides.append(list)
            }
            let json = { (l: [Int]) in l.map { JSONValue.number(literal: Array(String($0).utf8)) } }
            let merged = JSONMerge.diff3(base: json(base), lower: json(sides[0]), higher: json(sides[1]))
            let values = merged.map { Int(String(decoding: $0.canonicalBytes(), as: UTF8.self))! }
            let context = "seed \(seed) round \(round): base \(base) lower \(sides[0]) higher \(sides[1]) → \(values)"
            // Always: insertions survive once, base elements iff kept by both, each side's order.
            let inserted = Set(sides.flatMap { $0 }).subtracting(base)
            XCTAssertEqual(Set(values), inserted.union(base.filter { v in sides.allSatisfy { $0.contains(v) } }), context)
            XCTAssertEqual(values.count, Set(values).count, context)
            for side in sides {
                XCTAssertEqual(values.filter(side.contains), side.filter(values.contains), "a side's order is kept; \(context)")
            }
            if !ambiguous {
                XCTAssertEqual(values, reference.list(), "the reference RGA; \(context)")
                compared += 1
                if Set(sides[0]).subtracting(base).isEmpty == false && Set(sides[1]).subtracting(base).isEmpty == false { sameGap += 1 }
            }
        }
        // The generator exercised what it claims to.
        XCTAssertGreaterThan(compared, 1_000, "seed \(seed)")
        XCTAssertGreaterThan(sameGap, 100, "both sides inserted in many rounds; seed \(seed)")
    }
}
