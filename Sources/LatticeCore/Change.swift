import ProtoWire

/// The identity of a change: (origin member, sequence number). Sequence numbers of one member are
/// dense: 1, 2, 3, …
public struct Dot: Hashable, Comparable, Sendable {
    public var member: UInt64
    public var seq: UInt64

    public init(member: UInt64, seq: UInt64) {
        self.member = member
        self.seq = seq
    }

    public static func < (a: Dot, b: Dot) -> Bool { (a.member, a.seq) < (b.member, b.seq) }
}

/// member id → highest sequence number applied contiguously from that member.
public struct VersionVector: Hashable, Sendable {
    public private(set) var entries: [UInt64: UInt64] = [:]

    public init(_ entries: [UInt64: UInt64] = [:]) { self.entries = entries }

    public subscript(member: UInt64) -> UInt64 {
        get { entries[member] ?? 0 }
        set { entries[member] = newValue == 0 ? nil : newValue }
    }

    public func contains(_ dot: Dot) -> Bool { self[dot.member] >= dot.seq }

    /// Whether every entry of `other` is covered by this vector.
    public func covers(_ other: VersionVector) -> Bool {
        other.entries.allSatisfy { self[$0.key] >= $0.value }
    }

    /// The pointwise maximum.
    public func merged(with other: VersionVector) -> VersionVector {
        var out = self
        for (m, s) in other.entries where s > out[m] { out[m] = s }
        return out
    }
}

/// One operation of a change (docs/architecture.md). Semantics when applied: see `Replica`,
/// `KeyVersionDAG`, `LeaseTable` and `MemberTable`.
public enum Op: Hashable, Sendable {
    /// A new version of `key`; `parents` are the versions of the key the writer saw (its heads).
    case put(key: [UInt8], value: [UInt8], lease: Int64, parents: [Dot])
    /// A tombstone version of `key`.
    case delete(key: [UInt8], parents: [Dot])
    case leaseGrant(id: Int64, ttlSeconds: Int64)
    /// Revokes the grants of `id` the change had seen. Deleting the attached keys is up to the
    /// writer: it adds `delete` ops for them to the same change (`Replica.revokeOps(lease:)`).
    case leaseRevoke(id: Int64)
    case leaseCheckpoint(id: Int64, expiresAtMilliseconds: Int64)
    /// Sets a member's record (last writer wins). Add and update only differ in intent.
    case memberAdd(Member)
    case memberUpdate(Member)
    /// Removes a member for good.
    case memberRemove(id: UInt64)
    /// A member's own attributes (name, client URLs), published by that member; peer URLs and
    /// the learner flag in it are ignored.
    case memberPublish(Member)
    /// A change to users, roles, permissions or the enabled flag (`AuthTable`).
    case auth(AuthOp)

    /// The key a put or delete writes, nil for other ops.
    public var key: [UInt8]? {
        switch self {
        case .put(let key, _, _, _), .delete(let key, _): return key
        default: return nil
        }
    }
}

/// The one unit of replication, persistence and atomicity: one etcd write request (Put,
/// DeleteRange, Txn, lease operation) is one change. Encoded with ProtoWire as described in
/// `Protos/lattice/change.proto`; the same bytes go to the WAL and to peers.
public struct Change: Hashable, Sendable {
    public var id: Dot
    /// The origin's version vector when it created the change (excluding the change itself).
    public var deps: VersionVector
    public var hlc: HLC
    public var ops: [Op]

    public init(id: Dot, deps: VersionVector, hlc: HLC, ops: [Op]) {
        self.id = id
        self.deps = deps
        self.hlc = hlc
        self.ops = ops
    }

    /// A cheap estimate of the change's size in memory and on the wire, for byte budgets
    /// (causal buffer, peer batches). Not exact; never less than 32.
    public var approximateBytes: Int {
        var n = 32 + 16 * deps.entries.count
        for op in ops {
            switch op {
            case .put(let key, let value, _, let parents): n += 24 + key.count + value.count + 16 * parents.count
            case .delete(let key, let parents): n += 16 + key.count + 16 * parents.count
            case .memberAdd(let m), .memberUpdate(let m), .memberPublish(let m):
                n += 32 + m.name.utf8.count + m.peerURLs.reduce(0) { $0 + $1.utf8.count } + m.clientURLs.reduce(0) { $0 + $1.utf8.count }
            case .auth: n += 128
            default: n += 24
            }
        }
        return n
    }

    /// Decodes the wire/WAL form. Malformed bytes throw, never trap; so does an op of a kind this
    /// version does not know (from a newer version): skipping it would make this member hold a
    /// different change under the same dot than the members that understood it, and relay
    /// that. Semantic checks happen when the change is applied
    /// (`Replica.apply(remote:)`).
    public init(protoBytes: [UInt8]) throws(ProtoDecodingError) {
        self = try ChangeMessage(protoBytes: protoBytes).change
    }

    /// The wire/WAL form (`Protos/lattice/change.proto`).
    public func protoBytes() -> [UInt8] { ChangeMessage(self).protoBytes() }
}

// MARK: wire encoding (Protos/lattice/change.proto)

/// Wire form of `Dot`: { 1: member, 2: seq }.
public struct DotMessage: ProtoMessage {
    public var dot = Dot(member: 0, seq: 0)
    public init() {}
    public init(_ dot: Dot) { self.dot = dot }
    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: dot.member = try r.readUInt64(wt, field: field)
        case 2: dot.seq = try r.readUInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }
    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.uint64(1, dot.member)
        v.uint64(2, dot.seq)
    }
}

public struct VersionVectorMessage: ProtoMessage {
    public var vector = VersionVector()
    public init() {}
    public init(_ vector: VersionVector) { self.vector = vector }
    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1:
            let entry: DotMessage = try r.readMessage(wt, field: field)
            vector[entry.dot.member] = entry.dot.seq
        default: try r.skip(wt, field: field)
        }
    }
    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        for (member, seq) in vector.entries.sorted(by: { $0.key < $1.key }) {
            v.messageField(1, DotMessage(Dot(member: member, seq: seq)))
        }
    }
}

struct OpMessage: ProtoMessage {
    var op: Op?
    init() {}
    init(_ op: Op) { self.op = op }

    // Field layout: 1 kind, 2 key, 3 value, 4 lease/id, 5 parents, 6 ttl, 7 expiresAt,
    // 8 member id, 9 member name, 10 peer URLs, 11 client URLs, 12 is learner, 13 auth op.
    private(set) var kind: Int32 = 0
    private var key: [UInt8] = []
    private var value: [UInt8] = []
    private var id: Int64 = 0
    private var parents: [Dot] = []
    private var ttl: Int64 = 0
    private var expiresAt: Int64 = 0
    private var member = Member(id: 0)
    private var auth: AuthOp?

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: kind = try r.readInt32(wt, field: field)
        case 2: key = try r.readBytes(wt, field: field)
        case 3: value = try r.readBytes(wt, field: field)
        case 4: id = try r.readInt64(wt, field: field)
        case 5: parents.append((try r.readMessage(wt, field: field) as DotMessage).dot)
        case 6: ttl = try r.readInt64(wt, field: field)
        case 7: expiresAt = try r.readInt64(wt, field: field)
        case 8: member.id = try r.readUInt64(wt, field: field)
        case 9: member.name = try r.readString(wt, field: field)
        case 10: member.peerURLs.append(try r.readString(wt, field: field))
        case 11: member.clientURLs.append(try r.readString(wt, field: field))
        case 12: member.isLearner = try r.readBool(wt, field: field)
        case 13:
            guard let op = (try r.readMessage(wt, field: field) as AuthOpMessage).op else { throw .unsupported("auth op of unknown kind") }
            auth = op
        default: try r.skip(wt, field: field)
        }
        switch kind {
        case 1: op = .put(key: key, value: value, lease: id, parents: parents)
        case 2: op = .delete(key: key, parents: parents)
        case 3: op = .leaseGrant(id: id, ttlSeconds: ttl)
        case 4: op = .leaseRevoke(id: id)
        case 5: op = .leaseCheckpoint(id: id, expiresAtMilliseconds: expiresAt)
        case 6: op = .memberAdd(member)
        case 7: op = .memberUpdate(member)
        case 8: op = .memberRemove(id: member.id)
        case 9: op = .memberPublish(member)
        case 10: op = auth.map(Op.auth)
        default: op = nil
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        switch op {
        case .put(let key, let value, let lease, let parents)?:
            v.int32(1, 1); v.bytes(2, key); v.bytes(3, value); v.int64(4, lease)
            for p in parents { v.messageField(5, DotMessage(p)) }
        case .delete(let key, let parents)?:
            v.int32(1, 2); v.bytes(2, key)
            for p in parents { v.messageField(5, DotMessage(p)) }
        case .leaseGrant(let id, let ttl)?:
            v.int32(1, 3); v.int64(4, id); v.int64(6, ttl)
        case .leaseRevoke(let id)?:
            v.int32(1, 4); v.int64(4, id)
        case .leaseCheckpoint(let id, let expiresAt)?:
            v.int32(1, 5); v.int64(4, id); v.int64(7, expiresAt)
        case .memberAdd(let m)?:
            v.int32(1, 6); OpMessage.traverseMember(m, &v)
        case .memberUpdate(let m)?:
            v.int32(1, 7); OpMessage.traverseMember(m, &v)
        case .memberRemove(let id)?:
            v.int32(1, 8); v.uint64(8, id)
        case .memberPublish(let m)?:
            v.int32(1, 9); OpMessage.traverseMember(m, &v)
        case .auth(let a)?:
            v.int32(1, 10); v.messageField(13, AuthOpMessage(a))
        case nil:
            break
        }
    }

    private static func traverseMember<V: ProtoVisitor>(_ m: Member, _ v: inout V) {
        v.uint64(8, m.id)
        v.string(9, m.name)
        v.repeatedStrings(10, m.peerURLs)
        v.repeatedStrings(11, m.clientURLs)
        v.bool(12, m.isLearner)
    }
}

/// Wire form of `Change`.
public struct ChangeMessage: ProtoMessage {
    public var change = Change(id: Dot(member: 0, seq: 0), deps: VersionVector(), hlc: .zero, ops: [])

    public init() {}
    public init(_ change: Change) { self.change = change }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: change.id = (try r.readMessage(wt, field: field) as DotMessage).dot
        case 2: change.deps = (try r.readMessage(wt, field: field) as VersionVectorMessage).vector
        case 3: change.hlc.wallMilliseconds = try r.readInt64(wt, field: field)
        case 4: change.hlc.logical = try r.readUInt32(wt, field: field)
        case 5:
            let op: OpMessage = try r.readMessage(wt, field: field)
            guard let decoded = op.op else { throw .unsupported("change op of unknown kind \(op.kind)") }
            change.ops.append(decoded)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.messageField(1, DotMessage(change.id))
        v.messageField(2, VersionVectorMessage(change.deps))
        v.int64(3, change.hlc.wallMilliseconds)
        v.uint32(4, change.hlc.logical)
        for op in change.ops { v.messageField(5, OpMessage(op)) }
    }
}
