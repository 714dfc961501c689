import Foundation
import LatticeCore
import LatticeTestSupport
import XCTest

/// Merge *intent*, not only convergence: random JSON documents edited by two or three sides
/// with random edit scripts, merged with `JSONMerge`:
/// 1. a field only one side changed (set or removed), and no other side touched at, above or
///    below it, has that side's value (or is absent) after the merge;
/// 2. an array element one side inserted is present, unless another side replaced the array
///    (or something above it) with a value of its own;
/// 3. merging a side with sides that left the base unchanged gives exactly that side.
final class MergeIntentPropertyTests: XCTestCase {
    typealias Path = [String]

    enum Edit {
        case set(Path, JSONValue)
        case remove(Path)
        case insert(Path, element: JSONValue)
    }

    func testMergesKeepEachSidesIntent() {
        let seed = ProcessInfo.processInfo.environment["LATTICE_PROPERTY_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
        var rng = SplitMix64(seed: seed)
        var checkedFields = 0, checkedInserts = 0, checkedUnchanged = 0
        for round in 0..<3_000 {
            var fresh = 0
            func unique() -> String { fresh += 1; return "v\(fresh)" }
            let base = Self.object(&rng, depth: 0, unique: unique)
            let sideCount = rng.int(2...3)
            var sides: [JSONValue] = []
            var edits: [[Edit]] = []
            for _ in 0..<sideCount {
                var doc = base
                var script: [Edit] = []
                for _ in 0..<rng.int(0...3) {
                    if let e = Self.randomEdit(doc, &rng, unique: unique) {
                        Self.apply(e, to: &doc)
                        script.append(e)
                    }
                }
                sides.append(doc)
                edits.append(script)
            }
            let merged = JSONValue.object(JSONMerge.merge(base: base.objectMembers!, heads: sides.map { $0.objectMembers! }))
            let context = "seed \(seed) round \(round): base \(base.canonicalText) sides \(sides.map(\.canonicalText)) → \(merged.canonicalText)"

            // 3. One side against unchanged ones.
            for (i, side) in sides.enumerated() {
                var heads = Array(repeating: base.objectMembers!, count: sideCount)
                heads[i] = side.objectMembers!
                XCTAssertEqual(JSONValue.object(JSONMerge.merge(base: base.objectMembers!, heads: heads)), side, "side \(i) alone; \(context)")
                checkedUnchanged += 1
            }
            // 1. Fields only one side touched.
            for (i, script) in edits.enumerated() {
                let others = edits.enumerated().filter { $0.offset != i }.flatMap(\.element)
                for edit in script {
                    switch edit {
                    case .set(let path, _), .remove(let path):
                        // Nobody else touched it, nor anything this side itself replaced or
                        // removed above it (those would conflict with this side's own edit).
                        let mineAbove = script.map(Self.path(of:)).filter { $0.count < path.count && Self.related($0, path) }
                        guard !others.contains(where: { e in
                            Self.related(Self.path(of: e), path) || mineAbove.contains { Self.related(Self.path(of: e), $0) }
                        }) else { continue }
                        // The side's own later edits decide what it shows.
                        XCTAssertEqual(Self.value(at: path, in: merged), Self.value(at: path, in: sides[i]), "field \(path) of side \(i); \(context)")
                        checkedFields += 1
                    case .insert(let path, let element):
                        // 2. Inserted elements stay unless another side replaced the array or an
                        // object above it (a removal of those does not count: edits beat removals),
                        // or this side removed or replaced it itself later.
                        let replaced = others.contains { e in
                            if case .set(let p, _) = e { return Self.related(p, path) && p.count <= path.count }
                            return false
                        }
                        guard !replaced, case .array(let mine)? = Self.value(at: path, in: sides[i]), mine.contains(element) else { continue }
                        guard case .array(let result)? = Self.value(at: path, in: merged) else {
                            XCTFail("array \(path) of side \(i) is gone; \(context)")
                            continue
                        }
                        XCTAssertTrue(result.contains(element), "element \(element.canonicalText) inserted by side \(i) at \(path); \(context)")
                        checkedInserts += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(checkedFields, 1_000, "seed \(seed)")
        XCTAssertGreaterThan(checkedInserts, 300, "seed \(seed)")
        XCTAssertGreaterThan(checkedUnchanged, 6_000, "seed \(seed)")
    }

    // MARK: generation

    static let names = ["a", "b", "c", "d", "e", "f"]

    static func object(_ rng: inout SplitMix64, depth: Int, unique: () -> String) -> JSONValue {
        var members: [[UInt8]: JSONValue] = [:]
        for _ in 0..<rng.int(1...4) {
            let name = Array(rng.pick(names).utf8)
            switch rng.int(0...9) {
            case 0...3: members[name] = .string(Array(unique().utf8))
            case 4: members[name] = .number(literal: Array(String(rng.int(0...99)).utf8))
            case 5...6 where depth < 2: members[name] = object(&rng, depth: depth + 1, unique: unique)
            default: members[name] = .array((0..<rng.int(0...4)).map { _ in .string(Array(unique().utf8)) })
            }
        }
        return .object(members)
    }

    /// Every path to a member (objects only), with its value.
    static func members(_ v: JSONValue, prefix: Path = []) -> [(Path, JSONValue)] {
        guard case .object(let m) = v else { return [] }
        var out: [(Path, JSONValue)] = []
        for (name, value) in m.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            let p = prefix + [String(decoding: name, as: UTF8.self)]
            out.append((p, value))
            out += members(value, prefix: p)
        }
        return out
    }

    static func randomEdit(_ doc: JSONValue, _ rng: inout SplitMix64, unique: () -> String) -> Edit? {
        let all = members(doc)
        switch rng.int(0...9) {
        case 0...3:
            // Set a member (existing, or new under an existing object) to a fresh scalar.
            let objects = [Path()] + all.filter { $0.1.objectMembers != nil }.map(\.0)
            let parent = rng.pick(objects)
            return .set(parent + [rng.pick(names)], .string(Array(unique().utf8)))
        case 4...5:
            guard !all.isEmpty else { return nil }
            return .remove(rng.pick(all).0)
        default:
            let arrays = all.filter { $0.1.arrayElements != nil }.map(\.0)
            guard !arrays.isEmpty else { return nil }
            return .insert(rng.pick(arrays), element: .string(Array(unique().utf8)))
        }
    }

    static func path(of e: Edit) -> Path {
        switch e {
        case .set(let p, _), .remove(let p), .insert(let p, _): return p
        }
    }

    /// One path is a prefix of the other (the same member, or one inside the other).
    static func related(_ a: Path, _ b: Path) -> Bool {
        let n = min(a.count, b.count)
        return Array(a.prefix(n)) == Array(b.prefix(n))
    }

    static func value(at path: Path, in v: JSONValue) -> JSONValue? {
        var current: JSONValue? = v
        for name in path { current = current?.objectMembers?[Array(name.utf8)] }
        return current
    }

    static func apply(_ e: Edit, to doc: inout JSONValue) {
        func update(_ v: inout JSONValue, _ path: ArraySlice<String>, _ body: (inout JSONValue?) -> Void) {
            guard case .object(var m) = v, let first = path.first else { return }
            let key = Array(first.utf8)
            if path.count == 1 {
                var slot = m[key]
                body(&slot)
                m[key] = slot
            } else {
                guard var child = m[key] else { return }
                update(&child, path.dropFirst(), body)
                m[key] = child
            }
            v = .object(m)
        }
        switch e {
        case .set(let p, let value): update(&doc, p[...]) { $0 = value }
        case .remove(let p): update(&doc, p[...]) { $0 = nil }
        case .insert(let p, let element):
            update(&doc, p[...]) { slot in
                guard case .array(var a)? = slot else { return }
                a.insert(element, at: Int(UInt(bitPattern: element.hashValue) % UInt(a.count + 1)))
                slot = .array(a)
            }
        }
    }
}
