import EtcdAPI
import GRPCWire
import LatticeStore
import ProtoWire
import Synchronization

/// The member set (replicated with peer replication; a single member today).
public final class Membership: Sendable {
    private let state: Mutex<[Member]>
    /// Ids removed before: removing one again is "member not found", as in etcd.
    private let removed = Mutex<Set<UInt64>>([])
    private let nextID = Mutex<UInt64>(0)

    /// Client URLs peers announced (member id → URLs), for members configured without them.
    private let announcedClientURLs: @Sendable () -> [UInt64: [String]]

    public init(local: Member) {
        state = Mutex([local])
        announcedClientURLs = { [:] }
    }

    /// Every member of the cluster (`--initial-cluster`); the client URLs of the others come from
    /// what they announce to this member when they connect.
    public init(members: [Member], clientURLs: @escaping @Sendable () -> [UInt64: [String]]) {
        state = Mutex(members)
        announcedClientURLs = clientURLs
    }

    /// Members in ascending id order, as etcd lists them.
    public var members: [Member] {
        let announced = announcedClientURLs()
        return state.withLock { $0 }.sorted { $0.id < $1.id }.map { m in
            var m = m
            if m.clientURLs.isEmpty, let urls = announced[m.id] { m.clientURLs = urls }
            return m
        }
    }

    func add(peerURLs: [String], isLearner: Bool, idFrom seed: UInt64) throws(EtcdError) -> Member {
        try state.withLock { (members: inout [Member]) throws(EtcdError) -> Member in
            for url in peerURLs where members.contains(where: { $0.peerURLs.contains(url) }) {
                throw EtcdError(.failedPrecondition, "etcdserver: Peer URLs already exists")
            }
            // etcd's default --max-learners is 1.
            if isLearner && members.contains(where: \.isLearner) {
                throw EtcdError(.failedPrecondition, "etcdserver: too many learner members in cluster")
            }
            var id = seed
            while id == 0 || members.contains(where: { $0.id == id }) { id = id &* 6364136223846793005 &+ 1442695040888963407 }
            let member = Member(id: id, name: "", peerURLs: peerURLs, clientURLs: [], isLearner: isLearner)
            members.append(member)
            return member
        }
    }

    /// Only learners can be removed from a one-voter cluster: removing a voter (or an id that is
    /// not a learner) fails etcd's quorum check first, with its message and code.
    func remove(_ id: UInt64) throws(EtcdError) {
        if removed.withLock({ $0.contains(id) }) { throw .memberNotFound }
        try state.withLock { (members: inout [Member]) throws(EtcdError) -> Void in
            guard let i = members.firstIndex(where: { $0.id == id }), members[i].isLearner else { throw .removeLocalMember }
            members.remove(at: i)
        }
        removed.withLock { _ = $0.insert(id) }
    }

    func update(_ id: UInt64, peerURLs: [String]) throws(EtcdError) {
        try state.withLock { (members: inout [Member]) throws(EtcdError) -> Void in
            guard let i = members.firstIndex(where: { $0.id == id }) else { throw .memberNotFound }
            members[i].peerURLs = peerURLs
        }
    }

    func promote(_ id: UInt64) throws(EtcdError) {
        try state.withLock { (members: inout [Member]) throws(EtcdError) -> Void in
            guard let i = members.firstIndex(where: { $0.id == id }) else { throw .memberNotFound }
            guard members[i].isLearner else { throw EtcdError(.failedPrecondition, "etcdserver: can only promote a learner member") }
            // Without peer replication no learner ever catches up with this member.
            throw EtcdError(.failedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader")
        }
    }
}

extension EtcdError {
    static let memberNotFound = EtcdError(.notFound, "etcdserver: member not found")
    static let removeLocalMember = EtcdError(.unknown, "etcdserver: re-configuration failed due to not enough started members")
}

/// `etcdserverpb.Cluster`.
enum ClusterService {
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
