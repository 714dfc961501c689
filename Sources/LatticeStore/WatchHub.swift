import LatticeCore
import EtcdAPI
import Synchronization

/// Receives published revisions. `deliver` and `progress` are called in revision order, under the
/// hub's lock: implementations must only enqueue (e.g. hop to an event loop), never block.
public protocol WatchSubscriber: AnyObject, Sendable {
    /// A published revision with at least one event in one of the subscriber's ranges.
    func deliver(_ batch: RevisionEvents)
    /// Every revision up to `revision` has been delivered (in the subscriber's queue) before this.
    func progress(_ revision: Int64, _ token: Int)
}

/// Routes each published revision to the subscribers (watch streams) whose key ranges it touches.
///
/// Ordering contract: the store publishes revisions in order while holding its writer lock;
/// a subscriber registered when the last published revision was L receives every later revision
/// that matches, so it reads revisions ≤ L from the event log (catch-up) and the rest arrive here.
public final class WatchHub: Sendable {
    private struct State {
        var lastPublished: Int64
        var subscribers: [ObjectIdentifier: Subscription] = [:]
        /// Every watched range, by subscriber: a published revision is matched per event key in
        /// O(log n + matches), not against every watcher.
        var index = RangeIndex<ObjectIdentifier>()
        /// Watched ranges registered (one per watcher).
        var ranges = 0
    }

    private struct Subscription {
        let subscriber: any WatchSubscriber
        var ranges: [WatchRange: Int] = [:]
    }

    private let state: Mutex<State>

    init(currentRevision: Int64) {
        state = Mutex(State(lastPublished: currentRevision))
    }

    /// Adds one watched range of `subscriber` (ranges may repeat); returns the last published
    /// revision.
    public func add(_ subscriber: any WatchSubscriber, range: WatchRange) -> Int64 {
        state.withLock { s in
            let id = ObjectIdentifier(subscriber)
            s.subscribers[id, default: Subscription(subscriber: subscriber)].ranges[range, default: 0] += 1
            s.index.insert(range, id)
            s.ranges += 1
            return s.lastPublished
        }
    }

    /// Removes one watched range of `subscriber`.
    public func remove(_ subscriber: any WatchSubscriber, range: WatchRange) {
        state.withLock { s in
            let id = ObjectIdentifier(subscriber)
            guard let n = s.subscribers[id]?.ranges[range] else { return }
            s.index.remove(range, id)
            s.ranges -= 1
            if n > 1 {
                s.subscribers[id]!.ranges[range] = n - 1
            } else {
                s.subscribers[id]!.ranges[range] = nil
                if s.subscribers[id]!.ranges.isEmpty { s.subscribers[id] = nil }
            }
        }
    }

    /// Removes every range of `subscriber`.
    public func remove(_ subscriber: any WatchSubscriber) {
        state.withLock { s in
            let id = ObjectIdentifier(subscriber)
            guard let subscription = s.subscribers.removeValue(forKey: id) else { return }
            for (range, n) in subscription.ranges {
                for _ in 0..<n { s.index.remove(range, id) }
                s.ranges -= n
            }
        }
    }

    /// Asks for a `progress` callback carrying the last published revision, queued behind every
    /// delivery already made to the subscriber.
    public func requestProgress(_ subscriber: any WatchSubscriber, token: Int) {
        state.withLock { s in subscriber.progress(s.lastPublished, token) }
    }

    public var subscriberCount: Int { state.withLock { $0.subscribers.count } }
    /// Watched ranges registered, one per watcher (etcd's watcher count).
    public var watchedRangeCount: Int { state.withLock { $0.ranges } }

    /// The store's revisions were renumbered (restore tool, no subscribers): the next published
    /// revision follows `revision`.
    func restart(at revision: Int64) {
        state.withLock { s in s.lastPublished = revision }
    }

    func publish(_ batch: RevisionEvents) {
        state.withLock { s in
            s.lastPublished = batch.revision
            guard !s.subscribers.isEmpty else { return }
            var hits = Set<ObjectIdentifier>()
            for event in batch.events {
                if let key = event.kv?.key { s.index.collect(key, into: &hits) }
            }
            for id in hits { s.subscribers[id]?.subscriber.deliver(batch) }
        }
    }
}

/// A watched key range as etcd interprets a WatchCreateRequest: empty key = "\0"; empty end = the
/// single key; end "\0" = every key ≥ key; otherwise [key, end).
public struct WatchRange: Hashable, Sendable {
    public let key: [UInt8]
    public let end: [UInt8]

    public init(key: [UInt8], end: [UInt8]) {
        self.key = key.isEmpty ? [0] : key
        self.end = end
    }

    /// etcd: a non-empty end that is not after the key is "mvcc: watcher range is empty".
    public var isEmpty: Bool { !end.isEmpty && end != [0] && compareBytes(key, end) >= 0 }

    public func contains(_ k: [UInt8]) -> Bool { KeyRange(key: key, end: end).contains(k) }
}
