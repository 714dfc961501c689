import EtcdAPI
import LatticeCore

/// A lease as the lessor keeps it.
struct LeaseState: Sendable {
    let id: Int64
    /// Granted TTL in seconds.
    let ttlSeconds: Int64
    /// Wall-clock expiry in milliseconds; renewed by keep-alives.
    var expiresAtMilliseconds: Int64
    /// Keys currently attached (hashed in one call each, see `StoredKey`).
    var keys: Set<StoredKey> = []

    /// The attached keys in byte order.
    var sortedKeys: [[UInt8]] { keys.map(\.bytes).sorted(by: bytesLess) }
}

/// Lease bookkeeping (etcd's lessor): TTLs, expiry times and attached keys. Owned by the store's
/// writer, so every change to it is ordered with the key changes that attach and detach keys.
struct Lessor: Sendable {
    /// etcd's minimum TTL with default election settings: ceil(1.5 × 1000 ms election timeout)
    /// = 2 s; shorter requests are raised to it.
    static let minTTLSeconds: Int64 = 2
    /// etcd's MaxLeaseTTL.
    static let maxTTLSeconds: Int64 = 9_000_000_000

    private(set) var leases: [Int64: LeaseState] = [:]
    private var idCounter: UInt64 = 0

    func exists(_ id: Int64) -> Bool { leases[id] != nil }
    func lease(_ id: Int64) -> LeaseState? { leases[id] }

    /// An id for a lease granted with ID 0: like etcd's request-id generator, the member id's low
    /// 16 bits on top (so members never collide), then time and a counter; always positive.
    mutating func generateID(memberID: UInt64, nowMilliseconds: Int64) -> Int64 {
        while true {
            idCounter += 1
            let low = (UInt64(max(0, nowMilliseconds)) << 8 &+ idCounter) & 0x0000_FFFF_FFFF_FFFF
            let id = Int64(bitPattern: ((memberID & 0xFFFF) << 48 | low) & 0x7FFF_FFFF_FFFF_FFFF)
            if id != 0 && leases[id] == nil { return id }
        }
    }

    mutating func grant(id: Int64, ttlSeconds: Int64, nowMilliseconds: Int64) {
        leases[id] = LeaseState(id: id, ttlSeconds: ttlSeconds,
                                expiresAtMilliseconds: nowMilliseconds + ttlSeconds * 1000)
    }

    mutating func renew(_ id: Int64, nowMilliseconds: Int64) -> LeaseState? {
        guard var lease = leases[id] else { return nil }
        lease.expiresAtMilliseconds = nowMilliseconds + lease.ttlSeconds * 1000
        leases[id] = lease
        return lease
    }

    @discardableResult
    mutating func remove(_ id: Int64) -> LeaseState? { leases.removeValue(forKey: id) }

    /// Sets a lease's expiry from a persisted checkpoint (a max-register: never moves it back).
    mutating func checkpoint(_ id: Int64, expiresAtMilliseconds: Int64) {
        guard var lease = leases[id] else { return }
        lease.expiresAtMilliseconds = max(lease.expiresAtMilliseconds, expiresAtMilliseconds)
        leases[id] = lease
    }

    /// After a restart: no lease expires before `time`.
    mutating func extendExpiries(toAtLeast time: Int64) {
        for id in Array(leases.keys) { leases[id]!.expiresAtMilliseconds = max(leases[id]!.expiresAtMilliseconds, time) }
    }

    /// Moves `key` from the lease of its previous version to the lease of its new version.
    mutating func reattach(_ key: [UInt8], from old: Int64, to new: Int64) {
        if old == new { return }
        if old != 0 { leases[old]?.keys.remove(StoredKey(key)) }
        if new != 0 { leases[new]?.keys.insert(StoredKey(key)) }
    }

    /// Leases whose expiry time has passed, oldest first.
    func expired(nowMilliseconds: Int64) -> [Int64] {
        leases.values.filter { $0.expiresAtMilliseconds <= nowMilliseconds }
            .sorted { ($0.expiresAtMilliseconds, $0.id) < ($1.expiresAtMilliseconds, $1.id) }
            .map(\.id)
    }
}
