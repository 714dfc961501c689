import EtcdAPI
import LatticeCore

/// Key versions written by earlier requests of the batch being committed: evaluated and in the
/// WAL batch, not yet durable, so not yet in the index (readers must not see them) — but later
/// writes of the same batch must.
struct PendingWrites {
    /// The revision after the batch's writes so far.
    var revision: Int64
    /// The compaction revision including the batch's compactions.
    var compactRevision: Int64
    /// Latest pending version per key (tombstones for deletions).
    var versions: VersionsByKey = [:]

    init(revision: Int64, compactRevision: Int64) {
        self.revision = revision
        self.compactRevision = compactRevision
    }
}

/// Evaluates one write request (Put, DeleteRange or Txn) against the store as of its current
/// revision, plus the pending writes of its batch, plus the request's own earlier writes, and
/// collects the resulting `Op`s and key versions. It reads the index but never mutates it: the
/// store applies the result once the batch is durable.
struct WriteTxn {
    let base: MVCCIndex
    let pending: PendingWrites
    let beginRevision: Int64
    var newRevision: Int64 { beginRevision + 1 }
    /// Whether a lease id exists (leases arrive with the lessor; until then none does).
    let leaseExists: (Int64) -> Bool

    /// Versions written by this request, by key; tombstones for deletions.
    private(set) var overlay: VersionsByKey = [:]
    /// Keys in the order they were written, for apply and for watch events.
    private(set) var writeOrder: [[UInt8]] = []
    /// The change's ops. Puts and deletes leave `parents` empty: the replica stamps each with
    /// the key's heads when it makes the change (`Replica.makeChange`).
    private(set) var ops: [Op] = []
    /// The visible version of each written key before this request touched it (for prev_kv in
    /// watch events and for lease re-attachment).
    private(set) var previous: VersionsByKey = [:]
    /// Set by a Compact request (it writes no key).
    var compaction: Int64?

    init(base: MVCCIndex, pending: PendingWrites, leaseExists: @escaping (Int64) -> Bool) {
        self.base = base
        self.pending = pending
        self.beginRevision = pending.revision
        self.leaseExists = leaseExists
    }

    /// Whether a key was written: only key changes take a revision (lease operations do not, as in etcd).
    var hasChanges: Bool { !writeOrder.isEmpty }
    /// The revision reads inside the request observe: etcd bumps it once the first write happened.
    var readRevision: Int64 { hasChanges ? newRevision : beginRevision }

    /// The visible version of `key` for this request (nil: absent or deleted): the latest of its
    /// own writes, then the batch's, then the index's (whose versions are all at or below
    /// `beginRevision`), unless that is a deletion.
    func current(_ key: [UInt8]) -> KeyVersion? {
        guard let v = overlay[key] ?? pending.versions[key] ?? base.latest(key), !v.isTombstone else { return nil }
        return v
    }

    /// Visible kvs in `range` at the request's read revision, in key order.
    func visibleInRange(_ range: KeyRange, limit: Int) -> (kvs: [KeyValue], total: Int) {
        let touched = writeOrder.contains { range.contains($0) } || pending.versions.keys.contains { range.contains($0) }
        if !touched {
            var kvs: [KeyValue] = []
            var total = 0
            base.forEachVisible(in: range, at: beginRevision) { key, v in
                total += 1
                if limit == 0 || kvs.count < limit { kvs.append(v.keyValue(key)) }
                return true
            }
            return (kvs, total)
        }
        var merged: VersionsByKey = [:]
        base.forEachVisible(in: range, at: beginRevision) { key, v in merged[key] = v; return true }
        for (key, v) in pending.versions where range.contains(key) {
            merged[key] = v.isTombstone ? nil : v
        }
        for key in writeOrder where range.contains(key) {
            let v = overlay[key]!
            merged[key] = v.isTombstone ? nil : v
        }
        let sorted = merged.sorted { bytesLess($0.key, $1.key) }
        let kvs = (limit == 0 ? sorted[...] : sorted.prefix(limit)).map { $0.value.keyValue($0.key) }
        return (Array(kvs), sorted.count)
    }

    // MARK: operations

    func range(_ r: RangeRequest, compactRevision: Int64) -> RangeResponse {
        // Revisions were checked by `check(path:)` before any write.
        let header = ResponseHeader(clusterID: 0, memberID: 0, revision: readRevision, raftTerm: 0)
        let rev = r.revision <= 0 ? readRevision : r.revision
        if rev == readRevision {
            return RangeQuery.run(r, header: header) { limit, countOnly in
                let result = visibleInRange(KeyRange(key: r.key, end: r.rangeEnd), limit: countOnly ? 0 : limit)
                return (countOnly ? [] : result.kvs, result.total)
            }
        }
        return RangeQuery.run(r, header: header) { limit, countOnly in
            var kvs: [KeyValue] = []
            var total = 0
            base.forEachVisible(in: KeyRange(key: r.key, end: r.rangeEnd), at: rev) { key, v in
                total += 1
                if !countOnly && (limit == 0 || kvs.count < limit) { kvs.append(v.keyValue(key)) }
                return true
            }
            return (kvs, total)
        }
    }

    mutating func put(_ p: PutRequest) -> PutResponse {
        let previous = current(p.key)
        let value = p.ignoreValue ? (previous?.value ?? []) : p.value
        let lease = p.ignoreLease ? (previous?.lease ?? 0) : p.lease
        let version = KeyVersion.put(at: newRevision, over: previous, value: value, lease: lease)
        record(p.key, version, op: .put(key: p.key, value: value, lease: lease, parents: []), before: previous)
        var response = PutResponse()
        response.header = ResponseHeader(clusterID: 0, memberID: 0, revision: newRevision, raftTerm: 0)
        if p.prevKV, let previous { response.prevKV = previous.keyValue(p.key) }
        return response
    }

    mutating func deleteRange(_ d: DeleteRangeRequest) -> DeleteRangeResponse {
        let (victims, _) = visibleInRange(KeyRange(key: d.key, end: d.rangeEnd), limit: 0)
        for kv in victims {
            let tombstone = KeyVersion.tombstone(at: newRevision)
            record(kv.key, tombstone, op: .delete(key: kv.key, parents: []), before: current(kv.key))
        }
        var response = DeleteRangeResponse()
        response.header = ResponseHeader(clusterID: 0, memberID: 0, revision: readRevision, raftTerm: 0)
        response.deleted = Int64(victims.count)
        if d.prevKV { response.prevKVs = victims }
        return response
    }

    /// Runs a validated Txn: compares (all nested ones too) are decided against the state before
    /// the txn, write preconditions are checked before anything is written, then the chosen
    /// branch runs in order.
    mutating func txn(_ t: TxnRequest, compactRevision: Int64) throws(EtcdError) -> TxnResponse {
        let path = decidePath(t)
        // etcd (applierV3backend.Txn) checks every put on the taken path before any range.
        try check(t, path: path[...], puts: true, compactRevision: compactRevision)
        try check(t, path: path[...], puts: false, compactRevision: compactRevision)
        var index = 0
        return apply(t, path: path, at: &index, compactRevision: compactRevision)
    }

    /// The branch taken by each Txn in the tree, in pre-order of the taken branches.
    private func decidePath(_ t: TxnRequest) -> [Bool] {
        let succeeded = t.compare.allSatisfy(evaluate)
        var path = [succeeded]
        for op in succeeded ? t.success : t.failure {
            if case .txn(let nested)? = op.request { path += decidePath(nested) }
        }
        return path
    }

    /// etcd `checkRequestPut` (`puts`) or `checkRequestRange` (`!puts`) over the taken path.
    private func check(_ t: TxnRequest, path: ArraySlice<Bool>, puts: Bool, compactRevision: Int64) throws(EtcdError) {
        var rest = path.dropFirst()
        for op in path.first! ? t.success : t.failure {
            switch op.request {
            case .put(let p)? where puts:
                if (p.ignoreValue || p.ignoreLease) && current(p.key) == nil { throw .keyNotFound }
                if p.lease != 0 && !leaseExists(p.lease) { throw .leaseNotFound }
            case .range(let r)? where !puts:
                // As etcd: any non-zero revision, negative ones too, below the compact revision fails.
                if r.revision == 0 { break }
                if r.revision > beginRevision { throw .futureRevision }
                if r.revision < compactRevision { throw .compacted }
            case .txn(let nested)?:
                try check(nested, path: rest, puts: puts, compactRevision: compactRevision)
                rest = rest.dropFirst(Self.pathLength(nested, rest))
            default:
                break
            }
        }
    }

    private static func pathLength(_ t: TxnRequest, _ path: ArraySlice<Bool>) -> Int {
        var n = 1
        var rest = path.dropFirst()
        for op in path.first! ? t.success : t.failure {
            if case .txn(let nested)? = op.request {
                let len = pathLength(nested, rest)
                n += len
                rest = rest.dropFirst(len)
            }
        }
        return n
    }

    private mutating func apply(_ t: TxnRequest, path: [Bool], at index: inout Int, compactRevision: Int64) -> TxnResponse {
        let succeeded = path[index]
        index += 1
        var response = TxnResponse()
        response.succeeded = succeeded
        response.header = ResponseHeader()
        for op in succeeded ? t.success : t.failure {
            switch op.request {
            case .range(let r)?: response.responses.append(ResponseOp(.range(range(r, compactRevision: compactRevision))))
            case .put(let p)?: response.responses.append(ResponseOp(.put(put(p))))
            case .deleteRange(let d)?: response.responses.append(ResponseOp(.deleteRange(deleteRange(d))))
            case .txn(let nested)?:
                response.responses.append(ResponseOp(.txn(apply(nested, path: path, at: &index, compactRevision: compactRevision))))
            case nil: break
            }
        }
        return response
    }

    /// etcd `applyCompare`: a VALUE compare on a missing key is false; other targets compare a
    /// missing key as all-zero; a range compare must hold for every key in it.
    private func evaluate(_ c: Compare) -> Bool {
        let (kvs, _) = visibleInRange(KeyRange(key: c.key, end: c.rangeEnd), limit: 0)
        if kvs.isEmpty {
            if c.target == .value { return false }
            return Self.compare(c, KeyValue())
        }
        return kvs.allSatisfy { Self.compare(c, $0) }
    }

    private static func compare(_ c: Compare, _ kv: KeyValue) -> Bool {
        let result: Int
        switch c.target {
        case .value:
            var v: [UInt8] = []
            if case .value(let x)? = c.targetUnion { v = x }
            result = compareBytes(kv.value, v)
        case .create:
            var x: Int64 = 0
            if case .createRevision(let y)? = c.targetUnion { x = y }
            result = kv.createRevision == x ? 0 : (kv.createRevision < x ? -1 : 1)
        case .mod:
            var x: Int64 = 0
            if case .modRevision(let y)? = c.targetUnion { x = y }
            result = kv.modRevision == x ? 0 : (kv.modRevision < x ? -1 : 1)
        case .version:
            var x: Int64 = 0
            if case .version(let y)? = c.targetUnion { x = y }
            result = kv.version == x ? 0 : (kv.version < x ? -1 : 1)
        case .lease:
            var x: Int64 = 0
            if case .lease(let y)? = c.targetUnion { x = y }
            result = kv.lease == x ? 0 : (kv.lease < x ? -1 : 1)
        default:
            result = 0
        }
        switch c.result {
        case .equal: return result == 0
        case .notEqual: return result != 0
        case .greater: return result > 0
        case .less: return result < 0
        default: return true
        }
    }

    /// Records a write of `key`; `before` is its visible version before it (`current(key)`).
    private mutating func record(_ key: [UInt8], _ version: KeyVersion, op: Op, before: KeyVersion?) {
        if overlay[key] == nil, let before { previous[key] = before }
        if overlay.updateValue(version, forKey: key) == nil { writeOrder.append(key) }
        ops.append(op)
    }

    /// Forgets everything recorded: the request failed and must leave no trace.
    mutating func discard() {
        overlay = [:]
        writeOrder = []
        ops = []
        previous = [:]
        compaction = nil
    }

    /// Records a non-key op (lease operations) in the same change.
    mutating func append(_ op: Op) {
        ops.append(op)
    }

    /// About how many bytes the change of these ops takes in the WAL (keys, values and the
    /// parents the replica adds), erring high.
    var estimatedChangeBytes: Int { ops.reduce(64) { $0 + Self.estimatedBytes($1) } }

    static func estimatedBytes(_ op: Op) -> Int {
        switch op {
        case .put(let key, let value, _, _): return 64 + key.count + value.count
        case .delete(let key, _): return 64 + key.count
        default: return 64
        }
    }
}
