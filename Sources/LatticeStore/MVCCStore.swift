import EtcdAPI
import LatticeCore
import Synchronization

/// The node-local engine (DESIGN.md §3): one writer, many readers.
///
/// Writes are serialised by the writer mutex. Each write is evaluated against the current state
/// (under the read lock, so readers keep going), turned into a `Change`, assigned the next local
/// revision and applied to the MVCC index under the write lock, which is held only for the
/// in-memory apply. Reads take the read lock and never wait for an evaluation.
public final class MVCCStore: Sendable {
    public struct Configuration: Sendable {
        public var memberID: UInt64
        public var clusterID: UInt64
        public var maxTxnOps = 128
        public var wallClock: any WallClock = SystemWallClock()

        public init(memberID: UInt64, clusterID: UInt64) {
            self.memberID = memberID
            self.clusterID = clusterID
        }
    }

    /// State owned by the writer.
    struct WriterState: ~Copyable {
        var clock: HybridClock
        var nextSeq: UInt64 = 1
        var vector = VersionVector()
    }

    public let configuration: Configuration
    private let lock = RWLock()
    // Guarded by `lock`. nonisolated(unsafe): every access goes through `lock`.
    nonisolated(unsafe) private var index = MVCCIndex()
    private let writer: Mutex<WriterState>
    /// Raft term reported in headers: a single member elects itself once, in term 2, like etcd.
    public static let raftTerm: UInt64 = 2

    public init(configuration: Configuration) {
        self.configuration = configuration
        self.writer = Mutex(WriterState(clock: HybridClock(wall: configuration.wallClock)))
    }

    public var currentRevision: Int64 { lock.withReadLock { index.currentRevision } }
    public var compactRevision: Int64 { lock.withReadLock { index.compactRevision } }

    func header(revision: Int64) -> ResponseHeader {
        ResponseHeader(clusterID: configuration.clusterID, memberID: configuration.memberID,
                       revision: revision, raftTerm: Self.raftTerm)
    }

    // MARK: reads

    public func range(_ r: RangeRequest) throws(EtcdError) -> RangeResponse {
        try RangeQuery.validate(r)
        return try lock.withReadLock { () throws(EtcdError) -> RangeResponse in
            let current = index.currentRevision
            let rev = try RangeQuery.readRevision(r.revision, current: current, compacted: index.compactRevision)
            return RangeQuery.run(r, header: header(revision: current)) { limit, countOnly in
                let range = KeyRange(key: r.key, end: r.rangeEnd)
                if countOnly { return ([], index.count(in: range, at: rev)) }
                var kvs: [KeyValue] = []
                var total = 0
                index.forEachVisible(in: range, at: rev) { key, v in
                    total += 1
                    if limit == 0 || kvs.count < limit { kvs.append(v.keyValue(key)) }
                    return true
                }
                return (kvs, total)
            }
        }
    }

    // MARK: writes

    public func put(_ p: PutRequest) throws(EtcdError) -> PutResponse {
        try RequestValidation.check(p)
        if p.lease != 0 && !leaseExists(p.lease) { throw .leaseNotFound }
        var response = try write { (txn: inout WriteTxn) throws(EtcdError) -> PutResponse in
            if (p.ignoreValue || p.ignoreLease) && txn.current(p.key) == nil { throw .keyNotFound }
            return txn.put(p)
        }
        response.header = header(revision: response.header?.revision ?? 0)
        return response
    }

    public func deleteRange(_ d: DeleteRangeRequest) throws(EtcdError) -> DeleteRangeResponse {
        try RequestValidation.check(d)
        var response = try write { (txn: inout WriteTxn) throws(EtcdError) -> DeleteRangeResponse in txn.deleteRange(d) }
        response.header = header(revision: response.header?.revision ?? 0)
        return response
    }

    public func txn(_ t: TxnRequest) throws(EtcdError) -> TxnResponse {
        try RequestValidation.check(t, maxTxnOps: configuration.maxTxnOps)
        var revisionAfter: Int64 = 0
        var response = try write { (txn: inout WriteTxn) throws(EtcdError) -> TxnResponse in
            let r = try txn.txn(t, compactRevision: index.compactRevision)
            revisionAfter = txn.readRevision
            return r
        }
        response.header = header(revision: revisionAfter)
        return response
    }

    public func compact(_ c: CompactionRequest) throws(EtcdError) -> CompactionResponse {
        try writer.withLock { (_: inout WriterState) throws(EtcdError) -> CompactionResponse in
            try lock.withWriteLock { () throws(EtcdError) -> CompactionResponse in
                if c.revision <= index.compactRevision { throw .compacted }
                if c.revision > index.currentRevision { throw .futureRevision }
                index.compact(to: c.revision)
                var response = CompactionResponse()
                response.header = header(revision: index.currentRevision)
                return response
            }
        }
    }

    private func leaseExists(_ id: Int64) -> Bool { false }

    /// Runs one write: evaluate under the read lock, then apply under the write lock.
    private func write<R: Sendable>(_ body: (inout WriteTxn) throws(EtcdError) -> R) throws(EtcdError) -> R {
        try writer.withLock { (state: inout WriterState) throws(EtcdError) -> R in
            let dot = Dot(member: configuration.memberID, seq: state.nextSeq)
            let (result, evaluated) = try lock.withReadLock { () throws(EtcdError) -> (R, EvaluatedWrite) in
                var txn = WriteTxn(base: index, dot: dot, leaseExists: { [self] in leaseExists($0) })
                let r = try body(&txn)
                return (r, EvaluatedWrite(txn))
            }
            guard !evaluated.ops.isEmpty else { return result }
            let change = Change(id: dot, deps: state.vector, hlc: state.clock.tick(), ops: evaluated.ops)
            state.nextSeq += 1
            state.vector[dot.member] = dot.seq
            lock.withWriteLock { apply(change, evaluated) }
            return result
        }
    }

    /// The part of an evaluation that outlives it (the evaluation's view of the index must be
    /// released before the index is mutated, or the mutation would copy it).
    private struct EvaluatedWrite {
        let revision: Int64
        let ops: [Op]
        let versions: [([UInt8], KeyVersion)]

        init(_ txn: WriteTxn) {
            revision = txn.newRevision
            ops = txn.ops
            versions = txn.writeOrder.map { ($0, txn.overlay[$0]!) }
        }
    }

    private func apply(_ change: Change, _ evaluated: EvaluatedWrite) {
        for (key, version) in evaluated.versions { index.append(key, version) }
        index.advance(to: evaluated.revision)
    }
}
