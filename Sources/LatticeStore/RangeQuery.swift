import LatticeCore
import EtcdAPI

/// etcd's Range semantics over any source of visible keys: limit (+1 to learn `more`),
/// min/max revision filters, sorting and `count` — the order of steps matters and follows etcd's
/// applier exactly (filters and sorting make it fetch everything, `count` is taken before them).
enum RangeQuery {
    /// Validation shared by Range requests at top level and inside Txn.
    static func validate(_ r: RangeRequest) throws(EtcdError) {
        if r.key.isEmpty { throw .emptyKey }
        guard (0...2).contains(r.sortOrder.rawValue), (0...4).contains(r.sortTarget.rawValue) else {
            throw .invalidSortOption
        }
    }

    /// Checks the requested revision against the store's current and compacted revisions and
    /// returns the revision to read at.
    static func readRevision(_ requested: Int64, current: Int64, compacted: Int64) throws(EtcdError) -> Int64 {
        if requested > current { throw .futureRevision }
        let rev = requested <= 0 ? current : requested
        if rev < compacted { throw .compacted }
        return rev
    }

    /// `fetch(limit)` returns up to `limit` visible kvs (0 = all) in key order and the total number
    /// of visible keys in the range.
    static func run(_ r: RangeRequest, header: ResponseHeader, fetch: (_ limit: Int, _ countOnly: Bool) -> (kvs: [KeyValue], total: Int)) -> RangeResponse {
        var limit = max(0, Int(clamping: r.limit))
        if r.sortOrder != .none || r.minModRevision != 0 || r.maxModRevision != 0
            || r.minCreateRevision != 0 || r.maxCreateRevision != 0 {
            limit = 0
        }
        // Fetch one extra to learn `more`; etcd's `limit + 1` on math.MaxInt64 wraps negative,
        // which means "no limit" (and must not trap here).
        if limit > 0 { limit = limit == Int.max ? 0 : limit + 1 }
        var (kvs, total) = fetch(limit, r.countOnly)

        if r.maxModRevision != 0 { kvs.removeAll { $0.modRevision > r.maxModRevision } }
        if r.minModRevision != 0 { kvs.removeAll { $0.modRevision < r.minModRevision } }
        if r.maxCreateRevision != 0 { kvs.removeAll { $0.createRevision > r.maxCreateRevision } }
        if r.minCreateRevision != 0 { kvs.removeAll { $0.createRevision < r.minCreateRevision } }

        var order = r.sortOrder
        if r.sortTarget != .key && order == .none { order = .ascend }
        if order != .none {
            let less: (KeyValue, KeyValue) -> Bool
            switch r.sortTarget {
            case .version: less = { $0.version < $1.version }
            case .create: less = { $0.createRevision < $1.createRevision }
            case .mod: less = { $0.modRevision < $1.modRevision }
            case .value: less = { bytesLess($0.value, $1.value) }
            default: less = { bytesLess($0.key, $1.key) }
            }
            kvs = stableSorted(kvs, descending: order == .descend, less)
        }

        var response = RangeResponse()
        response.header = header
        if r.limit > 0 && kvs.count > Int(clamping: r.limit) {
            kvs.removeSubrange(Int(r.limit)...)
            response.more = true
        }
        response.count = Int64(total)
        if r.keysOnly {
            for i in kvs.indices { kvs[i].value = [] }
        }
        response.kvs = kvs
        return response
    }

    private static func stableSorted(_ kvs: [KeyValue], descending: Bool, _ less: (KeyValue, KeyValue) -> Bool) -> [KeyValue] {
        let indexed = kvs.enumerated().sorted { a, b in
            if descending {
                if less(b.element, a.element) { return true }
                if less(a.element, b.element) { return false }
            } else {
                if less(a.element, b.element) { return true }
                if less(b.element, a.element) { return false }
            }
            return a.offset < b.offset
        }
        return indexed.map(\.element)
    }
}
