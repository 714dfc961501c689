import LatticeStorage
import Dispatch
import EtcdAPI
import GRPCWire
import LatticeCore
import LatticeStore
import NIOCore
import ProtoWire
import Synchronization

/// The etcd release whose API Lattice serves, as reported by Status. 3.5.13 is the first etcd
/// whose watch progress requests kube-apiserver 1.31+ relies on; Lattice answers them that way.
public enum EtcdCompatibility {
    public static let version = "3.5.17"
}

/// `etcdserverpb.Maintenance`.
enum MaintenanceService {
    static func register(on routes: inout GRPCRoutes, store: MVCCStore, alarms: Alarms) {
        let service = "etcdserverpb.Maintenance"
        routes.add(service: service, method: "Status", unary(limits: nil) { (_: StatusRequest) throws(EtcdError) in
            var r = StatusResponse()
            let header = store.currentHeader()
            r.header = header
            r.version = EtcdCompatibility.version
            r.dbSize = store.approximateSizeBytes
            r.dbSizeInUse = r.dbSize
            r.leader = store.memberID
            r.raftIndex = UInt64(header.revision)
            r.raftAppliedIndex = UInt64(header.revision)
            r.raftTerm = MVCCStore.raftTerm
            r.errors = alarms.active.map { "memberID:\(store.memberID) alarm:\($0.name) " }
            return r
        })
        routes.add(service: service, method: "Alarm", unary(limits: nil) { (r: AlarmRequest) throws(EtcdError) in
            switch r.action {
            case .activate:
                if r.alarm != .none { alarms.activate(r.alarm) }
            case .deactivate:
                alarms.deactivate(r.alarm)
            default:
                break
            }
            let listed = alarms.active.filter { r.alarm == .none || $0 == r.alarm || r.action != .get }
            return AlarmResponse(header: store.currentHeader(), alarms: listed.map { AlarmMember(memberID: store.memberID, alarm: $0) })
        })
        routes.add(service: service, method: "Defragment", asyncUnary(limits: nil, DefragmentResponse.self) { (_: DefragmentRequest, done) in
            // etcd 3.5 answers a defragmentation with an empty response (no header).
            store.defragment { result in done(result.map { DefragmentResponse(header: nil) }) }
        })
        // Hashes read the whole keyspace: on the read pool, never on an event loop.
        routes.add(service: service, method: "Hash", asyncUnary(limits: nil, HashResponse.self) { (_: HashRequest, call, done) in
            ReadPool.run(call) { () throws(EtcdError) in
                HashResponse(header: store.currentHeader(), hash: try store.hashKV(revision: 0).hash)
            } done: { done($0) }
        })
        routes.add(service: service, method: "HashKV", asyncUnary(limits: nil, HashKVResponse.self) { (r: HashKVRequest, call, done) in
            ReadPool.run(call) { () throws(EtcdError) in
                let h = try store.hashKV(revision: r.revision)
                return HashKVResponse(header: store.currentHeader(), hash: h.hash, compactRevision: h.compactRevision)
            } done: { done($0) }
        })
        routes.add(service: service, method: "MoveLeader", unary(limits: nil) { (r: MoveLeaderRequest) throws(EtcdError) in
            // A single member is always the leader; any other target is not a member.
            guard r.targetID == store.memberID else {
                throw EtcdError(.failedPrecondition, "etcdserver: bad leader transferee")
            }
            return MoveLeaderResponse(header: store.currentHeader())
        })
        routes.add(service: service, method: "Downgrade", unary(limits: nil) { (r: DowngradeRequest) throws(EtcdError) in
            // etcd 3.5: the target must be the previous minor version; cancel needs a job.
            switch r.action {
            case .cancel:
                throw EtcdError(.failedPrecondition, "etcdserver: no inflight downgrade job")
            default:
                let parts = r.version.split(separator: ".")
                guard parts.count >= 2, parts[0] == "3", parts[1] == "4" else {
                    throw EtcdError(.failedPrecondition, "etcdserver: invalid downgrade target version")
                }
                if r.action == .enable {
                    throw EtcdError(.failedPrecondition, "lattice: downgrading the storage format is not supported")
                }
                return DowngradeResponse(header: store.currentHeader(), version: "3.5.0")
            }
        })
        routes.add(service: service, method: "Snapshot", .streaming { _, sender in
            SnapshotStream(store: store, sender: sender)
        })
    }
}

/// Active alarms of this member (NOSPACE when the space quota is exceeded or the disk is full,
/// or set by Alarm). With a data directory they are kept in its `alarms` file and survive a
/// restart, as etcd's do (they live in its backend): a member that ran out of space comes back
/// refusing writes until an operator disarms the alarm.
public final class Alarms: Sendable {
    private let state: Mutex<[AlarmType]>
    private let dataDirectory: String?

    public init(dataDirectory: String? = nil) {
        self.dataDirectory = dataDirectory
        let saved = dataDirectory.map(DataDirectory.readAlarms) ?? []
        state = Mutex(saved.compactMap { name in AlarmType.allNamed.first { $0.name == name } })
    }

    public var active: [AlarmType] { state.withLock { $0 } }
    public var noSpace: Bool { state.withLock { $0.contains(.noSpace) } }

    public func activate(_ alarm: AlarmType) {
        state.withLock {
            guard !$0.contains(alarm) else { return }
            $0.append(alarm)
            persist($0)
        }
    }

    public func deactivate(_ alarm: AlarmType) {
        state.withLock {
            guard $0.contains(alarm) else { return }
            $0.removeAll { $0 == alarm }
            persist($0)
        }
    }

    /// Best effort: an alarm that cannot be saved (the disk is full, typically) still holds for
    /// this run.
    private func persist(_ alarms: [AlarmType]) {
        guard let dataDirectory else { return }
        try? DataDirectory.writeAlarms(dataDirectory, alarms.map(\.name))
    }
}

extension AlarmType {
    static let allNamed: [AlarmType] = [.noSpace, .corrupt]

    var name: String {
        switch self {
        case .noSpace: return "NOSPACE"
        case .corrupt: return "CORRUPT"
        default: return "NONE"
        }
    }
}

/// `Snapshot`: streams the member's state in chunks once the request arrives. The keyspace is
/// captured at one revision and encoded chunk by chunk, off the event loop, only while the
/// stream is writable: a client that does not read holds the server to the capture (values
/// shared with the index), a few chunks in flight and the stream's buffer.
final class SnapshotStream: GRPCStreamingCall {
    private let store: MVCCStore
    private let sender: GRPCStreamSender
    private static let chunkBytes = 32 * 1024
    /// Chunks encoded per trip to the encoding thread.
    private static let chunksPerTrip = 8
    // Event-loop confined.
    private var requested = false
    private var encoder: SnapshotEncoder?
    private var encoding = false
    private var over = false

    init(store: MVCCStore, sender: GRPCStreamSender) {
        self.store = store
        self.sender = sender
    }

    /// Releases the capture's charge against the connection's budget.
    private var release: (() -> Void)?

    func received(_ message: [UInt8]) {
        guard !requested else { return }
        requested = true
        let store = self.store
        let loop = sender.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        // The capture counts against the connection's response budget (by the store's size,
        // for as long as the stream lasts): a client asking for many snapshots without reading
        // gets one captured at a time.
        sender.whenWithinBudget {
            let stream = bound.value
            guard !stream.over else { return }
            stream.release = stream.sender.hold(bytes: Int(clamping: store.approximateSizeBytes))
            stream.encoding = true
            DispatchQueue.global().async {
                let encoder = store.snapshotEncoder()
                loop.execute {
                    let stream = bound.value
                    stream.encoding = false
                    guard !stream.over else { return }
                    stream.encoder = encoder
                    stream.pump()
                }
            }
        }
    }

    /// While the stream is writable, encodes the next few chunks off the event loop and sends
    /// them; resumes on `writabilityChanged(true)`.
    private func pump() {
        guard !over, !encoding, sender.isWritable, let encoder else { return }
        encoding = true
        let loop = sender.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        DispatchQueue.global().async {
            var chunks: [[UInt8]] = []
            while chunks.count < Self.chunksPerTrip, let chunk = encoder.nextChunk(maxBytes: Self.chunkBytes) {
                chunks.append(chunk)
            }
            let remaining = encoder.totalBytes - encoder.producedBytes
            let produced = chunks
            loop.execute {
                let stream = bound.value
                stream.encoding = false
                guard !stream.over else { return }
                var left = remaining + produced.reduce(0) { $0 + $1.count }
                for chunk in produced {
                    left -= chunk.count
                    stream.sender.send(SnapshotResponse(header: stream.store.currentHeader(), remainingBytes: UInt64(left),
                                                        blob: chunk).protoBytes())
                }
                if remaining == 0 {
                    stream.finish(.ok)
                } else {
                    stream.pump()
                }
            }
        }
    }

    private func finish(_ status: GRPCStatus) {
        over = true
        encoder = nil
        release?()
        release = nil
        sender.finish(status)
    }

    func receivedEnd() {
        // A client that half-closes without a request would otherwise wait forever.
        if !requested {
            finish(GRPCStatus(.internal, "grpc: the client sent no complete request message"))
        }
    }

    func writabilityChanged(_ isWritable: Bool) {
        if isWritable { pump() }
    }

    func closed() {
        over = true
        encoder = nil
        release?()
        release = nil
    }
}
