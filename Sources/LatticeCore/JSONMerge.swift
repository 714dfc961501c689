/// Field-level merge of concurrent JSON versions against their common ancestor (docs/architecture.md, docs/consistency.md "Conflicts").
///
/// Inputs are ordered by priority, lowest first: the last head is the *winner*, the one with the
/// greatest (HLC, member id). The result is a pure function of (base, heads in that order), so
/// every node that sees the same versions computes the same document.
///
/// Rules, applied recursively per object member (a missing member is a value too: "absent"):
/// 1. all heads agree → that value;
/// 2. otherwise only the heads that *changed* the member relative to the base count: if they
///    all changed it the same way → their value;
/// 3. if they disagree and every changed value is an object (and the base is an object or
///    absent) → merge those objects member by member, recursively;
/// 4. if they disagree and every changed value is an array (base an array or absent) → merge
///    the arrays as sequences (`diff3`);
/// 5. otherwise → the value of the highest-priority head among those that changed it (which may
///    be "absent": a deletion by the winner wins).
///
/// Values are compared structurally (`JSONValue.==`: member order ignored, numbers by literal
/// text, strings by bytes).
public enum JSONMerge {
    /// Merges the top-level objects `heads` (lowest priority first) against `base`.
    public static func merge(base: [[UInt8]: JSONValue], heads: [[[UInt8]: JSONValue]]) -> [[UInt8]: JSONValue] {
        precondition(!heads.isEmpty, "merge needs at least one head")
        return mergeObjects(base: base, heads: heads)
    }

    static func mergeObjects(base: [[UInt8]: JSONValue], heads: [[[UInt8]: JSONValue]]) -> [[UInt8]: JSONValue] {
        var names = Set(base.keys)
        for h in heads { names.formUnion(h.keys) }
        var out: [[UInt8]: JSONValue] = [:]
        out.reserveCapacity(names.count)
        for name in names {
            if let v = mergeValues(base: base[name], heads: heads.map { $0[name] }) { out[name] = v }
        }
        return out
    }

    /// Merges one member's values; `nil` means absent.
    static func mergeValues(base: JSONValue?, heads: [JSONValue?]) -> JSONValue? {
        let first = heads[0]
        if heads.allSatisfy({ $0 == first }) { return first }
        var changed: [JSONValue?] = []
        for h in heads where h != base { changed.append(h) }
        let firstChanged = changed[0]
        if changed.allSatisfy({ $0 == firstChanged }) { return firstChanged }

        // Heads that did not change the member hold the base; an absent base merges as empty.
        if changed.allSatisfy({ $0?.objectMembers != nil }), base == nil || base?.objectMembers != nil {
            let baseObject = base?.objectMembers ?? [:]
            let objects = heads.map { $0?.objectMembers ?? baseObject }
            return .object(mergeObjects(base: baseObject, heads: objects))
        }
        if changed.allSatisfy({ $0?.arrayElements != nil }), base == nil || base?.arrayElements != nil {
            let baseArray = base?.arrayElements ?? []
            let arrays = heads.map { $0?.arrayElements ?? baseArray }
            var merged = arrays[0]
            for next in arrays.dropFirst() { merged = diff3(base: baseArray, lower: merged, higher: next) }
            return .array(merged)
        }
        return changed[changed.count - 1]
    }

    /// Three-way merge of sequences (diff3 over JSON-equal elements). Regions where only one side
    /// changed take that side; regions both changed the same way take it once; where both sides
    /// only *inserted* different elements at the same place, both insertions are kept (the lower
    /// side's elements not also inserted by the higher side, then the higher side's) — the
    /// add-wins preference for over- rather than under-replication; any other conflicting region
    /// goes to `higher`.
    public static func diff3(base: [JSONValue], lower: [JSONValue], higher: [JSONValue]) -> [JSONValue] {
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
            let baseChunk = base[o..<o2], lowerChunk = lower[a..<a2], higherChunk = higher[b..<b2]
            if lowerChunk.elementsEqual(baseChunk) {
                out.append(contentsOf: higherChunk)
            } else if higherChunk.elementsEqual(baseChunk) || lowerChunk.elementsEqual(higherChunk) {
                out.append(contentsOf: lowerChunk)
            } else if baseChunk.isEmpty {
                out.append(contentsOf: lowerChunk.filter { !higherChunk.contains($0) })
                out.append(contentsOf: higherChunk)
            } else {
                out.append(contentsOf: higherChunk)
            }
            o = o2; a = a2; b = b2
        }
        return out
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
