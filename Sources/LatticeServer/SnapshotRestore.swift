import EtcdAPI
import LatticeCore
import LatticeStorage
import LatticeStore
import ProtoWire

#if canImport(Glibc)
import Glibc
#endif

/// A snapshot file's keyspace: a Lattice snapshot (`etcdctl snapshot save` against Lattice) or
/// an etcd one (the bbolt database `etcdctl snapshot save` writes against etcd 3.4/3.5, or
/// etcd's `member/snap/db`).
public struct SnapshotContents: Sendable {
    public enum Format: String, Sendable { case lattice, etcd }
    public var format: Format
    /// The live keys at the snapshot's revision, in key order.
    public var kvs: [KeyValue]
    /// Lease id → TTL in seconds (etcd snapshots; Lattice snapshots hold no lease TTLs).
    public var leases: [Int64: Int64]
    /// The snapshot's users, roles, permissions and enabled flag, as the auth changes that
    /// recreate them (empty when it has none).
    public var auth: [AuthOp] = []
    public var revision: Int64
    /// `snapshot status` figures, as etcdutl computes them for an etcd snapshot: a CRC-32C of
    /// every bucket name, key and value; the number of entries in all buckets; the database's
    /// size. For a Lattice snapshot: a CRC-32C of every key and value; the number of keys; the
    /// file's size.
    public var hash: UInt32
    public var totalKeys: Int
    public var totalBytes: Int

    /// Reads and checks `bytes`. A Lattice snapshot's SHA-256 trailer must match (unless
    /// `skipHashCheck`); an etcd one must be a readable bbolt file with a `key` bucket.
    public static func parse(_ bytes: [UInt8], skipHashCheck: Bool = false) throws(SnapshotRestoreError) -> SnapshotContents {
        if bytes.starts(with: Array("LATTICE1".utf8)) { return try parseLattice(bytes, skipHashCheck: skipHashCheck) }
        if BoltFile.looksLikeBolt(bytes) { return try parseEtcd(bytes) }
        throw SnapshotRestoreError("not a snapshot: neither a Lattice snapshot nor an etcd (bbolt) database")
    }

    static func parseLattice(_ bytes: [UInt8], skipHashCheck: Bool) throws(SnapshotRestoreError) -> SnapshotContents {
        guard bytes.count >= 16 + 32 else { throw SnapshotRestoreError("truncated snapshot (\(bytes.count) bytes)") }
        let length = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[8 + $1]) << (8 * UInt64($1)) }
        guard length <= UInt64(bytes.count - 16 - 32) else { throw SnapshotRestoreError("truncated snapshot: the payload runs past the end") }
        if !skipHashCheck {
            var hasher = SHA256.Hasher()
            hasher.update(Array(bytes[0..<(bytes.count - 32)]))
            guard hasher.finalize() == Array(bytes[(bytes.count - 32)...]) else {
                throw SnapshotRestoreError("snapshot hash mismatch (a damaged or truncated file; --skip-hash-check restores it anyway)")
            }
        }
        let response: RangeResponse
        do {
            response = try RangeResponse(protoBytes: Array(bytes[16..<(16 + Int(length))]))
        } catch {
            throw SnapshotRestoreError("cannot decode the snapshot's keyspace: \(error)")
        }
        let revision = max(response.header?.revision ?? 1, response.kvs.map(\.modRevision).max() ?? 1)
        // The auth operations follow the keys in a field RangeResponse does not have.
        var auth: [AuthOp] = []
        var reader = ProtoReader(Array(bytes[16..<(16 + Int(length))]))
        do {
            while let (field, wire) = try reader.nextTag() {
                guard field == SnapshotEncoder.authField else { try reader.skip(wire, field: field); continue }
                guard let op = AuthOp(encoded: try reader.readBytes(wire, field: field)) else {
                    throw SnapshotRestoreError("the snapshot's auth state does not decode")
                }
                auth.append(op)
            }
        } catch let error as SnapshotRestoreError {
            throw error
        } catch {
            throw SnapshotRestoreError("cannot decode the snapshot's auth state: \(error)")
        }
        var crc: UInt32 = 0
        for kv in response.kvs {
            crc = CRC32C.update(CRC32C.update(crc, kv.key), kv.value)
        }
        return SnapshotContents(format: .lattice, kvs: response.kvs, leases: [:], auth: auth, revision: revision,
                                hash: crc, totalKeys: response.kvs.count, totalBytes: bytes.count)
    }

    static func parseEtcd(_ bytes: [UInt8]) throws(SnapshotRestoreError) -> SnapshotContents {
        let bolt: BoltFile
        do { bolt = try BoltFile(bytes: bytes) } catch { throw SnapshotRestoreError(error.description) }
        // The `key` bucket: revision (8 bytes main, '_', 8 bytes sub, 't' for a tombstone) →
        // mvccpb.KeyValue, in revision order. Replaying it gives the keyspace at the last one.
        var live: [[UInt8]: KeyValue] = [:]
        var revision: Int64 = 1
        var leases: [Int64: Int64] = [:]
        do {
            let found = try bolt.forEach(inBucket: Array("key".utf8)) { key, value throws(StorageError) in
                guard key.count >= 17 else { throw StorageError(.corruption, "etcd snapshot: revision key of \(key.count) bytes") }
                let main = key[0..<8].reduce(Int64(0)) { $0 << 8 | Int64($1) }
                revision = max(revision, main)
                let kv: KeyValue
                do { kv = try KeyValue(protoBytes: Array(value)) } catch {
                    throw StorageError(.corruption, "etcd snapshot: revision \(main): \(error)")
                }
                if key.count >= 18 && key[17] == UInt8(ascii: "t") {
                    live[kv.key] = nil
                } else {
                    live[kv.key] = kv
                }
            }
            guard found else { throw StorageError(.corruption, "etcd snapshot: no \"key\" bucket") }
            // A compaction may have removed the newest revisions (tombstones at or below it):
            // the `meta` bucket's finishedCompactRev (a revision key) is then the later one.
            try bolt.forEach(inBucket: Array("meta".utf8)) { key, value throws(StorageError) in
                guard key == Array("finishedCompactRev".utf8), value.count >= 8 else { return }
                revision = max(revision, value.prefix(8).reduce(Int64(0)) { $0 << 8 | Int64($1) })
            }
            try bolt.forEach(inBucket: Array("lease".utf8)) { _, value throws(StorageError) in
                var reader = ProtoReader(Array(value))
                var id: Int64 = 0, ttl: Int64 = 0
                do {
                    while let (field, wire) = try reader.nextTag() {
                        switch field {
                        case 1: id = Int64(bitPattern: try reader.readVarint())
                        case 2: ttl = Int64(bitPattern: try reader.readVarint())
                        default: try reader.skip(wire, field: field)
                        }
                    }
                } catch {
                    throw StorageError(.corruption, "etcd snapshot: lease: \(error)")
                }
                if id != 0 { leases[id] = ttl }
            }
        } catch {
            throw SnapshotRestoreError("\(error)")
        }
        let auth = try parseEtcdAuth(bolt)
        // etcdutl's status: every bucket's name, then its keys and values, into one CRC-32C.
        var crc: UInt32 = 0
        var entries = 0
        do {
            for name in try bolt.bucketNames() {
                crc = CRC32C.update(crc, name)
                try bolt.forEach(inBucket: name) { key, value throws(StorageError) in
                    crc = CRC32C.update(CRC32C.update(crc, key), Array(value))
                    entries += 1
                }
            }
        } catch {
            throw SnapshotRestoreError("\(error)")
        }
        return SnapshotContents(format: .etcd, kvs: live.values.sorted { $0.key.lexicographicallyPrecedes($1.key) }, leases: leases,
                                auth: auth, revision: revision, hash: crc, totalKeys: entries, totalBytes: bolt.usedBytes)
    }

    /// etcd's auth buckets: `authRoles` (name → authpb.Role with its key permissions),
    /// `authUsers` (name → authpb.User: bcrypt hash, roles, no-password option) and `auth`
    /// (`authEnabled`: one byte). Password hashes are kept as they are (Lattice's bcrypt
    /// verifies etcd's), so every user logs in with the password it had.
    static func parseEtcdAuth(_ bolt: BoltFile) throws(SnapshotRestoreError) -> [AuthOp] {
        var roles: [AuthOp] = []
        var users: [AuthOp] = []
        var enabled = false
        do {
            try bolt.forEach(inBucket: Array("authRoles".utf8)) { _, value throws(StorageError) in
                let role: Role
                do { role = try Role(protoBytes: Array(value)) } catch { throw StorageError(.corruption, "etcd snapshot: role: \(error)") }
                let name = String(decoding: role.name, as: UTF8.self)
                roles.append(AuthOp(set: .role(name)))
                for p in role.keyPermission {
                    guard let type = AuthPermissionType(rawValue: p.permType.rawValue) else {
                        throw StorageError(.corruption, "etcd snapshot: role \(name): permission type \(p.permType.rawValue)")
                    }
                    roles.append(AuthOp(set: .permission(role: name, key: p.key, rangeEnd: p.rangeEnd), to: .permission(type)))
                }
            }
            try bolt.forEach(inBucket: Array("authUsers".utf8)) { _, value throws(StorageError) in
                let user: User
                do { user = try User(protoBytes: Array(value)) } catch { throw StorageError(.corruption, "etcd snapshot: user: \(error)") }
                let name = String(decoding: user.name, as: UTF8.self)
                users.append(AuthOp(set: .user(name), to: .user(passwordHash: String(decoding: user.password, as: UTF8.self),
                                                                noPassword: user.options?.noPassword ?? false)))
                for role in user.roles { users.append(AuthOp(set: .userRole(user: name, role: role))) }
            }
            try bolt.forEach(inBucket: Array("auth".utf8)) { key, value throws(StorageError) in
                if key == Array("authEnabled".utf8) { enabled = value.first == 1 }
            }
        } catch {
            throw SnapshotRestoreError("\(error)")
        }
        return roles + users + (enabled ? [AuthOp(set: .enabled, to: .enabled(true))] : [])
    }

    /// Builds a new data directory holding this keyspace: its leases granted with their TTL
    /// (a lease a Lattice snapshot names is granted with `defaultLeaseTTL`), every key put with
    /// its value and lease, in batches of at most 1,000 keys or 4 MiB with one fsync each.
    /// Each key then keeps the create revision, mod revision and version it had in the
    /// snapshot, and the store continues from the snapshot's revision (revisions before it read
    /// as compacted: the snapshot holds only the latest version of each key).
    /// Returns the number of leases granted.
    @discardableResult
    public func restore(into dataDir: String, memberID: UInt64, clusterID: UInt64, defaultLeaseTTL: Int64) throws(SnapshotRestoreError) -> Int {
        if DataDirectory.holdsData(dataDir) {
            throw SnapshotRestoreError("data-dir \"\(dataDir)\" exists")
        }
        var configuration = MVCCStore.Configuration(memberID: memberID, clusterID: clusterID)
        configuration.dataDirectory = dataDir
        configuration.maxTxnOps = 1_000
        let store: MVCCStore
        do { store = try MVCCStore(configuration: configuration) } catch {
            throw SnapshotRestoreError("cannot create data-dir \"\(dataDir)\": \(error)")
        }
        defer { store.close() }
        var ttls = leases
        do throws(EtcdError) {
            for kv in kvs where kv.lease != 0 && ttls[kv.lease] == nil { ttls[kv.lease] = defaultLeaseTTL }
            for (id, ttl) in ttls.sorted(by: { $0.key < $1.key }) {
                _ = try store.leaseGrant(LeaseGrantRequest(ttl: max(ttl, 1), id: id))
            }
            var batch: [RequestOp] = []
            var batchBytes = 0
            func flush() throws(EtcdError) {
                guard !batch.isEmpty else { return }
                _ = try store.txn(TxnRequest(compare: [], success: batch))
                batch = []
                batchBytes = 0
            }
            for kv in kvs {
                var op = RequestOp()
                op.request = .put(PutRequest(key: kv.key, value: kv.value, lease: kv.lease))
                batch.append(op)
                batchBytes += kv.key.count + kv.value.count
                if batch.count >= 1_000 || batchBytes >= 4 << 20 { try flush() }
            }
            try flush()
            try store.adoptRevisions(of: kvs, revision: revision)
            if !auth.isEmpty { try store.changeAuth(auth) }
        } catch {
            throw SnapshotRestoreError("restoring into \"\(dataDir)\": \(error.message)")
        }
        do { try DataDirectory.writeIdentity(dataDir, memberID: memberID, clusterID: clusterID) } catch {
            throw SnapshotRestoreError("writing the member identity: \(error)")
        }
        return ttls.count
    }
}

public struct SnapshotRestoreError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
