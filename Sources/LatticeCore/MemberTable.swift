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
///   a last-writer-wins register (by the change's HLC, then dot) set by `memberAdd` and
///   `memberUpdate`;
/// - the *member's own* part (its name and client URLs), a second register set only by the
///   member itself (`memberPublish`, at start-up), so an add or update made elsewhere never
///   erases the client URLs a member announced;
/// - removal: remove-wins, for good — as in etcd, a removed id never comes back. Each removed
///   id keeps the smallest dot of a change that removed it: garbage collection stops waiting
///   for the removed member once every remaining member reports that dot (`Replica.stableBound`).
struct MemberTable: Sendable {
    struct Record: Hashable, Sendable {
        /// The cluster's part; `member.clientURLs` is unused (always empty in records made here).
        var member: Member
        var hlc: HLC
        var dot: Dot
        /// The member's own part, once it published it.
        var published: Published?
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

    /// The visible member: the published name (when not empty) and client URLs win.
    static func visible(_ r: Record) -> Member {
        var m = r.member
        if let p = r.published {
            if !p.name.isEmpty { m.name = p.name }
            m.clientURLs = p.clientURLs
        }
        return m
    }

    var members: [Member] { records.keys.sorted().map { MemberTable.visible(records[$0]!) } }

    func member(_ id: UInt64) -> Member? { records[id].map(MemberTable.visible) }

    /// Applies a membership op; returns the member id it changed, nil when it changed nothing.
    mutating func apply(_ op: Op, of change: Change) -> UInt64? {
        switch op {
        case .memberAdd(let m), .memberUpdate(let m):
            if removed[m.id] != nil { return nil }
            var cluster = m
            cluster.clientURLs = []
            if let r = records[m.id] {
                if (r.hlc, r.dot) >= (change.hlc, change.id) { return nil }
                records[m.id] = Record(member: cluster, hlc: change.hlc, dot: change.id, published: r.published)
            } else {
                records[m.id] = Record(member: cluster, hlc: change.hlc, dot: change.id, published: nil)
            }
            return m.id
        case .memberPublish(let m):
            // A member publishes after it was added (causally later), unless it was removed.
            guard var r = records[m.id] else { return nil }
            if let p = r.published, (p.hlc, p.dot) >= (change.hlc, change.id) { return nil }
            r.published = Published(name: m.name, clientURLs: m.clientURLs, hlc: change.hlc, dot: change.id)
            records[m.id] = r
            return m.id
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
