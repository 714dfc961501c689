import LatticeCore

/// Which of many watched key ranges contain a key, without looking at every range.
///
/// Single-key ranges (the common watch) live in a dictionary. Wider ranges are kept by their
/// distinct value with the ids that watch them; for queries they sit in an array sorted by start
/// key under a segment tree of the largest end in each subtree, so a lookup visits only the
/// ranges that start at or before the key and could still reach it: O(log n) plus the matches.
/// The array and tree are rebuilt on the first lookup after a change (O(n log n) for n distinct
/// wide ranges), so inserting and removing cost O(1) each.
public struct RangeIndex<ID: Hashable>: Sendable where ID: Sendable {
    private var exact: [StoredKey: [ID: Int]] = [:]
    private var wide: [WatchRange: [ID: Int]] = [:]
    private var sorted: [WatchRange] = []
    /// Segment tree over `sorted`: node i covers a power-of-two span; leaves at `leafBase + j`.
    private var maxEnd: [End] = []
    private var leafBase = 0
    private var dirty = false
    /// Number of (range, id) registrations, counting repeats.
    public private(set) var count = 0

    public init() {}

    public mutating func insert(_ range: WatchRange, _ id: ID) {
        count += 1
        if range.end.isEmpty {
            exact[StoredKey(range.key), default: [:]][id, default: 0] += 1
        } else {
            if wide[range] == nil { dirty = true }
            wide[range, default: [:]][id, default: 0] += 1
        }
    }

    /// Removes one registration of `range` by `id` (no-op if there is none).
    public mutating func remove(_ range: WatchRange, _ id: ID) {
        if range.end.isEmpty {
            let key = StoredKey(range.key)
            guard let n = exact[key]?[id] else { return }
            count -= 1
            if n > 1 { exact[key]![id] = n - 1 } else {
                exact[key]![id] = nil
                if exact[key]!.isEmpty { exact[key] = nil }
            }
        } else {
            guard let n = wide[range]?[id] else { return }
            count -= 1
            if n > 1 { wide[range]![id] = n - 1 } else {
                wide[range]![id] = nil
                if wide[range]!.isEmpty {
                    wide[range] = nil
                    dirty = true
                }
            }
        }
    }

    /// Adds to `hits` every id with a range containing `key`.
    public mutating func collect(_ key: [UInt8], into hits: inout Set<ID>) {
        if let ids = exact[StoredKey(key)] { hits.formUnion(ids.keys) }
        guard !wide.isEmpty else { return }
        if dirty { rebuild() }
        // Ranges starting at or before the key: sorted[0..<p].
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if compareBytes(sorted[mid].key, key) <= 0 { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return }
        visit(node: 1, span: 0..<leafBase, limit: lo, key: key, hits: &hits)
    }

    private func visit(node: Int, span: Range<Int>, limit: Int, key: [UInt8], hits: inout Set<ID>) {
        guard span.lowerBound < limit, maxEnd[node].isAfter(key) else { return }
        if span.count == 1 {
            if let ids = wide[sorted[span.lowerBound]] { hits.formUnion(ids.keys) }
            return
        }
        let mid = span.lowerBound + span.count / 2
        visit(node: 2 * node, span: span.lowerBound..<mid, limit: limit, key: key, hits: &hits)
        visit(node: 2 * node + 1, span: mid..<span.upperBound, limit: limit, key: key, hits: &hits)
    }

    private mutating func rebuild() {
        dirty = false
        sorted = wide.keys.sorted { compareBytes($0.key, $1.key) < 0 }
        leafBase = 1
        while leafBase < sorted.count { leafBase *= 2 }
        maxEnd = [End](repeating: .none, count: 2 * leafBase)
        for (i, range) in sorted.enumerated() {
            maxEnd[leafBase + i] = range.end == [0] ? .unbounded : .key(range.end)
        }
        var i = leafBase - 1
        while i >= 1 {
            maxEnd[i] = End.max(maxEnd[2 * i], maxEnd[2 * i + 1])
            i -= 1
        }
    }

    /// The exclusive end of a range, ordered: none < any key < unbounded.
    private enum End: Sendable {
        case none
        case key([UInt8])
        case unbounded

        func isAfter(_ key: [UInt8]) -> Bool {
            switch self {
            case .none: false
            case .key(let end): compareBytes(key, end) < 0
            case .unbounded: true
            }
        }

        static func max(_ a: End, _ b: End) -> End {
            switch (a, b) {
            case (.unbounded, _), (_, .unbounded): .unbounded
            case (.none, let other), (let other, .none): other
            case (.key(let x), .key(let y)): compareBytes(x, y) >= 0 ? a : b
            }
        }
    }
}
