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
    private struct Registration {
        let subscriber: any WatchSubscriber
        var ranges: [WatchRange]
    }

    private struct State {
        var lastPublished: Int64
        var registrations: [ObjectIdentifier: Registration] = [:]
    }

    private let state: Mutex<State>

    init(currentRevision: Int64) {
        state = Mutex(State(lastPublished: currentRevision))
    }

    /// Registers (or updates) a subscriber's key ranges; returns the last published revision.
    public func update(_ subscriber: any WatchSubscriber, ranges: [WatchRange]) -> Int64 {
        state.withLock { s in
            if ranges.isEmpty {
                s.registrations[ObjectIdentifier(subscriber)] = nil
            } else {
                s.registrations[ObjectIdentifier(subscriber)] = Registration(subscriber: subscriber, ranges: ranges)
            }
            return s.lastPublished
        }
    }

    public func remove(_ subscriber: any WatchSubscriber) {
        state.withLock { _ = $0.registrations.removeValue(forKey: ObjectIdentifier(subscriber)) }
    }

    /// Asks for a `progress` callback carrying the last published revision, queued behind every
    /// delivery already made to the subscriber.
    public func requestProgress(_ subscriber: any WatchSubscriber, token: Int) {
        state.withLock { s in subscriber.progress(s.lastPublished, token) }
    }

    public var subscriberCount: Int { state.withLock { $0.registrations.count } }

    func publish(_ batch: RevisionEvents) {
        state.withLock { s in
            s.lastPublished = batch.revision
            for registration in s.registrations.values {
                let hit = batch.events.contains { event in
                    guard let key = event.kv?.key else { return false }
                    return registration.ranges.contains { $0.contains(key) }
                }
                if hit { registration.subscriber.deliver(batch) }
            }
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
