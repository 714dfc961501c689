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

/// Replicated membership: per member id a last-writer-wins register (by the change's HLC, then
/// dot) set by `memberAdd`/`memberUpdate`, and a remove-wins flag set by `memberRemove` — as in
/// etcd, a removed member id never comes back. Removed ids are kept (a handful of UInt64s).
struct MemberTable: Sendable {
    struct Record: Hashable, Sendable {
        var member: Member
        var hlc: HLC
        var dot: Dot
    }

    private(set) var records: [UInt64: Record] = [:]
    private(set) var removed: Set<UInt64> = []

    init(records: [UInt64: Record] = [:], removed: Set<UInt64> = []) {
        self.records = records.filter { !removed.contains($0.key) }
        self.removed = removed
    }

    var members: [Member] { records.keys.sorted().map { records[$0]!.member } }

    mutating func apply(_ op: Op, of change: Change) -> UInt64? {
        switch op {
        case .memberAdd(let m), .memberUpdate(let m):
            if removed.contains(m.id) { return nil }
            if let r = records[m.id], (r.hlc, r.dot) >= (change.hlc, change.id) { return nil }
            records[m.id] = Record(member: m, hlc: change.hlc, dot: change.id)
            return m.id
        case .memberRemove(let id):
            guard removed.insert(id).inserted else { return nil }
            records[id] = nil
            return id
        default:
            return nil
        }
    }
}
