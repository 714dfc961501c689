import ProtoWire

/// The encoded state of a `Replica`, for snapshots and restarts.
///
/// Layout: `"LTRS"` | format version (1 byte, = 1) | payload | FNV-1a-64 of everything before
/// it (8 bytes, little-endian). The payload is protobuf (ProtoWire), reusing the messages of
/// `Protos/lattice/change.proto` for dots, vectors and changes:
///
///     message ReplicaState {
///       uint64 member = 1;
///       VersionVector vector = 2;
///       int64 clock_wall_ms = 3;  uint32 clock_logical = 4;   // last HLC issued or seen
///       repeated KeyState keys = 5;       // ascending by key bytes
///       repeated LeaseGrant grants = 6;   // ascending by (lease id, dot)
///       repeated MemberRecord members = 7;// ascending by member id
///       repeated uint64 removed_members = 8 [packed];  // ascending (ids only: older form)
///       repeated Change log = 9;          // application order
///       repeated Change pending = 10;     // ascending by dot
///       VersionVector log_floor = 11;
///       repeated RemovedMember removed = 12;  // ascending by id
///     }
///     message RemovedMember { uint64 id = 1; Dot dot = 2; }  // the smallest removing change
///     message KeyState { bytes key = 1; repeated Version versions = 2; }  // causal order
///     message Version { Dot dot = 1; int64 hlc_wall_ms = 2; uint32 hlc_logical = 3; bytes value = 4;
///                       bool tombstone = 5; int64 lease = 6; repeated Dot parents = 7; }
///     message LeaseGrant { int64 id = 1; Dot dot = 2; int64 hlc_wall_ms = 3; uint32 hlc_logical = 4;
///                          int64 ttl = 5; int64 expires_at_ms = 6; }
///     message MemberRecord { uint64 id = 4;
///                            // the part set by memberAdd, when there is one:
///                            Dot dot = 1; int64 hlc_wall_ms = 2; uint32 hlc_logical = 3;
///                            string name = 5; repeated string peer_urls = 6; bool is_learner = 8;
///                            Published published = 9; Updated updated = 10; }
///     message Updated { Dot dot = 1; int64 hlc_wall_ms = 2; uint32 hlc_logical = 3; string name = 4;
///                       repeated string peer_urls = 5; bool is_learner = 6; }
///     message Published { Dot dot = 1; int64 hlc_wall_ms = 2; uint32 hlc_logical = 3;
///                         string name = 4; repeated string client_urls = 5; }
///
/// The encoding is deterministic: equal replicas encode to equal bytes. Decoding never traps:
/// damaged bytes fail the checksum, malformed protobuf and states that break the replica's
/// invariants are errors.
public enum ReplicaStateCodec {
    static let magic: [UInt8] = Array("LTRS".utf8)
    static let formatVersion: UInt8 = 1

    public static func encode(_ replica: Replica) -> [UInt8] {
        encode(replica, sortedDAGs: replica.sortedDAGs())
    }

    /// `sortedDAGs`: `replica.sortedDAGs()`, when the caller needs them too (a snapshot walks
    /// them beside the index's sorted keys).
    public static func encode(_ replica: Replica, sortedDAGs: [(key: StoredKey, dag: KeyVersionDAG)]) -> [UInt8] {
        // Framed in place: at a million keys the state is hundreds of megabytes.
        var out = ReplicaStateMessage(replica, sortedDAGs: sortedDAGs).protoBytes(after: magic + [formatVersion], reserving: 8)
        let checksum = fnv1a64(out)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: checksum >> UInt64(8 * i))) }
        return out
    }

    public static func decode(_ bytes: [UInt8], mergeMode: MergeMode, wallClock: any WallClock,
                              causalBufferLimit: Int, causalBufferBytes: Int = 64 << 20) throws(ReplicaStateDecodingError) -> Replica {
        try decode(bytes, range: bytes.indices, mergeMode: mergeMode, wallClock: wallClock,
                   causalBufferLimit: causalBufferLimit, causalBufferBytes: causalBufferBytes)
    }

    /// Decodes the state held in `range` of `bytes` (inside a store snapshot), without copying it.
    public static func decode(_ bytes: [UInt8], range: Range<Int>, mergeMode: MergeMode, wallClock: any WallClock,
                              causalBufferLimit: Int, causalBufferBytes: Int = 64 << 20) throws(ReplicaStateDecodingError) -> Replica {
        try decodeParts(bytes, range: range, mergeMode: mergeMode, wallClock: wallClock, causalBufferLimit: causalBufferLimit,
                        causalBufferBytes: causalBufferBytes).assemble()
    }

    /// The first step of `decode`: parses the state and checks and builds every key's versions,
    /// leaving the replica's maps to `ReplicaStateParts.assemble()`. A restart builds the
    /// store's index from `keys` (ascending, as the index wants them) while another thread
    /// assembles the replica.
    ///
    /// `verified`: the caller already checked these bytes with a checksum at least as strong
    /// (a snapshot file's CRC-32C over its whole payload), so the state's own FNV-1a — a
    /// byte-serial loop, about 0.4 s over a million keys — is not computed again.
    public static func decodeParts(_ bytes: [UInt8], range: Range<Int>, mergeMode: MergeMode, wallClock: any WallClock,
                                   causalBufferLimit: Int, causalBufferBytes: Int = 64 << 20,
                                   verified: Bool = false) throws(ReplicaStateDecodingError) -> ReplicaStateParts {
        let start = range.lowerBound, end = range.upperBound
        guard range.count >= magic.count + 1 + 8 else { throw .truncated }
        guard Array(bytes[start..<(start + 4)]) == magic else { throw .notAReplicaState }
        guard bytes[start + 4] == formatVersion else { throw .unsupportedFormatVersion(bytes[start + 4]) }
        var stored: UInt64 = 0
        for i in 0..<8 { stored |= UInt64(bytes[end - 8 + i]) << UInt64(8 * i) }
        guard verified || fnv1a64(bytes[start..<(end - 8)]) == stored else { throw .checksumMismatch }
        var message = ReplicaStateMessage()
        do {
            var reader = ProtoReader(bytes, range: (start + 5)..<(end - 8))
            try message.merge(from: &reader)
        } catch {
            throw .malformed(error)
        }
        return try message.parts(mergeMode: mergeMode, wallClock: wallClock, causalBufferLimit: causalBufferLimit,
                                 causalBufferBytes: causalBufferBytes)
    }

    /// FNV-1a, 64 bit: detects every single-byte change; integrity against accidents, not attacks.
    static func fnv1a64(_ bytes: [UInt8]) -> UInt64 { fnv1a64(bytes[...]) }

    static func fnv1a64(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        bytes.withUnsafeBufferPointer { buffer in
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in buffer {
                h ^= UInt64(b)
                h = h &* 0x0000_0100_0000_01b3
            }
            return h
        }
    }
}

extension Replica {
    /// The replica's state as bytes (`ReplicaStateCodec`): key DAGs, leases, members, vector,
    /// HLC, change log and buffered changes. Not the merge mode or the wall clock (configuration).
    public func encodeState() -> [UInt8] { ReplicaStateCodec.encode(self) }

    /// Restores a replica from `encodeState()` bytes. Throws on damaged or inconsistent input.
    public init(decodingState bytes: [UInt8], mergeMode: MergeMode = .json, wallClock: any WallClock = SystemWallClock(),
                causalBufferLimit: Int = Replica.defaultCausalBufferLimit, causalBufferBytes: Int = 64 << 20) throws(ReplicaStateDecodingError) {
        self = try ReplicaStateCodec.decode(bytes, mergeMode: mergeMode, wallClock: wallClock, causalBufferLimit: causalBufferLimit,
                                            causalBufferBytes: causalBufferBytes)
    }
}

public enum ReplicaStateDecodingError: Error, Equatable, Sendable {
    case truncated
    case notAReplicaState
    case unsupportedFormatVersion(UInt8)
    case checksumMismatch
    case malformed(ProtoDecodingError)
    /// Well-formed, but not a state a replica can be in.
    case inconsistent(String)
}

// MARK: messages

private struct HLCFields {
    static func read(_ field: Int, _ wt: WireType, _ r: inout ProtoReader, wall: Int, into hlc: inout HLC) throws(ProtoDecodingError) -> Bool {
        if field == wall { hlc.wallMilliseconds = try r.readInt64(wt, field: field); return true }
        if field == wall + 1 { hlc.logical = try r.readUInt32(wt, field: field); return true }
        return false
    }
}

struct VersionMessage: ProtoMessage {
    var dot = Dot(member: 0, seq: 0)
    var hlc = HLC.zero
    var value: [UInt8] = []
    var tombstone = false
    var lease: Int64 = 0
    var parents: [Dot] = []

    init() {}
    init(_ v: KeyVersion) {
        dot = v.dot; hlc = v.hlc; value = v.value ?? []; tombstone = v.isTombstone; lease = v.lease; parents = v.parents
    }

    var version: KeyVersion { KeyVersion(dot: dot, hlc: hlc, value: tombstone ? nil : value, lease: lease, parents: parents) }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        if try HLCFields.read(field, wt, &r, wall: 2, into: &hlc) { return }
        switch field {
        case 1: dot = (try r.readMessage(wt, field: field) as DotMessage).dot
        case 4: value = try r.readBytes(wt, field: field)
        case 5: tombstone = try r.readBool(wt, field: field)
        case 6: lease = try r.readInt64(wt, field: field)
        case 7: parents.append((try r.readMessage(wt, field: field) as DotMessage).dot)
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.messageField(1, DotMessage(dot))
        v.int64(2, hlc.wallMilliseconds)
        v.uint32(3, hlc.logical)
        v.bytes(4, value)
        v.bool(5, tombstone)
        v.int64(6, lease)
        for p in parents { v.messageField(7, DotMessage(p)) }
    }
}

struct KeyStateMessage: ProtoMessage {
    var key: [UInt8] = []
    /// The DAG's own storage when encoding (no copy per key).
    var versions = CompactArray<KeyVersion>()

    init() {}
    init(key: [UInt8], dag: KeyVersionDAG) {
        self.key = key
        versions = dag.versions
    }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: key = try r.readBytes(wt, field: field)
        case 2: versions.append((try r.readMessage(wt, field: field) as VersionMessage).version)
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.bytes(1, key)
        for version in versions { v.messageField(2, VersionMessage(version)) }
    }
}

struct LeaseGrantMessage: ProtoMessage {
    var id: Int64 = 0
    var grant = LeaseTable.Grant(dot: Dot(member: 0, seq: 0), hlc: .zero, ttlSeconds: 0, expiresAtMilliseconds: 0)

    init() {}
    init(id: Int64, grant: LeaseTable.Grant) {
        self.id = id
        self.grant = grant
    }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        if try HLCFields.read(field, wt, &r, wall: 3, into: &grant.hlc) { return }
        switch field {
        case 1: id = try r.readInt64(wt, field: field)
        case 2: grant.dot = (try r.readMessage(wt, field: field) as DotMessage).dot
        case 5: grant.ttlSeconds = try r.readInt64(wt, field: field)
        case 6: grant.expiresAtMilliseconds = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, id)
        v.messageField(2, DotMessage(grant.dot))
        v.int64(3, grant.hlc.wallMilliseconds)
        v.uint32(4, grant.hlc.logical)
        v.int64(5, grant.ttlSeconds)
        v.int64(6, grant.expiresAtMilliseconds)
    }
}

struct MemberRecordMessage: ProtoMessage {
    var record = MemberTable.Record(id: 0)
    /// The added part's fields (1–8), present when `added` is.
    private var added = MemberTable.ClusterPart(member: Member(id: 0), hlc: .zero, dot: Dot(member: 0, seq: 0))

    init() {}
    init(_ record: MemberTable.Record) {
        self.record = record
        if let a = record.added { added = a }
    }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        if try HLCFields.read(field, wt, &r, wall: 2, into: &added.hlc) { record.added = added; return }
        switch field {
        case 1: added.dot = (try r.readMessage(wt, field: field) as DotMessage).dot
        case 4: record.id = try r.readUInt64(wt, field: field); return
        case 5: added.member.name = try r.readString(wt, field: field)
        case 6: added.member.peerURLs.append(try r.readString(wt, field: field))
        case 7: _ = try r.readString(wt, field: field); return  // client URLs: older form, unused
        case 8: added.member.isLearner = try r.readBool(wt, field: field)
        case 9: record.published = (try r.readMessage(wt, field: field) as PublishedMessage).published; return
        case 10: record.updated = (try r.readMessage(wt, field: field) as UpdatedMessage).updated; return
        default: try r.skip(wt, field: field); return
        }
        record.added = added
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        if let a = record.added {
            v.messageField(1, DotMessage(a.dot))
            v.int64(2, a.hlc.wallMilliseconds)
            v.uint32(3, a.hlc.logical)
        }
        v.uint64(4, record.id)
        if let a = record.added {
            v.string(5, a.member.name)
            v.repeatedStrings(6, a.member.peerURLs)
            v.bool(8, a.member.isLearner)
        }
        if let p = record.published { v.messageField(9, PublishedMessage(p)) }
        if let u = record.updated { v.messageField(10, UpdatedMessage(u)) }
    }
}

struct UpdatedMessage: ProtoMessage {
    var updated = MemberTable.ClusterPart(member: Member(id: 0), hlc: .zero, dot: Dot(member: 0, seq: 0))

    init() {}
    init(_ updated: MemberTable.ClusterPart) { self.updated = updated }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        if try HLCFields.read(field, wt, &r, wall: 2, into: &updated.hlc) { return }
        switch field {
        case 1: updated.dot = (try r.readMessage(wt, field: field) as DotMessage).dot
        case 4: updated.member.name = try r.readString(wt, field: field)
        case 5: updated.member.peerURLs.append(try r.readString(wt, field: field))
        case 6: updated.member.isLearner = try r.readBool(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.messageField(1, DotMessage(updated.dot))
        v.int64(2, updated.hlc.wallMilliseconds)
        v.uint32(3, updated.hlc.logical)
        v.string(4, updated.member.name)
        v.repeatedStrings(5, updated.member.peerURLs)
        v.bool(6, updated.member.isLearner)
    }
}

struct PublishedMessage: ProtoMessage {
    var published = MemberTable.Published(name: "", clientURLs: [], hlc: .zero, dot: Dot(member: 0, seq: 0))

    init() {}
    init(_ published: MemberTable.Published) { self.published = published }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        if try HLCFields.read(field, wt, &r, wall: 2, into: &published.hlc) { return }
        switch field {
        case 1: published.dot = (try r.readMessage(wt, field: field) as DotMessage).dot
        case 4: published.name = try r.readString(wt, field: field)
        case 5: published.clientURLs.append(try r.readString(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.messageField(1, DotMessage(published.dot))
        v.int64(2, published.hlc.wallMilliseconds)
        v.uint32(3, published.hlc.logical)
        v.string(4, published.name)
        v.repeatedStrings(5, published.clientURLs)
    }
}

struct RemovedMemberMessage: ProtoMessage {
    var id: UInt64 = 0
    var dot = Dot(member: 0, seq: 0)

    init() {}
    init(id: UInt64, dot: Dot) { self.id = id; self.dot = dot }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: id = try r.readUInt64(wt, field: field)
        case 2: dot = (try r.readMessage(wt, field: field) as DotMessage).dot
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.uint64(1, id)
        v.messageField(2, DotMessage(dot))
    }
}

struct ReplicaStateMessage: ProtoMessage, Sendable {
    var member: UInt64 = 0
    var vector = VersionVector()
    var clock = HLC.zero
    var keys: [KeyStateMessage] = []
    var grants: [LeaseGrantMessage] = []
    var members: [MemberRecordMessage] = []
    var removedMembers: [UInt64] = []
    var removed: [RemovedMemberMessage] = []
    var log: [Change] = []
    var pending: [Change] = []
    var logFloor = VersionVector()
    var auth: [AuthEntryMessage] = []
    var authApplied: UInt64 = 0

    init() {}

    init(_ replica: Replica, sortedDAGs: [(key: StoredKey, dag: KeyVersionDAG)]) {
        member = replica.member
        vector = replica.vector
        clock = replica.clock.last
        keys = sortedDAGs.map { KeyStateMessage(key: $0.key.bytes, dag: $0.dag) }
        grants = replica.leaseTable.grants.keys.sorted().flatMap { id in
            replica.leaseTable.grants[id]!.sorted { $0.dot < $1.dot }.map { LeaseGrantMessage(id: id, grant: $0) }
        }
        members = replica.memberTable.records.keys.sorted().map { MemberRecordMessage(replica.memberTable.records[$0]!) }
        // A removal known without its removing change (read from the older form, field 8) is
        // written in that form again: a zero dot would not pass the check on decoding.
        let removals = replica.memberTable.removed
        let unknownDot = Dot(member: 0, seq: 0)
        removed = removals.keys.sorted().filter { removals[$0]! != unknownDot }.map { RemovedMemberMessage(id: $0, dot: removals[$0]!) }
        removedMembers = removals.keys.sorted().filter { removals[$0]! == unknownDot }
        log = replica.log
        pending = replica.pendingChanges
        logFloor = replica.logFloor
        auth = replica.authTable.entries.map { AuthEntryMessage($0.key, $0.value) }.sorted { $0.protoBytes().lexicographicallyPrecedes($1.protoBytes()) }
        authApplied = replica.authTable.applied
    }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        if try HLCFields.read(field, wt, &r, wall: 3, into: &clock) { return }
        switch field {
        case 1: member = try r.readUInt64(wt, field: field)
        case 2: vector = (try r.readMessage(wt, field: field) as VersionVectorMessage).vector
        case 5: keys.append(try r.readMessage(wt, field: field))
        case 6: grants.append(try r.readMessage(wt, field: field))
        case 7: members.append(try r.readMessage(wt, field: field))
        case 8: try r.readRepeatedVarint(wt, field: field, into: &removedMembers)
        case 9: log.append((try r.readMessage(wt, field: field) as ChangeMessage).change)
        case 10: pending.append((try r.readMessage(wt, field: field) as ChangeMessage).change)
        case 11: logFloor = (try r.readMessage(wt, field: field) as VersionVectorMessage).vector
        case 12: removed.append(try r.readMessage(wt, field: field))
        case 13: auth.append(try r.readMessage(wt, field: field))
        case 14: authApplied = try r.readUInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.uint64(1, member)
        v.messageField(2, VersionVectorMessage(vector))
        v.int64(3, clock.wallMilliseconds)
        v.uint32(4, clock.logical)
        v.messages(5, keys)
        v.messages(6, grants)
        v.messages(7, members)
        v.packedUInt64(8, removedMembers)
        for c in log { v.messageField(9, ChangeMessage(c)) }
        for c in pending { v.messageField(10, ChangeMessage(c)) }
        v.messageField(11, VersionVectorMessage(logFloor))
        v.messages(12, removed)
        v.messages(13, auth)
        v.uint64(14, authApplied)
    }

    /// Checks the keys and builds their DAGs (the first step of decoding).
    consuming func parts(mergeMode: MergeMode, wallClock: any WallClock, causalBufferLimit: Int,
                         causalBufferBytes: Int) throws(ReplicaStateDecodingError) -> ReplicaStateParts {
        try Self.check(member != 0, "member id 0")
        try Self.check(vector.entries[0] == nil && logFloor.entries[0] == nil, "vector names member 0")
        try Self.check(vector.covers(logFloor), "log floor beyond the vector")
        var sorted: [(key: StoredKey, dag: KeyVersionDAG)] = []
        sorted.reserveCapacity(keys.count)
        var collectable = Set<StoredKey>()
        let keys = self.keys
        self.keys = []
        for k in keys {
            try Self.check(!k.versions.isEmpty, "key without versions")
            for v in k.versions {
                try Self.check(Self.validDot(v.dot) && vector.contains(v.dot), "version \(v.dot.member):\(v.dot.seq) not applied")
                try Self.check(v.parents.allSatisfy(Self.validDot), "invalid parent")
            }
            // Ascending, so also distinct.
            if let previous = sorted.last {
                try Self.check(bytesLess(previous.key.bytes, k.key), "keys out of order or repeated")
            }
            guard let dag = KeyVersionDAG(versions: k.versions, mode: mergeMode) else { throw .inconsistent("versions out of causal order") }
            let key = StoredKey(k.key)
            if dag.isCollectable { collectable.insert(key) }
            sorted.append((key, dag))
        }
        return ReplicaStateParts(keys: sorted, collectable: collectable, rest: self, mergeMode: mergeMode, wallClock: wallClock,
                                 causalBufferLimit: causalBufferLimit, causalBufferBytes: causalBufferBytes)
    }

    static func check(_ ok: Bool, _ what: @autoclosure () -> String) throws(ReplicaStateDecodingError) {
        if !ok { throw .inconsistent(what()) }
    }

    static func validDot(_ d: Dot) -> Bool { d.member != 0 && d.seq != 0 }

    /// Checks the rest of the replica invariants and assembles it around `dags`.
    func replica(dags: StoredKeyMap<KeyVersionDAG>, collectable: Set<StoredKey>, mergeMode: MergeMode, wallClock: any WallClock,
                 causalBufferLimit: Int, causalBufferBytes: Int) throws(ReplicaStateDecodingError) -> Replica {
        var grantsByLease: [Int64: [LeaseTable.Grant]] = [:]
        for g in grants {
            try Self.check(Self.validDot(g.grant.dot) && vector.contains(g.grant.dot), "lease grant not applied")
            grantsByLease[g.id, default: []].append(g.grant)
        }
        var records: [UInt64: MemberTable.Record] = [:]
        for m in members {
            var record = m.record
            // The parts' ids are the record's (not encoded again).
            record.added?.member.id = record.id
            record.updated?.member.id = record.id
            try Self.check(record.id != 0, "member record without an id")
            for dot in [record.added?.dot, record.updated?.dot, record.published?.dot].compactMap({ $0 }) {
                try Self.check(Self.validDot(dot) && vector.contains(dot), "member record not applied")
            }
            try Self.check(records.updateValue(record, forKey: record.id) == nil, "duplicate member")
        }
        // The older form lists removed ids without the removing change: nothing to wait for.
        var removedByID: [UInt64: Dot] = [:]
        for id in removedMembers { removedByID[id] = Dot(member: 0, seq: 0) }
        for r in removed {
            try Self.check(Self.validDot(r.dot) && vector.contains(r.dot), "member removal not applied")
            removedByID[r.id] = r.dot
        }
        var authEntries: [AuthElement: AuthTable.Entry] = [:]
        for a in auth {
            for d in a.entry.adds.map(\.dot) + a.entry.removes { try Self.check(Self.validDot(d) && vector.contains(d), "auth entry not applied") }
            try Self.check(authEntries.updateValue(a.entry, forKey: a.element) == nil, "duplicate auth entry")
        }
        var seen = Set<Dot>()
        for c in log {
            try Self.check(Self.validDot(c.id) && vector.contains(c.id) && !logFloor.contains(c.id), "log entry outside the log's range")
            try Self.check(seen.insert(c.id).inserted, "duplicate log entry")
        }
        var buffer = CausalBuffer(limit: causalBufferLimit, limitBytes: causalBufferBytes)
        for c in pending {
            try Self.check(!vector.contains(c.id), "buffered change already applied")
            do { try Replica.validate(c) } catch { throw .inconsistent("invalid buffered change") }
            try Self.check(buffer.insert(c), "duplicate or too many buffered changes")
        }
        return Replica(member: member, mergeMode: mergeMode, clock: HybridClock(wall: wallClock, last: clock), vector: vector, logFloor: logFloor, dags: dags,
                       collectable: collectable, leaseTable: LeaseTable(grants: grantsByLease), memberTable: MemberTable(records: records, removed: removedByID),
                       authTable: AuthTable(entries: authEntries, applied: authApplied), log: log, buffer: buffer)
    }
}

/// A replica state decoded up to its maps (`ReplicaStateCodec.decodeParts`).
public struct ReplicaStateParts: Sendable {
    /// Every key with its versions, ascending by key bytes.
    public let keys: [(key: StoredKey, dag: KeyVersionDAG)]
    /// The member whose replica this is.
    public var member: UInt64 { rest.member }
    let collectable: Set<StoredKey>
    /// Everything but the keys.
    let rest: ReplicaStateMessage
    let mergeMode: MergeMode
    let wallClock: any WallClock
    let causalBufferLimit: Int
    let causalBufferBytes: Int

    /// Checks the rest of the state and builds the replica: its key map from `keys`.
    public func assemble() throws(ReplicaStateDecodingError) -> Replica {
        var dags = StoredKeyMap<KeyVersionDAG>()
        dags.reserveCapacity(keys.count)
        for (key, dag) in keys { dags.updateValue(dag, forKey: key) }
        return try rest.replica(dags: dags, collectable: collectable, mergeMode: mergeMode, wallClock: wallClock,
                                causalBufferLimit: causalBufferLimit, causalBufferBytes: causalBufferBytes)
    }
}
