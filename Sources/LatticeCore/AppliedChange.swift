// What applying changes reports to the store: per-key visible outcomes, and the replica's errors.

/// A key and what it shows.
public struct VisibleEntry: Hashable, Sendable {
    public var key: [UInt8]
    public var value: VisibleValue

    public init(key: [UInt8], value: VisibleValue) {
        self.key = key
        self.value = value
    }
}

/// What applying a change did to one key it wrote.
public struct KeyEffect: Hashable, Sendable {
    public var key: [UInt8]
    /// The visible value before and after the change (nil: absent).
    public var before: VisibleValue?
    public var after: VisibleValue?

    public init(key: [UInt8], before: VisibleValue?, after: VisibleValue?) {
        self.key = key
        self.before = before
        self.after = after
    }

    public var outcome: KeyOutcome {
        if before == after { return .unchanged }
        if let after { return .put(after) }
        return .deleted
    }

    /// Whether readers see something different (a watch event is due).
    public var changesVisibleValue: Bool { before != after }
}

/// The visible result of a change for one key.
public enum KeyOutcome: Hashable, Sendable {
    /// The key now shows this value (new, or different bytes or lease than before).
    case put(VisibleValue)
    /// The key was visible and is now absent.
    case deleted
    /// Readers see the same as before (e.g. a remote write that lost LWW, a delete concurrent with
    /// a put, a write equal to the merge). Note that a local re-put of identical bytes is
    /// `unchanged` here although etcd reports it as a new revision: for local writes the store
    /// follows its own evaluation.
    case unchanged
}

/// One applied change and its effects.
public struct AppliedChange: Sendable {
    public let change: Change
    /// One entry per distinct key the change wrote, in the order of their first op.
    public let effects: [KeyEffect]
    /// Lease ids whose replicated state changed (granted, checkpointed, revoked).
    public let leasesChanged: [Int64]
    /// Member ids whose record changed (added, updated, removed).
    public let membersChanged: [UInt64]
    /// Whether the change had auth operations (users, roles, permissions, the enabled flag).
    public let changesAuth: Bool

    /// Whether this change removed a member that was not removed before.
    public var removesMember: Bool {
        !membersChanged.isEmpty && change.ops.contains { if case .memberRemove(let id) = $0 { return membersChanged.contains(id) } else { return false } }
    }

    /// The effects readers can observe, in `effects` order.
    public var visibleChanges: [KeyEffect] { effects.filter(\.changesVisibleValue) }
}

/// Counts from one `collectGarbage` pass.
public struct GarbageCollectionStats: Hashable, Sendable {
    public var droppedVersions = 0
    public var removedKeys = 0
    public var droppedLogEntries = 0
    /// Versions visited by multi-version collection (its cost; linear in the versions held).
    public var visitedVersions = 0
    /// Keys whose DAG was examined.
    public var visitedKeys = 0

    public init() {}
}

public enum ReplicaError: Error, Equatable, Sendable {
    /// The change breaks the protocol (zero ids, deps covering itself, parents outside deps).
    case invalidChange(Dot, String)
    /// Too many changes are waiting for their dependencies; retry after those arrive.
    case causalBufferFull(limit: Int)
    /// A transferred state cannot replace this replica's: it lacks changes this replica applied
    /// and no longer holds in its log (the sender is behind this replica's stable point).
    case transferBehind(String)
}
