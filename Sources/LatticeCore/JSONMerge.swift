/// Field-level merge of concurrent JSON versions against their common ancestor (docs/consistency.md, "Conflicts").
///
/// Inputs are ordered by priority, lowest first: the last head is the *winner*, the one with the
/// greatest (HLC, member id). The result is a pure function of (base, heads in that order), so
/// every node that sees the same versions computes the same document.
///
/// Rules, applied recursively per object member (a missing member is a value too: "absent"):
/// 1. all heads agree → that value;
/// 2. otherwise only the heads that *changed* the member relative to the base count: if they
///    all changed it the same way → their value;
/// 3. an edit beats a concurrent removal: heads that removed the member count as unchanged
///    when another head changed it (as at key level, where a put beats a concurrent delete);
/// 4. if they disagree and every changed value is an object (and the base is an object or
///    absent) → merge those objects member by member, recursively;
/// 5. if they disagree and every changed value is an array (base an array or absent) → merge
///    the arrays: element by element by their `name` (`type` for a member called
///    `conditions`) when every element of the base and of every head is an object with a
///    unique string there (Kubernetes lists of containers, env, volumes, ports, conditions),
///    else as sequences (`diff3`, an RGA-like merge: what a side inserted survives, a base
///    element either side removed stays removed);
/// 6. otherwise → the value of the highest-priority head among those that changed it.
///
/// A *creation* — a merge whose base document is `{}`: no common ancestor (the key was
/// created at both sides, or deleted and re-created), or an ancestor that was `{}` or not a
/// JSON object — merges objects field by field but takes arrays whole from the
/// highest-priority head (two pods created concurrently do not get each other's containers
/// glued together).
///
/// Values are compared structurally (`JSONValue.==`: member order ignored, numbers by decimal
/// value, strings by bytes).
public enum JSONMerge {
    /// Merges the top-level objects `heads` (lowest priority first) against `base`.
    public static func merge(base: [[UInt8]: JSONValue], heads: [[[UInt8]: JSONValue]]) -> [[UInt8]: JSONValue] {
        var report = Report()
        return merge(base: base, heads: heads, report: &report)
    }

    /// What a merge met, for operators and tests.
    public struct Report: Sendable, Equatable {
        /// Values resolved by rule 6: changed differently by several heads, taken from the
        /// highest-priority one.
        public var conflicts = 0
        /// Array regions that both sides changed differently (insertions next to removals or
        /// to the other side's insertions), merged element by element.
        public var adjacentArrayEdits = 0
        public init() {}
    }

    /// As `merge(base:heads:)`, adding to `report` what the merge met.
    public static func merge(base: [[UInt8]: JSONValue], heads: [[[UInt8]: JSONValue]], report: inout Report) -> [[UInt8]: JSONValue] {
        precondition(!heads.isEmpty, "merge needs at least one head")
        return mergeObjects(base: base, heads: heads, creation: base.isEmpty, report: &report)
    }

    static func mergeObjects(base: [[UInt8]: JSONValue], heads: [[[UInt8]: JSONValue]], creation: Bool,
                             report: inout Report) -> [[UInt8]: JSONValue] {
        var names = Set(base.keys)
        for h in heads { names.formUnion(h.keys) }
        var out: [[UInt8]: JSONValue] = [:]
        out.reserveCapacity(names.count)
        for name in names {
            if let v = mergeValues(base: base[name], heads: heads.map { $0[name] }, name: name, creation: creation, report: &report) {
                out[name] = v
            }
        }
        return out
    }

    /// Merges one member's values; `nil` means absent. `name` is the member's name (it picks the
    /// key of a keyed list).
    static func mergeValues(base: JSONValue?, heads: [JSONValue?], name: [UInt8]? = nil, creation: Bool = false,
                            report: inout Report) -> JSONValue? {
        let first = heads[0]
        if heads.allSatisfy({ $0 == first }) { return first }
        var changed: [JSONValue?] = []
        for h in heads where h != base { changed.append(h) }
        let firstChanged = changed[0]
        if changed.allSatisfy({ $0 == firstChanged }) { return firstChanged }

        // An edit beats a concurrent removal: removing heads hold the base.
        var heads = heads
        if base != nil, changed.contains(where: { $0 == nil }) {
            changed = changed.filter { $0 != nil }
            heads = heads.map { $0 ?? base }
            let firstEdit = changed[0]
            if changed.allSatisfy({ $0 == firstEdit }) { return firstEdit }
        }

        // Heads that did not change the member hold the base; an absent base merges as empty.
        if changed.allSatisfy({ $0?.objectMembers != nil }), base == nil || base?.objectMembers != nil {
            let baseObject = base?.objectMembers ?? [:]
            let objects = heads.map { $0?.objectMembers ?? baseObject }
            return .object(mergeObjects(base: baseObject, heads: objects, creation: creation, report: &report))
        }
        if !creation, changed.allSatisfy({ $0?.arrayElements != nil }), base == nil || base?.arrayElements != nil {
            let baseArray = base?.arrayElements ?? []
            let arrays = heads.map { $0?.arrayElements ?? baseArray }
            if let keyed = mergeKeyed(base: baseArray, heads: arrays, key: listKey(name), report: &report) { return .array(keyed) }
            var merged = arrays[0]
            for next in arrays.dropFirst() { merged = diff3(base: baseArray, lower: merged, higher: next, report: &report) }
            return .array(merged)
        }
        report.conflicts += 1
        return changed[changed.count - 1]
    }

    private static let conditions = Array("conditions".utf8)
    private static let nameKey = Array("name".utf8)
    private static let typeKey = Array("type".utf8)

    /// The member that identifies the elements of a list called `name`.
    static func listKey(_ name: [UInt8]?) -> [UInt8] { name == conditions ? typeKey : nameKey }

    /// The elements of `array` by their `key` member, in order; nil unless every element is an
    /// object with a string at `key` and the strings are unique.
    static func keyed(_ array: [JSONValue], key: [UInt8]) -> [(key: [UInt8], value: JSONValue)]? {
        var out: [(key: [UInt8], value: JSONValue)] = []
        out.reserveCapacity(array.count)
        var seen = Set<[UInt8]>()
        for element in array {
            guard case .string(let k)? = element.objectMembers?[key], seen.insert(k).inserted else { return nil }
            out.append((k, element))
        }
        return out
    }

    /// Merges lists whose elements are identified by `key` (when every list is keyed): each
    /// element merged as a value on its own (absent where a side removed it or never had it);
    /// order from the sequence merge of the keys, and an element that survives although a side
    /// removed it (it was edited elsewhere) goes after its predecessor in the highest-priority
    /// head that has it. Returns nil when the lists are not all keyed.
    static func mergeKeyed(base: [JSONValue], heads: [[JSONValue]], key: [UInt8], report: inout Report) -> [JSONValue]? {
        guard let baseKeyed = keyed(base, key: key) else { return nil }
        var headsKeyed: [[(key: [UInt8], value: JSONValue)]] = []
        for h in heads {
            guard let k = keyed(h, key: key) else { return nil }
            headsKeyed.append(k)
        }
        // A list that is empty everywhere but one side is not worth the detour.
        if baseKeyed.isEmpty && headsKeyed.filter({ !$0.isEmpty }).count < 2 { return nil }
        let baseMap = Dictionary(uniqueKeysWithValues: baseKeyed.map { ($0.key, $0.value) })
        let headMaps = headsKeyed.map { Dictionary(uniqueKeysWithValues: $0.map { ($0.key, $0.value) }) }
        var merged: [[UInt8]: JSONValue] = [:]
        var allKeys = Set(baseMap.keys)
        for m in headMaps { allKeys.formUnion(m.keys) }
        for k in allKeys {
            if let v = mergeValues(base: baseMap[k], heads: headMaps.map { $0[k] }, report: &report) { merged[k] = v }
        }
        // The order: a sequence merge of the key lists.
        let baseKeys = baseKeyed.map { JSONValue.string($0.key) }
        var order = headsKeyed[0].map { JSONValue.string($0.key) }
        var ignored = Report()
        for h in headsKeyed.dropFirst() { order = diff3(base: baseKeys, lower: order, higher: h.map { JSONValue.string($0.key) }, report: &ignored) }
        // Each key once (both sides may have added the same element at different places).
        var keys: [[UInt8]] = []
        var placed = Set<[UInt8]>()
        for case .string(let k) in order where merged[k] != nil && placed.insert(k).inserted { keys.append(k) }
        // Elements that survive although the merged order dropped them (removed at one side,
        // edited at another) go after their predecessor in the highest-priority head that has
        // them; collected first and placed in one pass, so this stays linear.
        var followers: [[UInt8]?: [[UInt8]]] = [:]
        let ordered = placed
        for h in headsKeyed.reversed() {
            var predecessor: [UInt8]?
            for entry in h {
                if ordered.contains(entry.key) { predecessor = entry.key; continue }
                if merged[entry.key] != nil, placed.insert(entry.key).inserted {
                    followers[predecessor, default: []].append(entry.key)
                }
            }
        }
        if !followers.isEmpty {
            var out = followers[nil] ?? []
            for k in keys {
                out.append(k)
                out += followers[k] ?? []
            }
            keys = out
        }
        return keys.map { merged[$0]! }
    }

    /// Three-way merge of sequences, like a sequence CRDT (RGA) over the elements the LCS
    /// matches to the base: a base element stays only if both sides kept it (a removal wins);
    /// every element a side inserted survives, placed after the base element that precedes it
    /// on that side; where both sides inserted at the same place, the lower side's insertions
    /// come first (minus those the higher side inserted too), then the higher side's. A region
    /// where both sides replaced the same base elements one for one by objects (or arrays)
    /// merges them element by element instead: an object edited in place at both sides is one
    /// object with both edits, not two.
    public static func diff3(base: [JSONValue], lower: [JSONValue], higher: [JSONValue]) -> [JSONValue] {
        var report = Report()
        return diff3(base: base, lower: lower, higher: higher, report: &report)
    }

    static func diff3(base: [JSONValue], lower: [JSONValue], higher: [JSONValue], report: inout Report) -> [JSONValue] {
        if lower == higher { return lower }
        if lower == base { return higher }
        if higher == base { return lower }
        let matchLower = SequenceMatcher.match(base, lower)
        let matchHigher = SequenceMatcher.match(base, higher)
        var out: [JSONValue] = []
        var o = 0, a = 0, b = 0
        while o < base.count || a < lower.count || b < higher.count {
            if o < base.count, matchLower[o] == a, matchHigher[o] == b {
                out.append(base[o])
                o += 1; a += 1; b += 1
                continue
            }
            // The next base element kept by both sides ends this unstable region.
            var o2 = o
            while o2 < base.count, matchLower[o2] == nil || matchHigher[o2] == nil { o2 += 1 }
            let a2 = o2 < base.count ? matchLower[o2]! : lower.count
            let b2 = o2 < base.count ? matchHigher[o2]! : higher.count
            let baseChunk = Array(base[o..<o2]), lowerChunk = Array(lower[a..<a2]), higherChunk = Array(higher[b..<b2])
            if lowerChunk == baseChunk {
                out.append(contentsOf: higherChunk)
            } else if higherChunk == baseChunk || lowerChunk == higherChunk {
                out.append(contentsOf: lowerChunk)
            } else if (o..<o2).allSatisfy({ matchLower[$0] == nil && matchHigher[$0] == nil }),
                      let inPlace = mergeInPlace(base: baseChunk, lower: lowerChunk, higher: higherChunk, report: &report) {
                out.append(contentsOf: inPlace)
            } else {
                // Insertions per gap: gap g lies before base element o+g (g == o2-o: the end).
                report.adjacentArrayEdits += 1
                let gaps = o2 - o + 1
                let lowerInserts = inserts(lowerChunk, from: a, base: o, gaps: gaps, match: matchLower)
                let higherInserts = inserts(higherChunk, from: b, base: o, gaps: gaps, match: matchHigher)
                // An element both sides inserted in this region is kept once (where the higher
                // side put it). Sets: membership only, and hashing agrees with ==.
                let insertedByHigher = Set(higherInserts.joined())
                for g in 0..<gaps {
                    out.append(contentsOf: lowerInserts[g].filter { !insertedByHigher.contains($0) })
                    out.append(contentsOf: higherInserts[g])
                    // Every base element of the region was removed by at least one side.
                }
            }
            o = o2; a = a2; b = b2
        }
        return out
    }

    /// A side's elements in a region that it did not keep from the base, grouped by the gap
    /// they follow: after the last base element of the region the side kept before them.
    private static func inserts(_ chunk: [JSONValue], from start: Int, base o: Int, gaps: Int, match: [Int?]) -> [[JSONValue]] {
        var byPosition: [Int: Int] = [:]  // side index → base index, for the kept ones
        for g in 0..<(gaps - 1) { if let j = match[o + g] { byPosition[j] = g } }
        var out = [[JSONValue]](repeating: [], count: gaps)
        var gap = 0
        for (i, element) in chunk.enumerated() {
            if let g = byPosition[start + i] {
                gap = g + 1
            } else {
                out[gap].append(element)
            }
        }
        return out
    }

    /// Both sides replaced the same base elements one for one, each triple objects (or each
    /// arrays): the elements were edited in place; merge each triple as a value.
    private static func mergeInPlace(base: [JSONValue], lower: [JSONValue], higher: [JSONValue], report: inout Report) -> [JSONValue]? {
        guard !base.isEmpty, base.count == lower.count, base.count == higher.count else { return nil }
        for i in base.indices {
            let triple = [base[i], lower[i], higher[i]]
            guard triple.allSatisfy({ $0.objectMembers != nil }) || triple.allSatisfy({ $0.arrayElements != nil }) else { return nil }
        }
        // Two containers of the same kind always merge to a value (never absent).
        return base.indices.map { mergeValues(base: base[$0], heads: [lower[$0], higher[$0]], report: &report)! }
    }
}

extension JSONValue {
    /// The members if this is an object.
    public var objectMembers: [[UInt8]: JSONValue]? {
        if case .object(let m) = self { return m }
        return nil
    }

    /// The elements if this is an array.
    public var arrayElements: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
}

/// Longest-common-subsequence matching between two sequences, deterministic.
enum SequenceMatcher {
    /// Above this many DP cells the middle of the sequences (after trimming the common prefix and
    /// suffix) is treated as one changed region instead of being matched: bounds time and memory
    /// for hostile inputs; deterministic, so every node still agrees.
    static let maxCells = 4_000_000

    /// For each index of `a`, the index of `b` it is matched to, or nil. Matches are strictly
    /// increasing in both sequences.
    static func match(_ a: [JSONValue], _ b: [JSONValue]) -> [Int?] {
        // Compare small integers, not values: each element is hashed once (a number's decimal
        // form is computed once, not once per comparison).
        var classes: [JSONValue: Int32] = [:]
        func ids(_ values: [JSONValue]) -> [Int32] {
            values.map { v in
                if let id = classes[v] { return id }
                let id = Int32(classes.count)
                classes[v] = id
                return id
            }
        }
        let a = ids(a), b = ids(b)
        var result = [Int?](repeating: nil, count: a.count)
        var prefix = 0
        while prefix < a.count, prefix < b.count, a[prefix] == b[prefix] {
            result[prefix] = prefix
            prefix += 1
        }
        var suffix = 0
        while suffix < a.count - prefix, suffix < b.count - prefix,
              a[a.count - 1 - suffix] == b[b.count - 1 - suffix] {
            result[a.count - 1 - suffix] = b.count - 1 - suffix
            suffix += 1
        }
        let n = a.count - prefix - suffix, m = b.count - prefix - suffix
        guard n > 0, m > 0, n * m <= maxCells else { return result }
        // lcs[i][j] = LCS length of a[prefix+i..<prefix+n] and b[prefix+j..<prefix+m], flattened.
        let width = m + 1
        var lcs = [Int32](repeating: 0, count: (n + 1) * width)
        for i in stride(from: n - 1, through: 0, by: -1) {
            for j in stride(from: m - 1, through: 0, by: -1) {
                lcs[i * width + j] = a[prefix + i] == b[prefix + j]
                    ? lcs[(i + 1) * width + j + 1] + 1
                    : max(lcs[(i + 1) * width + j], lcs[i * width + j + 1])
            }
        }
        var i = 0, j = 0
        while i < n, j < m {
            if a[prefix + i] == b[prefix + j] {
                result[prefix + i] = prefix + j
                i += 1; j += 1
            } else if lcs[(i + 1) * width + j] >= lcs[i * width + j + 1] {
                i += 1
            } else {
                j += 1
            }
        }
        return result
    }
}
