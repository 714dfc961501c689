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
                for v in index.retained(index.history(key) ?? []) where v.modRevision <= rev {
                    mix(key); mix(v.modRevision); mix(v.createRevision); mix(v.version); mix(v.value); mix(v.lease)
                }
            }
            return (h, index.compactRevision)
        }
    }

    /// The member's keyspace at the current revision, for Maintenance/Snapshot, framed the way
    /// etcd clients check a snapshot stream: the payload ("LATTICE1", u64 length, an encoded
    /// RangeResponse of every key, followed by the auth state as operations in field
    /// `SnapshotEncoder.authField`, which RangeResponse decoders skip), zero-padded to a
    /// multiple of 512 bytes, then the SHA-256 of everything before it. The keys are captured under the read lock (a consistent point; the
    /// values are shared with the index, not copied); the bytes are produced on demand, in
    /// chunks, by the returned encoder.
    public func snapshotEncoder() -> SnapshotEncoder {
        var all = RangeRequest(key: [0], rangeEnd: [0])
        all.serializable = true
        return SnapshotEncoder((try? range(all)) ?? RangeResponse(), auth: authState.ops)
    }

    /// The whole snapshot stream in one array (tests and small tools; the service streams).
    public func snapshotBytes() -> [UInt8] {
        let encoder = snapshotEncoder()
        var out: [UInt8] = []
        out.reserveCapacity(encoder.totalBytes)
        while let chunk = encoder.nextChunk(maxBytes: 1 << 20) { out += chunk }
        return out
    }
}

/// Encodes a captured keyspace as a snapshot stream, one chunk at a time, so that streaming a
/// snapshot holds one chunk of encoded bytes rather than the whole encoding (and never a second
/// copy of it). Used by one thread at a time.
public final class SnapshotEncoder: @unchecked Sendable {
    /// Every byte the stream will hold, known before the first chunk.
    public let totalBytes: Int
    private let kvs: [KeyValue]
    private var prefix: [UInt8]
    private var suffix: [UInt8]
    private let payloadBytes: Int
    private var hasher = SHA256.Hasher()
    /// Next piece to produce: -1 the framing and the response's leading fields, 0..<kvs.count
    /// the keys, kvs.count the trailing fields and the padding, kvs.count + 1 the checksum.
    private var next = -1
    private var carry: [UInt8] = []
    private var carryOffset = 0
    public private(set) var producedBytes = 0

    /// The field number of the auth operations after the keys (far from RangeResponse's own).
    public static let authField = 1000

    init(_ response: RangeResponse, auth: [AuthOp] = []) {
        kvs = response.kvs
        var leading = RangeResponse()
        leading.header = response.header
        prefix = leading.protoBytes()
        var trailing = RangeResponse()
        trailing.more = response.more
        trailing.count = response.count
        suffix = trailing.protoBytes()
        for op in auth {
            let bytes = op.encoded
            var tag = UInt64(Self.authField << 3 | 2)
            while tag >= 0x80 { suffix.append(UInt8(truncatingIfNeeded: tag) | 0x80); tag >>= 7 }
            suffix.append(UInt8(tag))
            var size = UInt64(bytes.count)
            while size >= 0x80 { suffix.append(UInt8(truncatingIfNeeded: size) | 0x80); size >>= 7 }
            suffix.append(UInt8(size))
            suffix += bytes
        }
        var payload = prefix.count + suffix.count
        for kv in kvs {
            let size = kv.protoSize
            payload += 1 + varintSize(UInt64(size)) + size
        }
        payloadBytes = payload
        let unpadded = 16 + payload
        totalBytes = unpadded + (512 - unpadded % 512) % 512 + 32
    }

    /// The next up to `maxBytes` bytes of the stream, or nil once all were produced.
    public func nextChunk(maxBytes: Int) -> [UInt8]? {
        precondition(maxBytes > 0)
        var out: [UInt8] = []
        while out.count < maxBytes {
            if carryOffset < carry.count {
                let n = min(maxBytes - out.count, carry.count - carryOffset)
                out += carry[carryOffset..<(carryOffset + n)]
                carryOffset += n
                continue
            }
            guard let piece = nextPiece() else { break }
            carry = piece
            carryOffset = 0
        }
        producedBytes += out.count
        return out.isEmpty ? nil : out
    }

    private func nextPiece() -> [UInt8]? {
        defer { next += 1 }
        var piece: [UInt8]
        switch next {
        case -1:
            piece = Array("LATTICE1".utf8)
            for i in 0..<8 { piece.append(UInt8(truncatingIfNeeded: UInt64(payloadBytes) >> (8 * UInt64(i)))) }
            piece += prefix
            prefix = []
        case 0..<kvs.count:
            let kv = kvs[next].protoBytes()
            piece = [0x12]   // field 2 (kvs), length-delimited
            var size = UInt64(kv.count)
            while size >= 0x80 { piece.append(UInt8(truncatingIfNeeded: size) | 0x80); size >>= 7 }
            piece.append(UInt8(size))
            piece += kv
        case kvs.count:
            piece = suffix
            suffix = []
            let unpadded = 16 + payloadBytes
            piece += [UInt8](repeating: 0, count: (512 - unpadded % 512) % 512)
        case kvs.count + 1:
            return hasher.finalize()
        default:
            return nil
        }
        hasher.update(piece)
        return piece
    }
}

extension MVCCStore {
    /// For the restore tool only (a store with no clients and no writes in flight), after it has
    /// put a snapshot's keys: gives every key the create revision, mod revision and version it
    /// had in the snapshot, makes the snapshot's revision the current one, and rewrites the data
    /// directory so that this is what a restart finds. Earlier revisions are not held (the
    /// snapshot has only the latest version of each key), so they read as compacted, and the
    /// next write takes the revision after `revision`. kube-apiserver's resourceVersions of
    /// existing objects stay valid across the move.
    public func adoptRevisions(of kvs: [KeyValue], revision: Int64) throws(EtcdError) {
        var top = max(revision, 1)
        for kv in kvs {
            guard kv.createRevision >= 1, kv.modRevision >= kv.createRevision, kv.version >= 1 else {
                throw EtcdError(.invalidArgument,
                                "lattice: key \(String(decoding: kv.key, as: UTF8.self)) has impossible revisions (create \(kv.createRevision), mod \(kv.modRevision), version \(kv.version))")
            }
            top = max(top, kv.modRevision)
        }
        writer.withLock { _ in
            lock.withWriteLock {
                let old = indexed.index
                var index = MVCCIndex()
                for kv in kvs {
                    guard var adopted = old.visible(kv.key, at: old.currentRevision) else { continue }
                    adopted.createRevision = kv.createRevision
                    adopted.modRevision = kv.modRevision
                    adopted.version = kv.version
                    index.append(kv.key, adopted, restoring: true)
                }
                index.restore(currentRevision: top, compactRevision: top > 1 ? top : -1)
                indexed = Indexed(index: index, log: EventLog())
            }
        }
        hub.restart(at: top)
        try defragment()
    }
}
