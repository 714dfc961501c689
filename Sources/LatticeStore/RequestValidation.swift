import EtcdAPI
import LatticeCore

/// Request checks etcd makes before a request reaches the store (etcdserver/api/v3rpc/key.go),
/// with etcd's errors.
enum RequestValidation {
    static func check(_ p: PutRequest) throws(EtcdError) {
        if p.key.isEmpty { throw .emptyKey }
        if p.ignoreValue && !p.value.isEmpty { throw .valueProvided }
        if p.ignoreLease && p.lease != 0 { throw .leaseProvided }
    }

    static func check(_ d: DeleteRangeRequest) throws(EtcdError) {
        if d.key.isEmpty { throw .emptyKey }
    }

    static func check(_ t: TxnRequest, maxTxnOps: Int) throws(EtcdError) {
        try checkOps(t, maxTxnOps: maxTxnOps)
        _ = try checkIntervals(t.success)
        _ = try checkIntervals(t.failure)
    }

    /// As etcd: the largest of a txn's compare, success and failure counts must not exceed the
    /// budget, and a nested txn gets the budget minus that count (so ops inside nested txns
    /// count toward `--max-txn-ops`).
    private static func checkOps(_ t: TxnRequest, maxTxnOps: Int) throws(EtcdError) {
        let count = max(t.compare.count, t.success.count, t.failure.count)
        if count > maxTxnOps { throw .tooManyOps }
        for c in t.compare where c.key.isEmpty { throw .emptyKey }
        for op in t.success + t.failure {
            switch op.request {
            case .range(let r)?: try RangeQuery.validate(r)
            case .put(let p)?: try check(p)
            case .deleteRange(let d)?: try check(d)
            case .txn(let nested)?: try checkOps(nested, maxTxnOps: maxTxnOps - count)
            case nil: throw .keyNotFound
            }
        }
    }

    /// etcd `checkIntervals`: within one branch (including nested txns), a key may be put at most
    /// once and not also fall in a deleted range. Puts in the then and else branch of one nested
    /// txn may overlap (only one branch runs).
    private static func checkIntervals(_ ops: [RequestOp]) throws(EtcdError) -> (puts: Set<StoredKey>, dels: [KeyRange]) {
        var dels: [KeyRange] = []
        for op in ops {
            if case .deleteRange(let d)? = op.request { dels.append(KeyRange(key: d.key, end: d.rangeEnd)) }
        }
        var puts: Set<StoredKey> = []
        for op in ops {
            guard case .txn(let nested)? = op.request else { continue }
            let then = try checkIntervals(nested.success)
            let otherwise = try checkIntervals(nested.failure)
            for k in then.puts {
                if puts.contains(k) || dels.contains(where: { $0.contains(k.bytes) }) { throw .duplicateKey }
                puts.insert(k)
            }
            for k in otherwise.puts {
                if puts.contains(k) && !then.puts.contains(k) { throw .duplicateKey }
                if dels.contains(where: { $0.contains(k.bytes) }) { throw .duplicateKey }
                puts.insert(k)
            }
            dels += then.dels
            dels += otherwise.dels
        }
        for op in ops {
            guard case .put(let p)? = op.request else { continue }
            let key = StoredKey(p.key)
            if puts.contains(key) || dels.contains(where: { $0.contains(p.key) }) { throw .duplicateKey }
            puts.insert(key)
        }
        return (puts, dels)
    }
}
