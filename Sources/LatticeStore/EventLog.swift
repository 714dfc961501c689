import EtcdAPI

/// The events of one revision, in the order the change applied them. `prevKV` is always filled
/// (watchers that did not ask for it get it stripped).
public struct RevisionEvents: Sendable {
    public let revision: Int64
    public let events: [Event]
}

/// Which keys every revision since the compaction point wrote, for watchers that start in the
/// past or fall behind (etcd's unsynced watchers read the same history from its MVCC store).
///
/// The events themselves are not kept: the index holds every version since the compaction
/// point, so a revision's events are rebuilt from it when a watcher reads them (the version a
/// key has at that revision, and the one before it as `prevKV`). The log holds one key reference
/// per event and one offset per revision, flat, instead of an `Event` (two key-value records) per
/// event: about 12 bytes per revision where events took about 160.
/// Not thread-safe: `MVCCStore` guards it with the index lock.
struct EventLog: Sendable {
    /// The revision of `starts[0]`; meaningless while `starts` is empty.
    private(set) var firstRevision: Int64 = 0
    /// The keys of every logged revision, in revision order, each revision's in the order its
    /// change applied them. Keys are shared with the index (arrays are copy-on-write).
    private var keys: [[UInt8]] = []
    /// `starts[i]`: where revision `firstRevision + i`'s keys begin in `keys`. Dense: every
    /// revision after the store's first has at least one event.
    private var starts: [Int] = []

    var revisionCount: Int { starts.count }
    var lastRevision: Int64? { starts.isEmpty ? nil : firstRevision + Int64(starts.count) - 1 }

    mutating func append(revision: Int64, keys written: [[UInt8]]) {
        precondition(lastRevision.map { $0 + 1 == revision } ?? true, "event log revisions must be dense")
        precondition(!written.isEmpty, "a logged revision has at least one event")
        if starts.isEmpty { firstRevision = revision }
        starts.append(keys.count)
        keys.append(contentsOf: written)
    }

    /// Rebuilds the log from restored histories: `pairs` holds (revision, key) for every version
    /// at or above the compaction point, in any order. Revisions whose versions were all
    /// superseded before the compaction point may be missing at the start; the log starts at
    /// the first revision from which it is dense.
    static func rebuilding(from pairs: [(revision: Int64, key: [UInt8])]) -> EventLog {
        var log = EventLog()
        guard let low = pairs.lazy.map(\.revision).min(), let high = pairs.lazy.map(\.revision).max() else { return log }
        // Counting sort by revision: O(events + revisions).
        let span = Int(high - low) + 1
        var counts = [Int](repeating: 0, count: span)
        for p in pairs { counts[Int(p.revision - low)] += 1 }
        // The log starts after the last revision without events.
        var first = 0
        for (i, c) in counts.enumerated() where c == 0 { first = i + 1 }
        guard first < span else { return log }
        var offsets = [Int](repeating: 0, count: span - first)
        var total = 0
        for i in first..<span {
            offsets[i - first] = total
            total += counts[i]
        }
        log.firstRevision = low + Int64(first)
        log.starts = offsets
        var fill = offsets
        log.keys = [[UInt8]](repeating: [], count: total)
        for p in pairs where p.revision >= log.firstRevision {
            let slot = Int(p.revision - log.firstRevision)
            log.keys[fill[slot]] = p.key
            fill[slot] += 1
        }
        return log
    }

    /// Drops revisions below `revision`.
    mutating func compact(to revision: Int64) {
        guard !starts.isEmpty, firstRevision < revision else { return }
        let drop = min(starts.count, Int(revision - firstRevision))
        if drop == starts.count {
            self = EventLog()
            return
        }
        let keyDrop = starts[drop]
        keys.removeFirst(keyDrop)
        starts.removeFirst(drop)
        for i in starts.indices { starts[i] -= keyDrop }
        firstRevision += Int64(drop)
    }

    /// Up to `maxRevisions` revisions starting at `revision`, their events rebuilt from `index`.
    func batches(from revision: Int64, maxRevisions: Int, index: MVCCIndex) -> [RevisionEvents] {
        guard !starts.isEmpty else { return [] }
        let start = max(0, Int(revision - firstRevision))
        guard start < starts.count else { return [] }
        let end = min(starts.count, start + maxRevisions)
        var out: [RevisionEvents] = []
        out.reserveCapacity(end - start)
        for i in start..<end {
            let rev = firstRevision + Int64(i)
            let keyEnd = i + 1 < starts.count ? starts[i + 1] : keys.count
            var events: [Event] = []
            events.reserveCapacity(keyEnd - starts[i])
            for k in starts[i]..<keyEnd {
                events.append(index.event(of: keys[k], at: rev))
            }
            out.append(RevisionEvents(revision: rev, events: events))
        }
        return out
    }
}
