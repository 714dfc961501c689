import LatticeCore

/// Distinct keys in byte order, kept in chunks of at most `chunkMax` keys (a two-level B-tree):
/// finding a position is two binary searches, and an insert or removal moves at most one chunk's
/// elements instead of the whole key set (a flat sorted array made every new key an O(n)
/// memmove, which dominated writes of new keys once the store held a few hundred thousand).
///
/// Invariants: every chunk is non-empty and sorted; the last key of chunk i is less than the
/// first key of chunk i+1; `lastKeys[i]` is the last key of chunk i; `count` is the sum of the
/// chunk sizes.
struct SortedKeys: Sendable, Sequence {
    static let chunkMax = 512

    private var chunks: [[[UInt8]]] = []
    /// Each chunk's last key, in one array: the search for a key's chunk reads them without
    /// going through each chunk's storage (one memory access fewer per step; the keys are
    /// scattered over the heap, so each step is a cache miss or two).
    private var lastKeys: [[UInt8]] = []
    private(set) var count = 0
    /// Per chunk, kept by the owner (`MVCCIndex`): how many of its keys are live at the current
    /// revision, and the newest revision of any version of its keys. A chunk whose newest
    /// revision is at or below a read revision looks at that revision exactly as it does now,
    /// so a count can take its live number without visiting its keys.
    private var live: [Int] = []
    private var newest: [Int64] = []

    init() {}

    /// Builds from keys already sorted and distinct (chunk statistics zero: the owner sets them).
    init(sorted keys: [[UInt8]]) {
        var start = 0
        while start < keys.count {
            let end = Swift.min(keys.count, start + Self.chunkMax / 2)
            chunks.append(Array(keys[start..<end]))
            lastKeys.append(keys[end - 1])
            start = end
        }
        count = keys.count
        live = Array(repeating: 0, count: chunks.count)
        newest = Array(repeating: 0, count: chunks.count)
    }

    /// Builds from keys already sorted and distinct, with each key's statistics (whether it is
    /// live, its newest revision; same order as `keys`) summed into its chunk's.
    init(sorted keys: [[UInt8]], live isLive: [Bool], newest revisions: [Int64]) {
        precondition(isLive.count == keys.count && revisions.count == keys.count, "one statistic per key")
        self.init(sorted: keys)
        var k = 0
        for chunk in chunks.indices {
            for _ in chunks[chunk].indices {
                if isLive[k] { live[chunk] += 1 }
                newest[chunk] = Swift.max(newest[chunk], revisions[k])
                k += 1
            }
        }
    }

    var chunkCount: Int { chunks.count }

    func keys(inChunk chunk: Int) -> [[UInt8]] { chunks[chunk] }

    /// A chunk's statistics: its live keys and the newest revision of any version of its keys.
    func statistics(chunk: Int) -> (live: Int, newest: Int64) { (live[chunk], newest[chunk]) }

    /// Sets a chunk's statistics (after a split or a rebuild).
    mutating func setStatistics(chunk: Int, live count: Int, newest revision: Int64) {
        live[chunk] = count
        newest[chunk] = revision
    }

    /// Records a new version of `key` (present): its chunk's live count changes by `liveDelta`
    /// and its newest revision becomes at least `revision`.
    mutating func noteVersion(of key: [UInt8], liveDelta: Int, revision: Int64) {
        let p = lowerBound(key)
        guard p.chunk < chunks.count else { return }
        noteVersion(inChunk: p.chunk, liveDelta: liveDelta, revision: revision)
    }

    /// The same, for a key known to be in `chunk` (as `insertReportingSplit` reports it).
    mutating func noteVersion(inChunk chunk: Int, liveDelta: Int, revision: Int64) {
        live[chunk] += liveDelta
        if revision > newest[chunk] { newest[chunk] = revision }
    }

    /// Visits the chunks from the one holding the first key ≥ `key`: its keys from there, whether
    /// that is the whole chunk, and its statistics; until `body` returns false.
    func forEachChunk(from key: [UInt8], _ body: (_ keys: ArraySlice<[UInt8]>, _ whole: Bool, _ live: Int, _ newest: Int64) -> Bool) {
        var p = lowerBound(key)
        while p.chunk < chunks.count {
            if !body(chunks[p.chunk][p.index...], p.index == 0, live[p.chunk], newest[p.chunk]) { return }
            p = Position(chunk: p.chunk + 1, index: 0)
        }
    }

    /// A position: chunk and index inside it. `chunk == chunks.count` is the end.
    struct Position: Equatable {
        var chunk: Int
        var index: Int
    }

    /// The first position whose key is ≥ `key`.
    func lowerBound(_ key: [UInt8]) -> Position {
        let chunk = Self.lowerBound(key, in: lastKeys)
        guard chunk < chunks.count else { return Position(chunk: chunks.count, index: 0) }
        return Position(chunk: chunk, index: Self.lowerBound(key, in: chunks[chunk]))
    }

    /// The first index of `sorted` whose key is ≥ `key`.
    @inline(__always)
    private static func lowerBound(_ key: [UInt8], in sorted: [[UInt8]]) -> Int {
        sorted.withUnsafeBufferPointer { keys in
            var lo = 0, hi = keys.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if compareBytes(keys[mid], key) < 0 { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
    }

    func contains(_ key: [UInt8]) -> Bool {
        let p = lowerBound(key)
        return p.chunk < chunks.count && chunks[p.chunk][p.index] == key
    }

    /// Inserts `key`; returns false (and changes nothing) if it is already present.
    @discardableResult
    mutating func insert(_ key: [UInt8]) -> Bool {
        insertReportingSplit(key).inserted
    }

    /// Inserts `key`, and says which chunk split in two to make room, if one did (it keeps the
    /// statistics of the whole chunk before the split, and the next chunk's are zero: the owner
    /// sets both), and otherwise which chunk holds the key (present or inserted). A new key
    /// counts in no chunk's statistics until the owner notes it.
    mutating func insertReportingSplit(_ key: [UInt8]) -> (inserted: Bool, split: Int?, chunk: Int) {
        guard !chunks.isEmpty else {
            chunks = [[key]]
            lastKeys = [key]
            live = [0]
            newest = [0]
            count = 1
            return (true, nil, 0)
        }
        var p = lowerBound(key)
        if p.chunk == chunks.count {
            // Greater than every key: append to the last chunk.
            p = Position(chunk: chunks.count - 1, index: chunks[chunks.count - 1].count)
        } else if chunks[p.chunk][p.index] == key {
            return (false, nil, p.chunk)
        }
        chunks[p.chunk].insert(key, at: p.index)
        if p.index == chunks[p.chunk].count - 1 { lastKeys[p.chunk] = key }
        count += 1
        guard chunks[p.chunk].count > Self.chunkMax else { return (true, nil, p.chunk) }
        // A key appended after every other (keys created in ascending order, the norm for
        // generated names) leaves the full chunk as it is and starts the next one: halves
        // would stay half full forever, as nothing is inserted below them again. Otherwise the
        // chunk splits in halves. The lower part is copied to a buffer of its size (it would
        // keep the grown buffer of the full chunk, twice as large).
        let appended = p.chunk == chunks.count - 1 && p.index == chunks[p.chunk].count - 1
        let cut = appended ? Self.chunkMax : Self.chunkMax / 2
        let upper = Array(chunks[p.chunk][cut...])
        chunks[p.chunk] = Array(chunks[p.chunk][..<cut])
        chunks.insert(upper, at: p.chunk + 1)
        lastKeys[p.chunk] = chunks[p.chunk][chunks[p.chunk].count - 1]
        lastKeys.insert(upper[upper.count - 1], at: p.chunk + 1)
        live.insert(0, at: p.chunk + 1)
        newest.insert(0, at: p.chunk + 1)
        return (true, p.chunk, p.chunk)
    }

    /// Removes `key` if present: it leaves its chunk (and an emptied chunk goes with its
    /// statistics); the other chunks' statistics are unchanged.
    mutating func remove(_ key: [UInt8]) {
        let p = lowerBound(key)
        guard p.chunk < chunks.count, chunks[p.chunk][p.index] == key else { return }
        chunks[p.chunk].remove(at: p.index)
        count -= 1
        if chunks[p.chunk].isEmpty {
            chunks.remove(at: p.chunk)
            lastKeys.remove(at: p.chunk)
            live.remove(at: p.chunk)
            newest.remove(at: p.chunk)
        } else if p.index == chunks[p.chunk].count {
            lastKeys[p.chunk] = chunks[p.chunk][p.index - 1]
        }
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
