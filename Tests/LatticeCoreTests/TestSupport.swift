import LatticeCore
import LatticeTestSupport

/// A wall clock a test moves by hand; single-threaded use only.
final class TestClock: WallClock, @unchecked Sendable {
    // @unchecked: tests drive it from one thread.
    var now: Int64
    init(_ now: Int64 = 1_700_000_000_000) { self.now = now }
    func nowMilliseconds() -> Int64 { now }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
func text(_ b: [UInt8]?) -> String? { b.map { String(decoding: $0, as: UTF8.self) } }

/// The canonical form of a JSON text (for comparing merge results).
func canonical(_ json: String) -> String {
    (try! JSONValue(parsing: json)).canonicalText
}

extension Replica {
    /// A test replica with a hand-driven clock.
    static func test(_ member: UInt64, clock: TestClock = TestClock(), mode: MergeMode = .json) -> Replica {
        Replica(member: member, mergeMode: mode, wallClock: clock)
    }

    @discardableResult
    mutating func put(_ key: String, _ value: String, lease: Int64 = 0) -> AppliedChange {
        makeChange([.put(key: bytes(key), value: bytes(value), lease: lease, parents: [])])
    }

    @discardableResult
    mutating func delete(_ key: String) -> AppliedChange {
        makeChange([.delete(key: bytes(key), parents: [])])
    }

    func get(_ key: String) -> String? { text(visible(bytes(key))?.value) }

    /// Delivers everything `other` has that this replica lacks.
    mutating func sync(from other: Replica) throws {
        for c in other.changes(since: vector) ?? [] { _ = try apply(remote: c) }
    }
}

/// Writes JSON in a random but valid layout (member order, whitespace), to check that values are
/// returned byte for byte and that merges do not depend on layout.
struct JSONWriter {
    static func write(_ v: JSONValue, _ rng: inout SplitMix64, pretty: Bool) -> [UInt8] {
        var out: [UInt8] = []
        emit(v, &rng, pretty: pretty, into: &out)
        return out
    }

    private static func space(_ rng: inout SplitMix64, pretty: Bool, into out: inout [UInt8]) {
        guard pretty else { return }
        switch rng.int(0...3) {
        case 0: out.append(0x20)
        case 1: out.append(contentsOf: [0x0A, 0x20, 0x20])
        default: break
        }
    }

    private static func emit(_ v: JSONValue, _ rng: inout SplitMix64, pretty: Bool, into out: inout [UInt8]) {
        switch v {
        case .object(let members):
            var names = Array(members.keys)
            if pretty {
                for i in stride(from: names.count - 1, to: 0, by: -1) { names.swapAt(i, rng.int(0...i)) }
            } else {
                names.sort { $0.lexicographicallyPrecedes($1) }
            }
            out.append(UInt8(ascii: "{"))
            for (i, name) in names.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                space(&rng, pretty: pretty, into: &out)
                out.append(contentsOf: JSONValue.string(name).canonicalBytes())
                space(&rng, pretty: pretty, into: &out)
                out.append(UInt8(ascii: ":"))
                space(&rng, pretty: pretty, into: &out)
                emit(members[name]!, &rng, pretty: pretty, into: &out)
            }
            space(&rng, pretty: pretty, into: &out)
            out.append(UInt8(ascii: "}"))
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (i, e) in elements.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                space(&rng, pretty: pretty, into: &out)
                emit(e, &rng, pretty: pretty, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        default:
            v.serialize(into: &out)
        }
    }
}

/// Random JSON documents shaped like Kubernetes objects, and random edits of them.
struct JSONGenerator {
    static let numberLiterals = ["0", "1", "1.0", "1e3", "-0", "2.50", "10", "-7", "3.14159", "6.02E+23"]
    static let names = ["a", "b", "c", "app", "tier", "zone", "x", "y", "é", "k\"q"]

    static func scalar(_ rng: inout SplitMix64) -> JSONValue {
        switch rng.int(0...4) {
        case 0: return .number(literal: bytes(rng.pick(numberLiterals)))
        case 1: return .string(bytes(rng.pick(["v1", "v2", "nginx", "redis:7", "", "line\nbreak", "ünï"])))
        case 2: return .bool(rng.chance(0.5))
        case 3: return .null
        default: return .number(literal: bytes(String(rng.int(0...99))))
        }
    }

    static func value(_ rng: inout SplitMix64, depth: Int) -> JSONValue {
        if depth >= 3 { return scalar(&rng) }
        switch rng.int(0...5) {
        case 0: return object(&rng, depth: depth + 1)
        case 1: return .array((0..<rng.int(0...3)).map { _ in rng.chance(0.3) ? object(&rng, depth: depth + 2) : scalar(&rng) })
        default: return scalar(&rng)
        }
    }

    static func object(_ rng: inout SplitMix64, depth: Int) -> JSONValue {
        var m: [[UInt8]: JSONValue] = [:]
        for _ in 0..<rng.int(0...3) { m[bytes(rng.pick(names))] = value(&rng, depth: depth) }
        return .object(m)
    }

    /// A fresh Kubernetes-like object.
    static func document(_ rng: inout SplitMix64, name: String) -> JSONValue {
        var metadata: [[UInt8]: JSONValue] = [bytes("name"): .string(bytes(name))]
        if rng.chance(0.7) { metadata[bytes("labels")] = object(&rng, depth: 2) }
        if rng.chance(0.3) { metadata[bytes("finalizers")] = .array((0..<rng.int(0...2)).map { _ in scalar(&rng) }) }
        var top: [[UInt8]: JSONValue] = [bytes("metadata"): .object(metadata)]
        if rng.chance(0.8) { top[bytes("spec")] = object(&rng, depth: 1) }
        if rng.chance(0.5) { top[bytes("status")] = object(&rng, depth: 1) }
        return .object(top)
    }

    /// One to three random edits: set or delete a member somewhere, edit an array.
    static func edit(_ doc: JSONValue, _ rng: inout SplitMix64) -> JSONValue {
        var d = doc
        for _ in 0..<rng.int(1...3) { d = editOnce(d, &rng, depth: 0) }
        return d
    }

    private static func editOnce(_ v: JSONValue, _ rng: inout SplitMix64, depth: Int) -> JSONValue {
        switch v {
        case .object(var m):
            let keys = m.keys.sorted { $0.lexicographicallyPrecedes($1) }
            if !keys.isEmpty, depth < 4, rng.chance(0.6) {
                let k = rng.pick(keys)
                m[k] = editOnce(m[k]!, &rng, depth: depth + 1)
            } else if !keys.isEmpty, rng.chance(0.25) {
                m[rng.pick(keys)] = nil
            } else {
                m[bytes(rng.pick(names))] = value(&rng, depth: depth + 1)
            }
            return .object(m)
        case .array(var a):
            switch rng.int(0...3) {
            case 0: a.insert(scalar(&rng), at: rng.int(0...a.count))
            case 1: if !a.isEmpty { a.remove(at: rng.int(0...(a.count - 1))) }
            case 2: a.append(scalar(&rng))
            default: if !a.isEmpty { let i = rng.int(0...(a.count - 1)); a[i] = editOnce(a[i], &rng, depth: depth + 1) }
            }
            return .array(a)
        default:
            return rng.chance(0.5) ? scalar(&rng) : value(&rng, depth: depth + 1)
        }
    }
}
