import EtcdAPI
import LatticeCore
import ProtoWire

extension MVCCStore {
    /// A hash of the MVCC history at or below `revision` (0 = current), like etcd's HashKV:
    /// equal stores (same keys, values and revisions since the same compaction) hash equal.
    /// FNV-1a over each version's key, revisions and value, in key then revision order.
    public func hashKV(revision: Int64) throws(EtcdError) -> (hash: UInt32, compactRevision: Int64) {
        try lock.withReadLock { () throws(EtcdError) -> (hash: UInt32, compactRevision: Int64) in
            let index = indexed.index
            let rev = try RangeQuery.readRevision(revision, current: index.currentRevision, compacted: index.compactRevision)
            var h: UInt32 = 2_166_136_261
            func mix(_ bytes: [UInt8]) { for b in bytes { h = (h ^ UInt32(b)) &* 16_777_619 } }
            func mix(_ v: Int64) { for i in 0..<8 { h = (h ^ UInt32(truncatingIfNeeded: v >> (8 * Int64(i)))) &* 16_777_619 } }
            for key in index.sortedKeys {
                for v in index.histories[key] ?? [] where v.modRevision <= rev {
                    mix(key); mix(v.modRevision); mix(v.createRevision); mix(v.version); mix(v.value); mix(v.lease)
                }
            }
            return (h, index.compactRevision)
        }
    }

    /// The member's keyspace at the current revision, for Maintenance/Snapshot, framed the way
    /// etcd clients check a snapshot stream: the payload ("LATTICE1", u64 length, an encoded
    /// RangeResponse of every key), zero-padded to a multiple of 512 bytes, then the SHA-256 of
    /// everything before it.
    public func snapshotBytes() -> [UInt8] {
        var all = RangeRequest(key: [0], rangeEnd: [0])
        all.serializable = true
        let payload = ((try? range(all)) ?? RangeResponse()).protoBytes()
        var out = Array("LATTICE1".utf8)
        out.reserveCapacity(16 + payload.count + 512 + 32)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: UInt64(payload.count) >> (8 * UInt64(i)))) }
        out += payload
        out += [UInt8](repeating: 0, count: (512 - out.count % 512) % 512)
        out += SHA256.hash(out)
        return out
    }
}
