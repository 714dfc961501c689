/// A cluster member as replicated state (etcd's `Member`).
public struct Member: Hashable, Sendable {
    public var id: UInt64
    public var name: String
    public var peerURLs: [String]
    public var clientURLs: [String]
    public var isLearner: Bool

    public init(id: UInt64, name: String = "", peerURLs: [String] = [], clientURLs: [String] = [], isLearner: Bool = false) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.isLearner = isLearner
    }
}

/// Replicated membership, split like etcd's member record:
/// - the *cluster's* part (peer URLs, learner flag, the name given when the member was added):
///   two last-writer-wins registers (by the change's HLC, then dot), one set by `memberAdd` and
///   one by `memberUpdate`; an update always beats an add, so the records every bootstrapping
///   member writes from its flags (possibly long after) never undo a `member update`;
/// - the *member's own* part (its name and client URLs), a second register set only by the
///   member itself (`memberPublish`, at start-up), so an add or update made elsewhere never
///   erases the client URLs a member announced;
/// - removal: remove-wins, for good — as in etcd, a removed id never comes back. Each removed
///   id keeps the smallest dot of a change that removed it: garbage collection stops waiting
///   for the removed member once every remaining member reports that dot (`Replica.stableBound`).
struct MemberTable: Sendable {
    /// What the table holds for one member id. Every part is optional so that the table is the
    /// same whatever order the ops arrive in (an update or a publish can arrive before the add
    /// it was written after, through another member); a member is listed once it has a
    /// cluster part (added or updated).
    struct Record: Hashable, Sendable {
        var id: UInt64
        /// The cluster's part as added; `member.clientURLs` is unused (always empty here).
        var added: ClusterPart?
        /// The cluster's part as last updated (beats `added`).
        var updated: ClusterPart?
        /// The member's own part, once it published it.
        var published: Published?
    }

    struct ClusterPart: Hashable, Sendable {
        var member: Member
        var hlc: HLC
        var dot: Dot
    }

    struct Published: Hashable, Sendable {
        var name: String
        var clientURLs: [String]
        var hlc: HLC
        var dot: Dot
    }

    private(set) var records: [UInt64: Record] = [:]
    /// Removed member id → the smallest dot of a change that removed it.
    private(set) var removed: [UInt64: Dot] = [:]

    init(records: [UInt64: Record] = [:], removed: [UInt64: Dot] = [:]) {
        self.records = records.filter { removed[$0.key] == nil }
        self.removed = removed
    }

    /// The visible member, nil while it has no cluster part: the update beats the add; the
    /// published name (when not empty) and client URLs win.
    static func visible(_ r: Record) -> Member? {
        guard var m = r.updated?.member ?? r.added?.member else { return nil }
        m.id = r.id
        m.clientURLs = []
        if let p = r.published {
            if !p.name.isEmpty { m.name = p.name }
            m.clientURLs = p.clientURLs
        }
        return m
    }

    var members: [Member] { records.keys.sorted().compactMap { MemberTable.visible(records[$0]!) } }

    func member(_ id: UInt64) -> Member? { records[id].flatMap(MemberTable.visible) }

    /// Applies a membership op; returns the member id whose visible record changed (or that
    /// was removed), nil when it changed nothing.
    mutating func apply(_ op: Op, of change: Change) -> UInt64? {
        func later(_ old: (HLC, Dot)?) -> Bool { old.map { $0 < (change.hlc, change.id) } ?? true }
        switch op {
        case .memberAdd(let m), .memberUpdate(let m), .memberPublish(let m):
            if removed[m.id] != nil { return nil }
            var r = records[m.id] ?? Record(id: m.id)
            let before = MemberTable.visible(r)
            switch op {
            case .memberAdd:
                guard later(r.added.map { ($0.hlc, $0.dot) }) else { return nil }
                r.added = ClusterPart(member: m, hlc: change.hlc, dot: change.id)
            case .memberUpdate:
                guard later(r.updated.map { ($0.hlc, $0.dot) }) else { return nil }
                r.updated = ClusterPart(member: m, hlc: change.hlc, dot: change.id)
            default:
                guard later(r.published.map { ($0.hlc, $0.dot) }) else { return nil }
                r.published = Published(name: m.name, clientURLs: m.clientURLs, hlc: change.hlc, dot: change.id)
            }
            records[m.id] = r
            return MemberTable.visible(r) != before ? m.id : nil
        case .memberRemove(let id):
            if let known = removed[id] {
                if change.id < known { removed[id] = change.id }
                return nil
            }
            removed[id] = change.id
            records[id] = nil
            return id
        default:
            return nil
        }
    }
}
