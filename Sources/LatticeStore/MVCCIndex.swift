import EtcdAPI
import LatticeCore

/// One version of a key in the MVCC history. `version == 0` marks a deletion (tombstone).
struct KeyVersion: Sendable {
    var modRevision: Int64
    var createRevision: Int64
    var version: Int64
    var value: [UInt8]
    var lease: Int64

    var isTombstone: Bool { version == 0 }

    /// The version a put writes at `revision` over `previous` (the key's visible version, if any):
    /// etcd keeps the create revision and counts versions up; a re-created key starts again at 1.
    static func put(at revision: Int64, over previous: KeyVersion?, value: [UInt8], lease: Int64) -> KeyVersion {
        KeyVersion(modRevision: revision, createRevision: previous?.createRevision ?? revision,
                   version: (previous?.version ?? 0) + 1, value: value, lease: lease)
    }

    /// The deletion marker a delete writes at `revision`.
    static func tombstone(at revision: Int64) -> KeyVersion {
        KeyVersion(modRevision: revision, createRevision: 0, version: 0, value: [], lease: 0)
    }

    /// The watch event this version produces for `key`; a deletion's kv carries only the key and
    /// its revision, as etcd's.
    func event(_ key: [UInt8], previous: KeyVersion?) -> Event {
        let prev = previous?.keyValue(key)
        guard isTombstone else { return Event(type: .put, kv: keyValue(key), prevKV: prev) }
        var kv = KeyValue()
        kv.key = key
        kv.modRevision = modRevision
        return Event(type: .delete, kv: kv, prevKV: prev)
    }

    func keyValue(_ key: [UInt8], keysOnly: Bool = false) -> KeyValue {
        KeyValue(key: key, createRevision: createRevision, modRevision: modRevision, version: version,
                 value: keysOnly ? [] : value, lease: lease)
    }
}

extension KeyVersion: CompactArrayElement {
    /// A key's retained history: most keys hold one version, inline (`CompactArray`).
    enum CompactStorage: CompactArrayStorage, Sendable {
        case empty
        case one(KeyVersion)
        case many([KeyVersion])

        var cases: CompactArrayCases<KeyVersion> {
            switch self {
            case .empty: return .empty
            case .one(let version): return .one(version)
            case .many(let versions): return .many(versions)
            }
        }
    }
}

/// The node-local multi-version index: key → versions since the compaction point, in revision
/// order. Not replicated and not thread-safe: `MVCCStore` guards it.
struct MVCCIndex: Sendable {
    /// Keyed by `StoredKey` (`[UInt8]`'s own hashing feeds the hasher a byte at a time), in
    /// shards, so a write after a snapshot captured the index copies one shard, not all.
    /// A history is a `CompactArray`: most keys hold one version, inline instead of in an array
    /// buffer (no allocation per key).
    private var histories = StoredKeyMap<CompactArray<KeyVersion>>()
    /// Every key with retained history, in byte order.
    private(set) var sortedKeys = SortedKeys()
    /// The revision of the last applied change; 1 on an empty store, like etcd.
    private(set) var currentRevision: Int64 = 1
    /// Revisions below this were compacted away; -1 before the first compaction (etcd's initial value).
    private(set) var compactRevision: Int64 = -1

    /// Number of keys visible at the current revision.
    private(set) var liveKeyCount = 0
    /// Approximate bytes held: keys, values and a fixed overhead per retained version.
    /// Starts at etcd's size of an empty database file, so a fresh member reports a plausible size.
    private(set) var approximateBytes: Int64 = 20_480
    static let versionOverheadBytes = 64

    init() {}

    /// A copy for another thread to read at leisure (a snapshot's encoder); the histories map
    /// stays shared with it instead of being copied shard by shard by the next writes
    /// (`StoredKeyMap.capture`).
    mutating func capture() -> MVCCIndex {
        var copy = self
        copy.histories = histories.capture()
        return copy
    }

    // MARK: reads

    /// The version of `key` visible at `revision`, or nil if absent or deleted.
    func visible(_ key: [UInt8], at revision: Int64) -> KeyVersion? {
        guard let versions = histories[StoredKey(key)] else { return nil }
        guard let v = Self.version(in: versions, at: revision), !v.isTombstone else { return nil }
        return v
    }

    /// The latest version (live or tombstone) of `key`.
    func latest(_ key: [UInt8]) -> KeyVersion? {
        histories[StoredKey(key)]?.last
    }

    /// Every retained version of `key`, oldest first.
    func history(_ key: [UInt8]) -> CompactArray<KeyVersion>? {
        histories[StoredKey(key)]
    }

    private static func version(in versions: CompactArray<KeyVersion>, at revision: Int64) -> KeyVersion? {
        // Most reads are at the current revision: check the newest first.
        if let last = versions.last, last.modRevision <= revision { return last }
        var lo = 0, hi = versions.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if versions[mid].modRevision <= revision { lo = mid + 1 } else { hi = mid }
        }
        return lo == 0 ? nil : versions[lo - 1]
    }

    /// Visits the keys visible at `revision` in `range`, in key order, until `body` returns false.
    func forEachVisible(in range: KeyRange, at revision: Int64, _ body: ([UInt8], KeyVersion) -> Bool) {
        if range.isSingleKey {
            if let v = visible(range.key, at: revision) { _ = body(range.key, v) }
            return
        }
        sortedKeys.forEach(from: range.key) { key in
            if !range.isUnbounded && compareBytes(key, range.end) >= 0 { return false }
            if let v = visible(key, at: revision) { return body(key, v) }
            return true
        }
    }

    /// Number of keys visible at `revision` in `range`. A chunk of keys wholly inside the range
    /// and written at or before `revision` counts by its statistics; only the others are
    /// visited key by key (a paginated LIST pays for the keys written since its revision, not
    /// for the whole range).
    func count(in range: KeyRange, at revision: Int64) -> Int {
        if range.isSingleKey { return visible(range.key, at: revision) == nil ? 0 : 1 }
        if revision == currentRevision && range.key == [0] && range.isUnbounded { return liveKeyCount }
        var n = 0
        sortedKeys.forEachChunk(from: range.key) { keys, whole, live, newest in
            if whole && newest <= revision && (range.isUnbounded || compareBytes(keys.last!, range.end) < 0) {
                n += live
                return true
            }
            for key in keys {
                if !range.isUnbounded && compareBytes(key, range.end) >= 0 { return false }
                if visible(key, at: revision) != nil { n += 1 }
            }
            return true
        }
        return n
    }

    /// Sets a chunk's statistics from its keys' histories; returns its live count.
    @discardableResult
    private mutating func recomputeStatistics(chunk: Int) -> Int {
        var live = 0
        var newest: Int64 = 0
        for key in sortedKeys.keys(inChunk: chunk) {
            guard let last = histories[StoredKey(key)]?.last else { continue }
            if !last.isTombstone { live += 1 }
            newest = max(newest, last.modRevision)
        }
        sortedKeys.setStatistics(chunk: chunk, live: live, newest: newest)
        return live
    }

    /// Appends `version` to a key's history (creating it); returns the version it follows.
    private static func append(_ version: KeyVersion, to history: inout CompactArray<KeyVersion>?) -> KeyVersion? {
        let last = history?.last
        precondition((last?.modRevision ?? 0) < version.modRevision, "one version per key and revision")
        if history == nil { history = CompactArray(single: version) } else { history!.append(version) }
        return last
    }

    /// The watch event `revision` produced for `key`: the version written at `revision`, with
    /// the version before it as `prevKV` (none if that was a deletion or was compacted away, as
    /// etcd, which reads `prevKV` at `revision - 1`). A version missing from the history can
    /// only be a deletion at exactly the compaction revision (compaction drops tombstones).
    func event(of key: [UInt8], at revision: Int64) -> Event {
        if let versions = histories[StoredKey(key)] {
            var lo = 0, hi = versions.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if versions[mid].modRevision < revision { lo = mid + 1 } else { hi = mid }
            }
            if lo < versions.count, versions[lo].modRevision == revision {
                // etcd reads prevKV at revision - 1: compacted (none) for an event at the
                // compaction revision, whether or not the old version is dropped yet.
                let previous = lo > 0 && !versions[lo - 1].isTombstone && revision > compactRevision ? versions[lo - 1] : nil
                return versions[lo].event(key, previous: previous)
            }
        }
        var kv = KeyValue()
        kv.key = key
        kv.modRevision = revision
        return Event(type: .delete, kv: kv, prevKV: nil)
    }

    // MARK: writes

    /// Appends a version of `key` written at `revision` (which must be the revision being applied;
    /// `restoring` loads a snapshot's histories key by key, in any key order).
    mutating func append(_ key: [UInt8], _ version: KeyVersion, restoring: Bool = false) {
        precondition(restoring || version.modRevision > currentRevision, "a key version must be newer than the store")
        // One lookup of the key's history, to read its last version and append.
        let last = Self.append(version, to: &histories[StoredKey(key)])
        let wasLive = !(last?.isTombstone ?? true)
        // A new key's chunk is where it was inserted: found once, not searched for again.
        var inserted: (split: Int?, chunk: Int)?
        if last == nil {
            let r = sortedKeys.insertReportingSplit(key)
            inserted = (r.split, r.chunk)
        }
        let isLive = !version.isTombstone
        if wasLive != isLive { liveKeyCount += isLive ? 1 : -1 }
        let liveDelta = (isLive ? 1 : 0) - (wasLive ? 1 : 0)
        if let split = inserted?.split {
            // The upper half is counted key by key; the lower half is the whole chunk's live
            // count (which did not include the new key) with the new key added and the upper
            // half taken away, and keeps its newest revision: the chunk's newest version may
            // have moved up, and a newest revision that is too high only makes a count visit
            // the chunk's keys, never miscount.
            let (live, newest) = sortedKeys.statistics(chunk: split)
            let upper = recomputeStatistics(chunk: split + 1)
            sortedKeys.setStatistics(chunk: split, live: live + (isLive ? 1 : 0) - upper,
                                     newest: max(newest, version.modRevision))
        } else if let chunk = inserted?.chunk {
            sortedKeys.noteVersion(inChunk: chunk, liveDelta: liveDelta, revision: version.modRevision)
        } else {
            sortedKeys.noteVersion(of: key, liveDelta: liveDelta, revision: version.modRevision)
        }
        approximateBytes += Int64(key.count + version.value.count + Self.versionOverheadBytes)
    }

    /// An index holding `histories` (a snapshot's: keys ascending and distinct, each key's
    /// versions ascending by revision and none above `currentRevision`), built in one pass:
    /// no per-key search or chunk split. Nil when the input breaks those rules.
    init?(restoring histories: [(key: [UInt8], versions: CompactArray<KeyVersion>)], currentRevision: Int64, compactRevision: Int64) {
        self.histories.reserveCapacity(histories.count)
        var keys: [[UInt8]] = [], live: [Bool] = [], newest: [Int64] = []
        keys.reserveCapacity(histories.count)
        live.reserveCapacity(histories.count)
        newest.reserveCapacity(histories.count)
        for (key, versions) in histories {
            guard let last = versions.last, last.modRevision <= currentRevision else { return nil }
            if let previous = keys.last, compareBytes(previous, key) >= 0 { return nil }
            for i in 1..<max(1, versions.count) where versions[i - 1].modRevision >= versions[i].modRevision { return nil }
            self.histories.updateValue(versions, forKey: StoredKey(key))
            keys.append(key)
            live.append(!last.isTombstone)
            newest.append(last.modRevision)
            if !last.isTombstone { liveKeyCount += 1 }
            for v in versions { approximateBytes += Int64(key.count + v.value.count + Self.versionOverheadBytes) }
        }
        sortedKeys = SortedKeys(sorted: keys, live: live, newest: newest)
        self.currentRevision = currentRevision
        self.compactRevision = compactRevision
    }

    /// Sets the revision counters after a snapshot's histories were loaded.
    mutating func restore(currentRevision: Int64, compactRevision: Int64) {
        self.currentRevision = currentRevision
        self.compactRevision = compactRevision
    }

    mutating func advance(to revision: Int64) {
        precondition(revision >= currentRevision, "MVCC revisions must not go backwards")
        currentRevision = revision
    }

    /// The versions compaction keeps of a key's history: from the newest one at or below the
    /// compaction revision, without it when it is a tombstone. Old versions are dropped in
    /// batches after a compaction (`compactBatch`); everything that reads history as a whole
    /// (hashes, snapshots) reads through this, so it never depends on how far that got.
    func retained<History: RandomAccessCollection<KeyVersion>>(_ versions: History) -> History.SubSequence where History.Index == Int {
        Self.retained(versions, compactRevision: compactRevision)
    }

    static func retained<History: RandomAccessCollection<KeyVersion>>(_ versions: History, compactRevision revision: Int64) -> History.SubSequence
        where History.Index == Int {
        guard let first = versions.first, first.modRevision < revision else { return versions[...] }
        // The newest version at or below the compaction revision (versions ascend).
        var lo = 0, hi = versions.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if versions[mid].modRevision <= revision { lo = mid + 1 } else { hi = mid }
        }
        let keepFrom = lo - 1
        return versions[keepFrom].isTombstone ? versions[(keepFrom + 1)...] : versions[keepFrom...]
    }

    /// Compacts at once: the compaction point moves to `revision` and every key's history is
    /// trimmed (WAL replay, defragmentation, tests).
    mutating func compact(to revision: Int64) {
        beginCompaction(to: revision)
        var cursor: [UInt8]? = []
        while let from = cursor { cursor = compactBatch(from: from, maxKeys: Int.max) }
    }

    /// Moves the compaction point: reads below `revision` fail from now on. The versions it
    /// makes unreachable are dropped by `compactBatch` calls, a bounded number of keys at a time.
    mutating func beginCompaction(to revision: Int64) {
        compactRevision = max(compactRevision, revision)
    }

    /// Trims the histories of up to `maxKeys` keys from the first key ≥ `from`, in key order, to
    /// the compaction point; returns the key to continue from, nil when the end was reached.
    /// A key left without versions leaves the index; its chunk's statistics stay as they were
    /// (the key was not live, and the chunk's newest revision may only be an overestimate,
    /// which makes counts visit the chunk instead of trusting it: still exact).
    mutating func compactBatch(from: [UInt8], maxKeys: Int) -> [UInt8]? {
        var keys: [[UInt8]] = []
        var next: [UInt8]?
        sortedKeys.forEach(from: from) { key in
            if keys.count == maxKeys { next = key; return false }
            keys.append(key)
            return true
        }
        for key in keys {
            let stored = StoredKey(key)
            guard let versions = histories[stored] else { continue }
            let kept = retained(versions)
            guard kept.count != versions.count else { continue }
            for v in versions[..<kept.startIndex] {
                approximateBytes -= Int64(key.count + v.value.count + Self.versionOverheadBytes)
            }
            if kept.isEmpty {
                histories[stored] = nil
                sortedKeys.remove(key)
            } else {
                histories[stored] = CompactArray(kept)
            }
        }
        return next
    }
}
