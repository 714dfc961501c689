import EtcdAPI
import GRPCWire
import LatticeCore
import LatticeStore
import ProtoWire
import Synchronization

/// The member set of a member without a peer listener: itself alone, answering membership
/// changes as a one-member etcd does (only a learner can be added or removed without losing
/// quorum). A member with a peer listener uses `ReplicatedMembership`.
public final class Membership: Sendable {
    private let state: Mutex<[EtcdAPI.Member]>
    /// Ids removed before: removing one again is "member not found", as in etcd.
    private let removed = Mutex<Set<UInt64>>([])
    private let nextID = Mutex<UInt64>(0)

    public init(local: EtcdAPI.Member) {
        state = Mutex([local])
    }

    /// Members in ascending id order, as etcd lists them.
    public var members: [EtcdAPI.Member] { state.withLock { $0 }.sorted { $0.id < $1.id } }

    func add(peerURLs: [String], isLearner: Bool, idFrom seed: UInt64) throws(EtcdError) -> EtcdAPI.Member {
        try state.withLock { (members: inout [EtcdAPI.Member]) throws(EtcdError) -> EtcdAPI.Member in
            let id = try newMemberID(peerURLs: peerURLs, isLearner: isLearner, members: members, seed: seed)
            let member = EtcdAPI.Member(id: id, name: "", peerURLs: peerURLs, clientURLs: [], isLearner: isLearner)
            members.append(member)
            return member
        }
    }

    /// Only learners can be removed from a one-voter cluster: removing a voter (or an id that is
    /// not a learner) fails etcd's quorum check first, with its message and code.
    func remove(_ id: UInt64) throws(EtcdError) {
        if removed.withLock({ $0.contains(id) }) { throw .memberNotFound }
        try state.withLock { (members: inout [EtcdAPI.Member]) throws(EtcdError) -> Void in
            guard let i = members.firstIndex(where: { $0.id == id }), members[i].isLearner else { throw .removeLocalMember }
            members.remove(at: i)
        }
        removed.withLock { _ = $0.insert(id) }
    }

    func update(_ id: UInt64, peerURLs: [String]) throws(EtcdError) {
        try state.withLock { (members: inout [EtcdAPI.Member]) throws(EtcdError) -> Void in
            guard let i = members.firstIndex(where: { $0.id == id }) else { throw .memberNotFound }
            members[i].peerURLs = peerURLs
        }
    }

    func promote(_ id: UInt64) throws(EtcdError) {
        try state.withLock { (members: inout [EtcdAPI.Member]) throws(EtcdError) -> Void in
            guard let i = members.firstIndex(where: { $0.id == id }) else { throw .memberNotFound }
            guard members[i].isLearner else { throw EtcdError(.failedPrecondition, "etcdserver: can only promote a learner member") }
            // Without peer replication no learner ever catches up with this member.
            throw EtcdError(.failedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader")
        }
    }
}

/// etcd's checks for a member about to be added (its peer URLs unused, at most one learner) and
/// its id: derived from `seed`, never 0, never one of `members` nor `taken`.
func newMemberID(peerURLs: [String], isLearner: Bool, members: [EtcdAPI.Member], seed: UInt64,
                 taken: (UInt64) -> Bool = { _ in false }) throws(EtcdError) -> UInt64 {
    for url in peerURLs where members.contains(where: { $0.peerURLs.contains(url) }) {
        throw EtcdError(.failedPrecondition, "etcdserver: Peer URLs already exists")
    }
    // etcd's default --max-learners is 1.
    if isLearner && members.contains(where: \.isLearner) {
        throw EtcdError(.failedPrecondition, "etcdserver: too many learner members in cluster")
    }
    var id = seed
    while id == 0 || members.contains(where: { $0.id == id }) || taken(id) { id = id &* 6364136223846793005 &+ 1442695040888963407 }
    return id
}

extension EtcdError {
    static let memberNotFound = EtcdError(.notFound, "etcdserver: member not found")
    static let removeLocalMember = EtcdError(.unknown, "etcdserver: re-configuration failed due to not enough started members")
}

/// The cluster's membership as replicated state (the member table of the replicated store):
/// `member add/remove/update/promote` on any member write a change that every member applies,
/// with no quorum — a site that is cut off can change membership too, and concurrent changes
/// merge (last writer wins per member record, removal wins for good).
///
/// Lattice has no leader and every member holds the whole keyspace, so a learner is an ordinary
/// member with the flag set; `promote` clears the flag.
public final class ReplicatedMembership: Sendable {
    let store: MVCCStore
    /// This member as configured, listed until its own record arrives (a member joining an
    /// existing cluster).
    let local: EtcdAPI.Member

    public init(store: MVCCStore, local: EtcdAPI.Member) {
        self.store = store
        self.local = local
    }

    var members: [EtcdAPI.Member] { Self.list(store.members, local: local) }

    static func list(_ table: [LatticeCore.Member], local: EtcdAPI.Member) -> [EtcdAPI.Member] {
        var out = table.map(EtcdAPI.Member.init)
        if let i = out.firstIndex(where: { $0.id == local.id }) {
            if out[i].clientURLs.isEmpty { out[i].clientURLs = local.clientURLs }
        } else {
            out.append(local)
        }
        return out.sorted { $0.id < $1.id }
    }

    typealias Done = @Sendable (Result<[EtcdAPI.Member], EtcdError>) -> Void

    func add(peerURLs: [String], isLearner: Bool, done: @escaping @Sendable (Result<(EtcdAPI.Member, [EtcdAPI.Member]), EtcdError>) -> Void) {
        let seed = UInt64.random(in: 1...UInt64.max)
        let added = Mutex<LatticeCore.Member?>(nil)
        let local = self.local
        store.changeMembership({ (replica: Replica) throws(EtcdError) -> [Op] in
            let id = try newMemberID(peerURLs: peerURLs, isLearner: isLearner, members: Self.list(replica.members, local: local),
                                     seed: seed, taken: replica.isRemoved)
            let member = LatticeCore.Member(id: id, peerURLs: peerURLs, isLearner: isLearner)
            added.withLock { $0 = member }
            return [.memberAdd(member)]
        }, completion: { result in
            done(result.map { table in (EtcdAPI.Member(added.withLock { $0! }), Self.list(table, local: local)) })
        })
    }

    func remove(_ id: UInt64, done: @escaping Done) {
        let local = self.local
        store.changeMembership({ (replica: Replica) throws(EtcdError) -> [Op] in
            guard replica.member(id) != nil || (id == local.id && !replica.isRemoved(id)) else { throw .memberNotFound }
            return [.memberRemove(id: id)]
        }, completion: { done($0.map { Self.list($0, local: local) }) })
    }

    func update(_ id: UInt64, peerURLs: [String], done: @escaping Done) {
        let local = self.local
        store.changeMembership({ (replica: Replica) throws(EtcdError) -> [Op] in
            guard var member = replica.member(id) else { throw .memberNotFound }
            for url in peerURLs where Self.list(replica.members, local: local).contains(where: { $0.id != id && $0.peerURLs.contains(url) }) {
                throw EtcdError(.failedPrecondition, "etcdserver: Peer URLs already exists")
            }
            member.peerURLs = peerURLs
            return [.memberUpdate(member)]
        }, completion: { done($0.map { Self.list($0, local: local) }) })
    }

    func promote(_ id: UInt64, done: @escaping Done) {
        let local = self.local
        store.changeMembership({ (replica: Replica) throws(EtcdError) -> [Op] in
            guard var member = replica.member(id) else { throw .memberNotFound }
            guard member.isLearner else { throw EtcdError(.failedPrecondition, "etcdserver: can only promote a learner member") }
            member.isLearner = false
            return [.memberUpdate(member)]
        }, completion: { done($0.map { Self.list($0, local: local) }) })
    }
}

/// `etcdserverpb.Cluster`.
enum ClusterService {
    static func register(on routes: inout GRPCRoutes, store: MVCCStore, membership: ReplicatedMembership) {
        let clusterHeader = store.header(revision: 0)
        let service = "etcdserverpb.Cluster"
        routes.add(service: service, method: "MemberList", unary(limits: nil) { (_: MemberListRequest) throws(EtcdError) in
            MemberListResponse(header: clusterHeader, members: membership.members)
        })
        routes.add(service: service, method: "MemberAdd", asyncUnary(limits: nil, MemberAddResponse.self) { (r: MemberAddRequest, done) in
            membership.add(peerURLs: r.peerURLs, isLearner: r.isLearner) { result in
                done(result.map { MemberAddResponse(header: clusterHeader, member: $0.0, members: $0.1) })
            }
        })
        routes.add(service: service, method: "MemberRemove", asyncUnary(limits: nil, MemberRemoveResponse.self) { (r: MemberRemoveRequest, done) in
            membership.remove(r.id) { done($0.map { MemberRemoveResponse(header: clusterHeader, members: $0) }) }
        })
        routes.add(service: service, method: "MemberUpdate", asyncUnary(limits: nil, MemberUpdateResponse.self) { (r: MemberUpdateRequest, done) in
            membership.update(r.id, peerURLs: r.peerURLs) { done($0.map { MemberUpdateResponse(header: clusterHeader, members: $0) }) }
        })
        routes.add(service: service, method: "MemberPromote", asyncUnary(limits: nil, MemberPromoteResponse.self) { (r: MemberPromoteRequest, done) in
            membership.promote(r.id) { done($0.map { MemberPromoteResponse(header: clusterHeader, members: $0) }) }
        })
    }

    static func register(on routes: inout GRPCRoutes, store: MVCCStore, membership: Membership) {
        // etcd's cluster responses carry no revision.
        let clusterHeader = store.header(revision: 0)
        let service = "etcdserverpb.Cluster"
        routes.add(service: service, method: "MemberList", unary(limits: nil) { (_: MemberListRequest) throws(EtcdError) in
            MemberListResponse(header: clusterHeader, members: membership.members)
        })
        routes.add(service: service, method: "MemberAdd", unary(limits: nil) { (r: MemberAddRequest) throws(EtcdError) in
            let member = try membership.add(peerURLs: r.peerURLs, isLearner: r.isLearner, idFrom: UInt64.random(in: 1...UInt64.max))
            return MemberAddResponse(header: clusterHeader, member: member, members: membership.members)
        })
        routes.add(service: service, method: "MemberRemove", unary(limits: nil) { (r: MemberRemoveRequest) throws(EtcdError) in
            try membership.remove(r.id)
            return MemberRemoveResponse(header: clusterHeader, members: membership.members)
        })
        routes.add(service: service, method: "MemberUpdate", unary(limits: nil) { (r: MemberUpdateRequest) throws(EtcdError) in
            try membership.update(r.id, peerURLs: r.peerURLs)
            return MemberUpdateResponse(header: clusterHeader, members: membership.members)
        })
        routes.add(service: service, method: "MemberPromote", unary(limits: nil) { (r: MemberPromoteRequest) throws(EtcdError) in
            try membership.promote(r.id)
            return MemberPromoteResponse(header: clusterHeader, members: membership.members)
        })
    }
}
