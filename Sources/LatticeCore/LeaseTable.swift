/// A lease as replicated state: what every node agrees on once all changes are delivered.
/// Attached keys are not part of it (they follow from the keys' visible leases), nor are the
/// in-memory renewals between checkpoints (docs/consistency.md and docs/replication.md, "Leases").
public struct LeaseInfo: Hashable, Sendable {
    public var id: Int64
    /// Granted TTL in seconds (of the LWW grant, should one id be granted concurrently twice).
    public var ttlSeconds: Int64
    /// Wall-clock expiry in milliseconds: the largest of the grant time + TTL and every
    /// checkpoint since.
    public var expiresAtMilliseconds: Int64

    public init(id: Int64, ttlSeconds: Int64, expiresAtMilliseconds: Int64) {
        self.id = id
        self.ttlSeconds = ttlSeconds
        self.expiresAtMilliseconds = expiresAtMilliseconds
    }
}

/// Replicated lease state: per lease id, the grants that are still live.
///
/// A lease is an observed-remove set element whose tags are its grants (the dots of the changes
/// that granted it), each with its own expiry max-register:
/// - `leaseGrant(id, ttl)` adds a grant tag, expiring at the change's HLC wall time + TTL;
/// - `leaseCheckpoint(id, t)` raises the expiry of the grants its change had seen to at least t;
/// - `leaseRevoke(id)` removes the grants its change had seen.
/// "Had seen" is read from the change's `deps` (plus the change itself), so a grant concurrent
/// with a revoke survives it, and a re-grant of a revoked id (etcd allows that) works. With
/// causal delivery every operation commutes with every concurrent one; nothing is kept for a
/// revoked lease (no tombstones), so there is nothing to collect.
struct LeaseTable: Sendable {
    struct Grant: Hashable, Sendable {
        var dot: Dot
        var hlc: HLC
        var ttlSeconds: Int64
        var expiresAtMilliseconds: Int64
    }

    private(set) var grants: [Int64: [Grant]] = [:]

    var count: Int { grants.count }

    func info(_ id: Int64) -> LeaseInfo? {
        guard let tags = grants[id], !tags.isEmpty else { return nil }
        let winner = tags.max { ($0.hlc, $0.dot) < ($1.hlc, $1.dot) }!
        let expiresAt = tags.map(\.expiresAtMilliseconds).max()!
        return LeaseInfo(id: id, ttlSeconds: winner.ttlSeconds, expiresAtMilliseconds: expiresAt)
    }

    var all: [LeaseInfo] { grants.keys.sorted().compactMap(info) }

    /// The replicas whose live grants keep lease `id` (its granting members).
    func grantOrigins(_ id: Int64) -> Set<UInt64> { Set((grants[id] ?? []).map(\.dot.member)) }

    /// Applies one lease op of `change`; returns whether the lease's state changed.
    mutating func apply(_ op: Op, of change: Change) -> Bool {
        func seen(_ g: Grant) -> Bool { g.dot == change.id || change.deps.contains(g.dot) }
        switch op {
        case .leaseGrant(let id, let ttl):
            let (product, overflow) = ttl.multipliedReportingOverflow(by: 1000)
            let (sum, overflow2) = change.hlc.wallMilliseconds.addingReportingOverflow(product)
            let expiresAt = overflow || overflow2 ? (ttl < 0 ? Int64.min : Int64.max) : sum
            grants[id, default: []].append(Grant(dot: change.id, hlc: change.hlc, ttlSeconds: ttl, expiresAtMilliseconds: expiresAt))
            return true
        case .leaseCheckpoint(let id, let expiresAt):
            guard var tags = grants[id] else { return false }
            var changed = false
            for i in tags.indices where seen(tags[i]) && tags[i].expiresAtMilliseconds < expiresAt {
                tags[i].expiresAtMilliseconds = expiresAt
                changed = true
            }
            grants[id] = tags
            return changed
        case .leaseRevoke(let id):
            guard var tags = grants[id] else { return false }
            let before = tags.count
            tags.removeAll(where: seen)
            grants[id] = tags.isEmpty ? nil : tags
            return tags.count != before
        default:
            return false
        }
    }

    /// Restores decoded grants (in any order); sorted so state encodes deterministically.
    init(grants: [Int64: [Grant]] = [:]) {
        self.grants = grants.filter { !$0.value.isEmpty }.mapValues { $0.sorted { $0.dot < $1.dot } }
    }
}
