import EtcdAPI
import LatticeCore
import Synchronization

/// The node-local engine (DESIGN.md §3): one writer, many readers.
///
/// Writes are serialised by the writer mutex. Each write is evaluated against the current state
/// (under the read lock, so readers keep going), turned into a `Change`, assigned the next local
/// revision if it writes keys, and applied to the MVCC index and event log under the write lock,
/// which is held only for the in-memory apply. The revision is then published to watchers, still
/// under the writer mutex so watchers see revisions in order. Reads take the read lock and never
/// wait for an evaluation.
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
        var lessor = Lessor()
    }

    /// What the index lock guards.
    struct Indexed: Sendable {
        var index = MVCCIndex()
        var log = EventLog()
    }

    public let configuration: Configuration
    let lock = RWLock()
    // Guarded by `lock`. nonisolated(unsafe): every access goes through `lock`.
    nonisolated(unsafe) var indexed = Indexed()
    let writer: Mutex<WriterState>
    public let hub: WatchHub
    /// Raft term reported in headers: a single member elects itself once, in term 2, like etcd.
    public static let raftTerm: UInt64 = 2

    public init(configuration: Configuration) {
        self.configuration = configuration
        self.writer = Mutex(WriterState(clock: HybridClock(wall: configuration.wallClock)))
        self.hub = WatchHub(currentRevision: 1)
    }

    public var currentRevision: Int64 { lock.withReadLock { indexed.index.currentRevision } }
    public var compactRevision: Int64 { lock.withReadLock { indexed.index.compactRevision } }
    public var memberID: UInt64 { configuration.memberID }

    public func header(revision: Int64) -> ResponseHeader {
        ResponseHeader(clusterID: configuration.clusterID, memberID: configuration.memberID,
                       revision: revision, raftTerm: Self.raftTerm)
    }

    public func currentHeader() -> ResponseHeader { header(revision: currentRevision) }

    // MARK: reads

    public func range(_ r: RangeRequest) throws(EtcdError) -> RangeResponse {
        try RangeQuery.validate(r)
        return try lock.withReadLock { () throws(EtcdError) -> RangeResponse in
            let index = indexed.index
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

    /// Events for watchers catching up: up to `maxRevisions` revisions from `revision`, and the
    /// current revision they were read at; or the compaction revision if `revision` is older.
    public func events(from revision: Int64, maxRevisions: Int) -> EventsRead {
        lock.withReadLock {
            let index = indexed.index
            if revision < index.compactRevision { return .compacted(index.compactRevision) }
            return .events(Array(indexed.log.batches(from: revision, maxRevisions: maxRevisions)), current: index.currentRevision)
        }
    }

    public enum EventsRead: Sendable {
        case events([RevisionEvents], current: Int64)
        case compacted(Int64)
    }

    /// Approximate bytes of live data and history (keys, values, per-version overhead), the
    /// store's "database size" for Status and the space quota.
    public var approximateSizeBytes: Int64 { lock.withReadLock { indexed.index.approximateBytes } }

    public var keyCount: Int { lock.withReadLock { indexed.index.liveKeyCount } }

    // MARK: KV writes

    public func put(_ p: PutRequest) throws(EtcdError) -> PutResponse {
        try RequestValidation.check(p)
        var response = try write { (txn: inout WriteTxn) throws(EtcdError) -> PutResponse in
            if (p.ignoreValue || p.ignoreLease) && txn.current(p.key) == nil { throw .keyNotFound }
            if p.lease != 0 && !txn.leaseExists(p.lease) { throw .leaseNotFound }
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
        let compacted = compactRevision
        var response = try write { (txn: inout WriteTxn) throws(EtcdError) -> TxnResponse in
            let r = try txn.txn(t, compactRevision: compacted)
            revisionAfter = txn.readRevision
            return r
        }
        response.header = header(revision: revisionAfter)
        return response
    }

    public func compact(_ c: CompactionRequest) throws(EtcdError) -> CompactionResponse {
        try writer.withLock { (_: inout WriterState) throws(EtcdError) -> CompactionResponse in
            try lock.withWriteLock { () throws(EtcdError) -> CompactionResponse in
                if c.revision <= indexed.index.compactRevision { throw .compacted }
                if c.revision > indexed.index.currentRevision { throw .futureRevision }
                indexed.index.compact(to: c.revision)
                indexed.log.compact(to: c.revision)
                var response = CompactionResponse()
                response.header = header(revision: indexed.index.currentRevision)
                return response
            }
        }
    }

    // MARK: the write path

    /// Runs one write: evaluate under the read lock, then build the change, apply it under the
    /// write lock and publish it. `body` also receives the writer state (for lease bookkeeping).
    func write<R: Sendable>(_ body: (inout WriteTxn) throws(EtcdError) -> R) throws(EtcdError) -> R {
        try writeWithState { (txn: inout WriteTxn, _: inout WriterState) throws(EtcdError) -> R in try body(&txn) }
    }

    func writeWithState<R: Sendable>(_ body: (inout WriteTxn, inout WriterState) throws(EtcdError) -> R) throws(EtcdError) -> R {
        try writer.withLock { (state: inout WriterState) throws(EtcdError) -> R in
            let dot = Dot(member: configuration.memberID, seq: state.nextSeq)
            let leases = state.lessor.leases
            let (result, evaluated) = try lock.withReadLock { () throws(EtcdError) -> (R, EvaluatedWrite) in
                var txn = WriteTxn(base: indexed.index, dot: dot, leaseExists: { leases[$0] != nil })
                let r = try body(&txn, &state)
                return (r, EvaluatedWrite(txn))
            }
            guard !evaluated.ops.isEmpty else { return result }
            let change = Change(id: dot, deps: state.vector, hlc: state.clock.tick(), ops: evaluated.ops)
            state.nextSeq += 1
            state.vector[dot.member] = dot.seq
            guard !evaluated.versions.isEmpty else { return result }
            for (key, version) in evaluated.versions {
                state.lessor.reattach(key, from: evaluated.previous[key]?.lease ?? 0, to: version.lease)
            }
            let batch = lock.withWriteLock { apply(change, evaluated) }
            hub.publish(batch)
            return result
        }
    }

    /// The part of an evaluation that outlives it (the evaluation's view of the index must be
    /// released before the index is mutated, or the mutation would copy it).
    private struct EvaluatedWrite {
        let revision: Int64
        let ops: [Op]
        let versions: [([UInt8], KeyVersion)]
        let previous: [[UInt8]: KeyVersion]

        init(_ txn: WriteTxn) {
            revision = txn.newRevision
            ops = txn.ops
            versions = txn.writeOrder.map { ($0, txn.overlay[$0]!) }
            previous = txn.previous
        }
    }

    private func apply(_ change: Change, _ evaluated: EvaluatedWrite) -> RevisionEvents {
        var events: [Event] = []
        events.reserveCapacity(evaluated.versions.count)
        for (key, version) in evaluated.versions {
            indexed.index.append(key, version)
            let prev = evaluated.previous[key]?.keyValue(key)
            if version.isTombstone {
                var kv = KeyValue()
                kv.key = key
                kv.modRevision = version.modRevision
                events.append(Event(type: .delete, kv: kv, prevKV: prev))
            } else {
                events.append(Event(type: .put, kv: version.keyValue(key), prevKV: prev))
            }
        }
        indexed.index.advance(to: evaluated.revision)
        let batch = RevisionEvents(revision: evaluated.revision, events: events)
        indexed.log.append(batch)
        return batch
    }
}
