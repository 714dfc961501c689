import EtcdAPI
import Synchronization
import LatticeCore

/// Leases (etcd's lessor API). Grants, revocations, expiries and expiry checkpoints are changes
/// like key writes (durable before they are answered); only those that delete keys take a
/// revision, as in etcd. Keep-alives renew in memory and are checkpointed at most once per
/// lease per interval.
extension MVCCStore {
    private var nowMilliseconds: Int64 { configuration.wallClock.nowMilliseconds() }

    public func leaseGrant(_ r: LeaseGrantRequest, completion: @escaping @Sendable (Result<LeaseGrantResponse, EtcdError>) -> Void) {
        if r.ttl > Lessor.maxTTLSeconds { return completion(.failure(.leaseTTLTooLarge)) }
        let now = nowMilliseconds
        let memberID = configuration.memberID
        submit({ (txn: inout WriteTxn, state: inout WriterState) throws(EtcdError) -> LeaseGrantResponse in
            let id = r.id == 0 ? state.lessor.generateID(memberID: memberID, nowMilliseconds: now) : r.id
            if state.lessor.exists(id) { throw .leaseExists }
            let ttl = max(r.ttl, Lessor.minTTLSeconds)
            state.lessor.grant(id: id, ttlSeconds: ttl, nowMilliseconds: now)
            state.checkpointedAt[id] = now
            txn.append(.leaseGrant(id: id, ttlSeconds: ttl))
            return LeaseGrantResponse(header: nil, id: id, ttl: ttl)
        }, completion: { [self] result in
            completion(result.map { var g = $0; g.header = currentHeader(); return g })
        })
    }

    /// `authRevision`: as for `put`, when the lease has keys. `keysAllowed`, when given, is asked
    /// on the writer whether the caller may delete the keys the lease holds at that moment (all
    /// of them, before any is deleted), and refuses the revocation by throwing: the keys it is
    /// asked about are exactly the keys deleted, where a check made before the request was
    /// queued could miss a key attached meanwhile.
    public func leaseRevoke(_ r: LeaseRevokeRequest, authRevision: UInt64? = nil, keysAllowed: KeysAllowed? = nil,
                            completion: @escaping @Sendable (Result<LeaseRevokeResponse, EtcdError>) -> Void) {
        revoke(r.id, expiredBy: nil, authRevision: authRevision, keysAllowed: keysAllowed) { [self] result in
            completion(result.map { _ in LeaseRevokeResponse(header: currentHeader()) })
        }
    }

    /// Revokes a lease: its keys are deleted in one revision (none if it has no keys). With
    /// `expiredBy`, only if the lease has not been renewed past that time (checked on the writer,
    /// so a concurrent keep-alive wins). Completes with whether it was revoked.
    ///
    /// A lease with more keys than one change can hold is revoked in several changes: keys are
    /// deleted a change's worth at a time (each its own revision), then the lease goes with the
    /// last ones, so no single change outgrows a WAL record.
    private func revoke(_ id: Int64, expiredBy: Int64?, authRevision: UInt64? = nil, keysAllowed: KeysAllowed? = nil,
                        completion: @escaping @Sendable (Result<Bool, EtcdError>) -> Void) {
        let budget = configuration.maxChangeBytes / 2
        submit({ (txn: inout WriteTxn, state: inout WriterState) throws(EtcdError) -> Bool? in
            guard let lease = state.lessor.lease(id) else { throw .leaseNotFound }
            if let expiredBy, lease.expiresAtMilliseconds > expiredBy { return false }
            let keys = lease.sortedKeys
            // As etcd's applier: permissions (and so the auth revision) matter only when there
            // are keys to delete.
            if !keys.isEmpty, let authRevision, state.replica.authRevision != authRevision { throw .authOldRevision }
            try keysAllowed?(keys)
            let count = Self.prefixWithin(budget, keys)
            for key in keys[..<count] {
                _ = txn.deleteRange(DeleteRangeRequest(key: key))
            }
            if count < keys.count { return nil }
            txn.append(.leaseRevoke(id: id))
            state.lessor.remove(id)
            state.checkpointedAt[id] = nil
            return true
        }, completion: { [self] result in
            switch result {
            case .success(nil):
                // Keys remain: the revocation started, it finishes whatever keep-alives say
                // (and asks again about the keys then held: one attached meanwhile included).
                revoke(id, expiredBy: nil, authRevision: authRevision, keysAllowed: keysAllowed, completion: completion)
            case .success(let revoked?):
                completion(.success(revoked))
            case .failure(let error):
                completion(.failure(error))
            }
        })
    }

    /// How many of `keys` (from the front) one change deleting them can hold within `budget`
    /// estimated bytes; at least one.
    static func prefixWithin(_ budget: Int, _ keys: [[UInt8]]) -> Int {
        var used = 64 + WriteTxn.estimatedBytes(.leaseRevoke(id: 0))
        var n = 0
        while n < keys.count {
            used += WriteTxn.estimatedBytes(.delete(key: keys[n], parents: []))
            if used > budget && n > 0 { break }
            n += 1
        }
        return n
    }

    /// Renews a lease; returns its granted TTL, or 0 when it does not exist (etcd answers a
    /// keep-alive for an unknown lease with TTL 0). Persists the new expiry when the last
    /// checkpoint is older than the checkpoint interval or half the TTL.
    public func leaseKeepAlive(_ id: Int64) -> Int64 {
        let now = nowMilliseconds
        let interval = configuration.leaseCheckpointIntervalMilliseconds
        let (ttl, checkpoint): (Int64, Int64?) = writer.withLock { state in
            guard let lease = state.lessor.renew(id, nowMilliseconds: now) else { return (0, nil) }
            let due = min(interval, lease.ttlSeconds * 500)
            if now - (state.checkpointedAt[id] ?? 0) >= due {
                state.checkpointedAt[id] = now
                return (lease.ttlSeconds, lease.expiresAtMilliseconds)
            }
            return (lease.ttlSeconds, nil)
        }
        if let checkpoint {
            submit({ (txn: inout WriteTxn, state: inout WriterState) throws(EtcdError) -> Void in
                guard state.lessor.exists(id) else { return }
                txn.append(.leaseCheckpoint(id: id, expiresAtMilliseconds: checkpoint))
            }, completion: { _ in })
        }
        return ttl
    }

    public func leaseTimeToLive(_ r: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
        let now = nowMilliseconds
        let lease = writer.withLock { state in state.lessor.lease(r.id) }
        guard let lease else {
            return LeaseTimeToLiveResponse(header: currentHeader(), id: r.id, ttl: -1, grantedTTL: 0)
        }
        let remaining = max(0, (lease.expiresAtMilliseconds - now) / 1000)
        let keys = r.keys ? lease.sortedKeys : []
        return LeaseTimeToLiveResponse(header: currentHeader(), id: r.id, ttl: remaining, grantedTTL: lease.ttlSeconds, keys: keys)
    }

    public func leaseLeases() -> LeaseLeasesResponse {
        let ids = writer.withLock { state in state.lessor.leases.keys.sorted() }
        return LeaseLeasesResponse(header: currentHeader(), leases: ids.map { LeaseStatus(id: $0) })
    }

    /// Revokes every lease whose TTL has run out by the store's clock, one change (and, with
    /// keys, one revision) per lease. `completion` gets the revoked ids.
    ///
    /// In a cluster a lease is expired by the member that granted it (every member would
    /// otherwise revoke it at once); another member takes over once the lease is overdue by a
    /// further TTL (its granting member is down or cut off). Keys that a peer's change left
    /// attached to a lease that is not live are deleted by the same tick (the dead-lease sweep).
    public func expireLeases(completion: @escaping @Sendable ([Int64]) -> Void) {
        let now = nowMilliseconds
        let (expired, sweep) = writer.withLock { state -> ([Int64], Set<[UInt8]>) in
            let origin = state.replica.member
            let clustered = !state.replica.peerMembers.isEmpty
            let ids = state.lessor.expired(nowMilliseconds: now).filter { id in
                guard clustered, !state.replica.leaseGrantOrigins(id).contains(origin), let lease = state.lessor.lease(id) else { return true }
                return lease.expiresAtMilliseconds + lease.ttlSeconds * 1000 <= now
            }
            defer { state.deadLeaseKeys = [] }
            return (ids, state.deadLeaseKeys)
        }
        if !sweep.isEmpty { sweepDeadLeaseKeys(sweep) }
        guard !expired.isEmpty else { return completion([]) }
        let results = Mutex<(done: Int, revoked: [Int64])>((0, []))
        for id in expired {
            revoke(id, expiredBy: now) { result in
                let finished: [Int64]? = results.withLock { r in
                    r.done += 1
                    if case .success(true) = result { r.revoked.append(id) }
                    return r.done == expired.count ? r.revoked : nil
                }
                if let finished { completion(finished.sorted()) }
            }
        }
    }

    /// Deletes those of `keys` whose visible value is attached to a lease that is not live (one
    /// change, like a revocation, or several when they do not fit in one). A key re-put
    /// meanwhile without that lease is left alone.
    private func sweepDeadLeaseKeys(_ keys: Set<[UInt8]>) {
        let sorted = keys.sorted(by: bytesLess)
        let count = Self.prefixWithin(configuration.maxChangeBytes / 2, sorted)
        let rest = Set(sorted[count...])
        submit({ (txn: inout WriteTxn, state: inout WriterState) throws(EtcdError) -> Void in
            for key in sorted[..<count] {
                guard let v = state.replica.visible(key), v.lease != 0, state.replica.lease(v.lease) == nil else { continue }
                _ = txn.deleteRange(DeleteRangeRequest(key: key))
            }
        }, completion: { [self] _ in
            if !rest.isEmpty { sweepDeadLeaseKeys(rest) }
        })
    }

    // Synchronous forms (tests, tools; never on an event loop).
    public func leaseGrant(_ r: LeaseGrantRequest) throws(EtcdError) -> LeaseGrantResponse { try wait { leaseGrant(r, completion: $0) } }
    public func leaseRevoke(_ r: LeaseRevokeRequest) throws(EtcdError) -> LeaseRevokeResponse { try wait { leaseRevoke(r, completion: $0) } }

    @discardableResult
    public func expireLeases() -> [Int64] {
        (try? wait { (done: @escaping @Sendable (Result<[Int64], EtcdError>) -> Void) in
            expireLeases { done(.success($0)) }
        }) ?? []
    }
}
