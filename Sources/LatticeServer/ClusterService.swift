import EtcdAPI
import GRPCWire
import LatticeStore
import ProtoWire
import Synchronization

/// The member set (replicated with peer replication; a single member today).
public final class Membership: Sendable {
    private let state: Mutex<[Member]>
    private let nextID = Mutex<UInt64>(0)

    public init(local: Member) {
        state = Mutex([local])
    }

    public var members: [Member] { state.withLock { $0 } }

    func add(peerURLs: [String], isLearner: Bool, idFrom seed: UInt64) throws(EtcdError) -> Member {
        try state.withLock { (members: inout [Member]) throws(EtcdError) -> Member in
            for url in peerURLs where members.contains(where: { $0.peerURLs.contains(url) }) {
                throw EtcdError(.failedPrecondition, "etcdserver: Peer URLs already exists")
            }
            var id = seed
            while id == 0 || members.contains(where: { $0.id == id }) { id = id &* 6364136223846793005 &+ 1442695040888963407 }
            let member = Member(id: id, name: "", peerURLs: peerURLs, clientURLs: [], isLearner: isLearner)
            members.append(member)
            return member
        }
    }

    func remove(_ id: UInt64) throws(EtcdError) {
        try state.withLock { (members: inout [Member]) throws(EtcdError) -> Void in
            guard let i = members.firstIndex(where: { $0.id == id }) else { throw .memberNotFound }
            members.remove(at: i)
        }
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
            members[i].isLearner = false
        }
    }
}

extension EtcdError {
    static let memberNotFound = EtcdError(.notFound, "etcdserver: member not found")
    static let removeLocalMember = EtcdError(.failedPrecondition, "etcdserver: re-configuration failed due to not enough started members")
}

/// `etcdserverpb.Cluster`.
enum ClusterService {
    static func register(on routes: inout GRPCRoutes, store: MVCCStore, membership: Membership) {
        let service = "etcdserverpb.Cluster"
        routes.add(service: service, method: "MemberList", unary(limits: nil) { (_: MemberListRequest) throws(EtcdError) in
            MemberListResponse(header: store.currentHeader(), members: membership.members)
        })
        routes.add(service: service, method: "MemberAdd", unary(limits: nil) { (r: MemberAddRequest) throws(EtcdError) in
            let member = try membership.add(peerURLs: r.peerURLs, isLearner: r.isLearner, idFrom: UInt64.random(in: 1...UInt64.max))
            return MemberAddResponse(header: store.currentHeader(), member: member, members: membership.members)
        })
        routes.add(service: service, method: "MemberRemove", unary(limits: nil) { (r: MemberRemoveRequest) throws(EtcdError) in
            if r.id == store.memberID { throw .removeLocalMember }
            try membership.remove(r.id)
            return MemberRemoveResponse(header: store.currentHeader(), members: membership.members)
        })
        routes.add(service: service, method: "MemberUpdate", unary(limits: nil) { (r: MemberUpdateRequest) throws(EtcdError) in
            try membership.update(r.id, peerURLs: r.peerURLs)
            return MemberUpdateResponse(header: store.currentHeader(), members: membership.members)
        })
        routes.add(service: service, method: "MemberPromote", unary(limits: nil) { (r: MemberPromoteRequest) throws(EtcdError) in
            try membership.promote(r.id)
            return MemberPromoteResponse(header: store.currentHeader(), members: membership.members)
        })
    }
}
