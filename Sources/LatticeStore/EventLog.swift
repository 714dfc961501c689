import EtcdAPI

/// The events of one revision, in the order the change applied them. `prevKV` is always filled
/// (watchers that did not ask for it get it stripped).
public struct RevisionEvents: Sendable {
    public let revision: Int64
    public let events: [Event]
}

/// Events of every revision since the compaction point, for watchers that start in the past or
/// fall behind (etcd's unsynced watchers read the same history from the MVCC store). Values are
/// shared with the MVCC index (arrays are copy-on-write), so the log costs little extra memory.
/// Not thread-safe: `MVCCStore` guards it with the index lock.
struct EventLog: Sendable {
    /// Dense: every revision after the store's first has at least one event.
    private(set) var entries: [RevisionEvents] = []

    mutating func append(_ batch: RevisionEvents) {
        precondition(entries.last.map { $0.revision + 1 == batch.revision } ?? true, "event log revisions must be dense")
        entries.append(batch)
    }

    /// Rebuilding from a snapshot: revisions whose versions were all superseded before the
    /// compaction point may be missing at the start; from the first one on, the log is dense.
    mutating func restoreAppend(_ batch: RevisionEvents) {
        if let last = entries.last, last.revision + 1 != batch.revision { entries.removeAll() }
        entries.append(batch)
    }

    /// Drops revisions below `revision`.
    mutating func compact(to revision: Int64) {
        guard let first = entries.first, first.revision < revision else { return }
        let drop = min(entries.count, Int(revision - first.revision))
        entries.removeFirst(drop)
    }

    /// Up to `maxRevisions` revisions starting at `revision`.
    func batches(from revision: Int64, maxRevisions: Int) -> ArraySlice<RevisionEvents> {
        guard let first = entries.first else { return [] }
        let start = max(0, Int(revision - first.revision))
        guard start < entries.count else { return [] }
        return entries[start..<min(entries.count, start + maxRevisions)]
    }
}
