/// Distinct keys in byte order, kept in chunks of at most `chunkMax` keys (a two-level B-tree):
/// finding a position is two binary searches, and an insert or removal moves at most one chunk's
/// elements instead of the whole key set (a flat sorted array made every new key an O(n)
/// memmove, which dominated writes of new keys once the store held a few hundred thousand).
///
/// Invariants: every chunk is non-empty and sorted; the last key of chunk i is less than the
/// first key of chunk i+1; `count` is the sum of the chunk sizes.
struct SortedKeys: Sendable, Sequence {
    static let chunkMax = 512

    private var chunks: [[[UInt8]]] = []
    private(set) var count = 0

    init() {}

    /// Builds from keys already sorted and distinct.
    init(sorted keys: [[UInt8]]) {
        var start = 0
        while start < keys.count {
            let end = Swift.min(keys.count, start + Self.chunkMax / 2)
            chunks.append(Array(keys[start..<end]))
            start = end
        }
        count = keys.count
    }

    /// A position: chunk and index inside it. `chunk == chunks.count` is the end.
    struct Position: Equatable {
        var chunk: Int
        var index: Int
    }

    /// The first position whose key is ≥ `key`.
    func lowerBound(_ key: [UInt8]) -> Position {
        // First chunk whose last key is ≥ key.
        var lo = 0, hi = chunks.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if compareBytes(chunks[mid][chunks[mid].count - 1], key) < 0 { lo = mid + 1 } else { hi = mid }
        }
        guard lo < chunks.count else { return Position(chunk: chunks.count, index: 0) }
        let chunk = chunks[lo]
        var l = 0, h = chunk.count
        while l < h {
            let mid = (l + h) / 2
            if compareBytes(chunk[mid], key) < 0 { l = mid + 1 } else { h = mid }
        }
        return Position(chunk: lo, index: l)
    }

    func contains(_ key: [UInt8]) -> Bool {
        let p = lowerBound(key)
        return p.chunk < chunks.count && chunks[p.chunk][p.index] == key
    }

    /// Inserts `key`; returns false (and changes nothing) if it is already present.
    @discardableResult
    mutating func insert(_ key: [UInt8]) -> Bool {
        guard !chunks.isEmpty else {
            chunks = [[key]]
            count = 1
            return true
        }
        var p = lowerBound(key)
        if p.chunk == chunks.count {
            // Greater than every key: append to the last chunk.
            p = Position(chunk: chunks.count - 1, index: chunks[chunks.count - 1].count)
        } else if chunks[p.chunk][p.index] == key {
            return false
        }
        chunks[p.chunk].insert(key, at: p.index)
        count += 1
        if chunks[p.chunk].count > Self.chunkMax {
            let upper = Array(chunks[p.chunk][(Self.chunkMax / 2)...])
            chunks[p.chunk].removeSubrange((Self.chunkMax / 2)...)
            chunks.insert(upper, at: p.chunk + 1)
        }
        return true
    }

    /// Removes every key in `keys` (O(n) over the whole set: for compaction, not per request).
    mutating func remove(_ keys: Set<[UInt8]>) {
        guard !keys.isEmpty else { return }
        var kept: [[UInt8]] = []
        kept.reserveCapacity(Swift.max(0, count - keys.count))
        for key in self where !keys.contains(key) { kept.append(key) }
        self = SortedKeys(sorted: kept)
    }

    /// Visits keys from the first one ≥ `key`, in order, until `body` returns false.
    func forEach(from key: [UInt8], _ body: ([UInt8]) -> Bool) {
        var p = lowerBound(key)
        while p.chunk < chunks.count {
            let chunk = chunks[p.chunk]
            for i in p.index..<chunk.count where !body(chunk[i]) { return }
            p = Position(chunk: p.chunk + 1, index: 0)
        }
    }

    func makeIterator() -> FlattenSequence<[[[UInt8]]]>.Iterator {
        chunks.joined().makeIterator()
    }
}
