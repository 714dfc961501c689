import EtcdAPI
import LatticeCore

/// Leases (etcd's lessor API). Grants, revocations and expiries are changes like key writes;
/// only those that delete keys take a revision, as in etcd. Keep-alives renew in memory.
extension MVCCStore {
    private var nowMilliseconds: Int64 { configuration.wallClock.nowMilliseconds() }

    public func leaseGrant(_ r: LeaseGrantRequest) throws(EtcdError) -> LeaseGrantResponse {
        if r.ttl > Lessor.maxTTLSeconds { throw .leaseTTLTooLarge }
        let now = nowMilliseconds
        let (id, ttl) = try writeWithState { (txn: inout WriteTxn, state: inout MVCCStore.WriterState) throws(EtcdError) -> (Int64, Int64) in
            let id = r.id == 0 ? state.lessor.generateID(memberID: configuration.memberID, nowMilliseconds: now) : r.id
            if state.lessor.exists(id) { throw .leaseExists }
            let ttl = max(r.ttl, Lessor.minTTLSeconds)
            state.lessor.grant(id: id, ttlSeconds: ttl, nowMilliseconds: now)
            txn.append(.leaseGrant(id: id, ttlSeconds: ttl))
            return (id, ttl)
        }
        return LeaseGrantResponse(header: currentHeader(), id: id, ttl: ttl)
    }

    public func leaseRevoke(_ r: LeaseRevokeRequest) throws(EtcdError) -> LeaseRevokeResponse {
        try revoke(r.id)
        return LeaseRevokeResponse(header: currentHeader())
    }

    /// Revokes a lease: its keys are deleted in one revision (none if it has no keys). With
    /// `expiredBy`, only if the lease has not been renewed past that time (checked under the writer,
    /// so a concurrent keep-alive wins). Returns whether it was revoked.
    @discardableResult
    private func revoke(_ id: Int64, expiredBy: Int64? = nil) throws(EtcdError) -> Bool {
        try writeWithState { (txn: inout WriteTxn, state: inout MVCCStore.WriterState) throws(EtcdError) -> Bool in
            guard let lease = state.lessor.lease(id) else { throw .leaseNotFound }
            if let expiredBy, lease.expiresAtMilliseconds > expiredBy { return false }
            for key in lease.keys.sorted(by: bytesLess) {
                _ = txn.deleteRange(DeleteRangeRequest(key: key))
            }
            txn.append(.leaseRevoke(id: id))
            state.lessor.remove(id)
            return true
        }
    }

    /// Renews a lease; returns its granted TTL, or 0 when it does not exist (etcd answers a
    /// keep-alive for an unknown lease with TTL 0).
    public func leaseKeepAlive(_ id: Int64) -> Int64 {
        let now = nowMilliseconds
        return writer.withLock { state in state.lessor.renew(id, nowMilliseconds: now)?.ttlSeconds ?? 0 }
    }

    public func leaseTimeToLive(_ r: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
        let now = nowMilliseconds
        let lease = writer.withLock { state in state.lessor.lease(r.id) }
        guard let lease else {
            return LeaseTimeToLiveResponse(header: currentHeader(), id: r.id, ttl: -1, grantedTTL: 0)
        }
        let remaining = max(0, (lease.expiresAtMilliseconds - now) / 1000)
        let keys = r.keys ? lease.keys.sorted(by: bytesLess) : []
        return LeaseTimeToLiveResponse(header: currentHeader(), id: r.id, ttl: remaining, grantedTTL: lease.ttlSeconds, keys: keys)
    }

    public func leaseLeases() -> LeaseLeasesResponse {
        let ids = writer.withLock { state in state.lessor.leases.keys.sorted() }
        return LeaseLeasesResponse(header: currentHeader(), leases: ids.map { LeaseStatus(id: $0) })
    }

    /// Revokes every lease whose TTL has run out by the store's clock, one change (and, with
    /// keys, one revision) per lease. Called periodically by the server; tests call it directly
    /// with a manual clock.
    @discardableResult
    public func expireLeases() -> [Int64] {
        let now = nowMilliseconds
        let expired = writer.withLock { state in state.lessor.expired(nowMilliseconds: now) }
        return expired.filter { id in (try? revoke(id, expiredBy: now)) == true }
    }
}
