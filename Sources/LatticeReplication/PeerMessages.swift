import EtcdAPI
import LatticeCore
import ProtoWire

// The peer protocol's messages (Protos/lattice/peer.proto), on ProtoWire.

public enum PeerMethod {
    public static let service = "lattice.peer.v1.Peer"
    public static let sync = "/lattice.peer.v1.Peer/Sync"
    public static let status = "/lattice.peer.v1.Peer/Status"
}

public struct PeerHello: ProtoMessage, Equatable {
    public var clusterID: UInt64 = 0
    public var memberID: UInt64 = 0
    public var name = ""
    public var incarnation: UInt64 = 0
    public var vector = VersionVector()
    public var peerURLs: [String] = []
    public var clientURLs: [String] = []
    /// On a puller's hello: the authors it receives from directly now (as `PeerAck.direct`).
    public var direct: [UInt64] = []

    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: clusterID = try r.readUInt64(wt, field: field)
        case 2: memberID = try r.readUInt64(wt, field: field)
        case 3: name = try r.readString(wt, field: field)
        case 4: incarnation = try r.readUInt64(wt, field: field)
        case 5: vector = (try r.readMessage(wt, field: field) as VersionVectorMessage).vector
        case 6: peerURLs.append(try r.readString(wt, field: field))
        case 7: clientURLs.append(try r.readString(wt, field: field))
        case 8: try r.readRepeatedVarint(wt, field: field, into: &direct)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.uint64(1, clusterID)
        v.uint64(2, memberID)
        v.string(3, name)
        v.uint64(4, incarnation)
        v.messageField(5, VersionVectorMessage(vector))
        v.repeatedStrings(6, peerURLs)
        v.repeatedStrings(7, clientURLs)
        v.packedUInt64(8, direct)
    }
}

public struct PeerAck: ProtoMessage, Equatable {
    public var vector = VersionVector()
    public var processed: UInt64 = 0
    public var resync = false
    /// The incarnations (dot authors) of the other members this puller currently receives from
    /// directly, on a live link of its own: the feeder does not relay their changes (they would
    /// arrive twice). Empty: relay everything.
    public var direct: [UInt64] = []

    public init() {}
    public init(vector: VersionVector, processed: UInt64, resync: Bool) {
        self.vector = vector
        self.processed = processed
        self.resync = resync
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: vector = (try r.readMessage(wt, field: field) as VersionVectorMessage).vector
        case 2: processed = try r.readUInt64(wt, field: field)
        case 3: resync = try r.readBool(wt, field: field)
        case 4: try r.readRepeatedVarint(wt, field: field, into: &direct)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.messageField(1, VersionVectorMessage(vector))
        v.uint64(2, processed)
        v.bool(3, resync)
        v.packedUInt64(4, direct)
    }
}

/// Puller → feeder: the hello first, then acknowledgements.
public struct SyncRequest: ProtoMessage, Equatable {
    public var hello: PeerHello?
    public var ack: PeerAck?

    public init() {}
    public init(hello: PeerHello) { self.hello = hello }
    public init(ack: PeerAck) { self.ack = ack }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: hello = try r.readMessage(wt, field: field)
        case 2: ack = try r.readMessage(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, hello)
        v.message(2, ack)
    }
}

/// A piece of a state transfer: the feeder's encoded replica state, cut into chunks.
public struct StateChunk: ProtoMessage, Equatable {
    public var data: [UInt8] = []
    /// The whole state's size in bytes (every chunk carries it).
    public var totalBytes: UInt64 = 0
    public var last = false

    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: data = try r.readBytes(wt, field: field)
        case 2: totalBytes = try r.readUInt64(wt, field: field)
        case 3: last = try r.readBool(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.bytes(1, data)
        v.uint64(2, totalBytes)
        v.bool(3, last)
    }
}

/// Feeder → puller: the hello first, then batches of changes, reports and state transfers.
public struct SyncResponse: ProtoMessage, Equatable {
    public var hello: PeerHello?
    public var changes: [Change] = []
    /// The encoding of each change (`ChangeMessage`) where it is known, parallel to `changes`
    /// (or empty): a feed sends the bytes the author's WAL record was made of instead of
    /// encoding the change again, and a decoded message keeps the bytes it carried, for the
    /// receiver's WAL record.
    public var changeBytes: [[UInt8]?] = []
    /// The number of this batch on the stream (1, 2, …), for changes and for a state
    /// transfer's last chunk.
    public var batch: UInt64 = 0
    public var report: VersionVector?
    public var state: StateChunk?

    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: hello = try r.readMessage(wt, field: field)
        case 2:
            let (message, bytes) = try r.readMessageKeepingBytes(wt, field: field, as: ChangeMessage.self)
            changeBytes.append(bytes)
            changes.append(message.change)
        case 3: batch = try r.readUInt64(wt, field: field)
        case 4: report = (try r.readMessage(wt, field: field) as VersionVectorMessage).vector
        case 5: state = try r.readMessage(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, hello)
        for (i, c) in changes.enumerated() {
            // The same bytes either way: a known encoding is not made again.
            if i < changeBytes.count, let bytes = changeBytes[i] { v.bytesField(2, bytes) } else { v.messageField(2, ChangeMessage(c)) }
        }
        v.uint64(3, batch)
        if let report { v.messageField(4, VersionVectorMessage(report)) }
        v.message(5, state)
    }
}

/// Status request: `skip_state_hash` leaves out the O(keys) state hash (for polling the vectors).
public struct PeerStatusRequest: ProtoMessage, Equatable {
    public var skipStateHash = false

    public init() {}
    public init(skipStateHash: Bool) { self.skipStateHash = skipStateHash }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: skipStateHash = try r.readBool(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.bool(1, skipStateHash)
    }
}

public struct PeerStatusMessage: ProtoMessage, Equatable {
    public var memberID: UInt64 = 0
    public var name = ""
    public var connected = false
    public var lagChanges: UInt64 = 0
    public var lagSeconds: Double = 0
    public var vector = VersionVector()

    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: memberID = try r.readUInt64(wt, field: field)
        case 2: name = try r.readString(wt, field: field)
        case 3: connected = try r.readBool(wt, field: field)
        case 4: lagChanges = try r.readUInt64(wt, field: field)
        case 5: lagSeconds = Double(bitPattern: try r.readFixed64Field(wt, field: field))
        case 6: vector = (try r.readMessage(wt, field: field) as VersionVectorMessage).vector
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.uint64(1, memberID)
        v.string(2, name)
        v.bool(3, connected)
        v.uint64(4, lagChanges)
        v.fixed64(5, lagSeconds.bitPattern)
        v.messageField(6, VersionVectorMessage(vector))
    }
}

public struct PeerStatusResponse: ProtoMessage, Equatable {
    public var clusterID: UInt64 = 0
    public var memberID: UInt64 = 0
    public var name = ""
    public var incarnation: UInt64 = 0
    public var revision: Int64 = 0
    public var stateHash: [UInt8] = []
    public var vector = VersionVector()
    public var peers: [PeerStatusMessage] = []
    public var pendingChanges: UInt64 = 0
    public var logEntries: UInt64 = 0
    public var keys: Int64 = 0
    /// The cluster's members as this member knows them (a member joining with
    /// `--initial-cluster-state existing` learns its id and the cluster id from this).
    public var members: [LatticeCore.Member] = []
    /// How concurrent writes were resolved since start: whole values by last writer wins,
    /// field-level merges, and values inside merges taken from the last writer.
    public var lastWriterWins: UInt64 = 0
    public var merges: UInt64 = 0
    public var mergeConflicts: UInt64 = 0
    /// Changes received from peers since start, and how many of them were already held here
    /// (the same change arriving from its author and relayed by another member).
    public var changesReceived: UInt64 = 0
    public var duplicatesReceived: UInt64 = 0

    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 12: members.append(LatticeCore.Member(try r.readMessage(wt, field: field) as EtcdAPI.Member))
        case 13: lastWriterWins = try r.readUInt64(wt, field: field)
        case 14: merges = try r.readUInt64(wt, field: field)
        case 15: mergeConflicts = try r.readUInt64(wt, field: field)
        case 16: changesReceived = try r.readUInt64(wt, field: field)
        case 17: duplicatesReceived = try r.readUInt64(wt, field: field)
        case 1: clusterID = try r.readUInt64(wt, field: field)
        case 2: memberID = try r.readUInt64(wt, field: field)
        case 3: name = try r.readString(wt, field: field)
        case 4: incarnation = try r.readUInt64(wt, field: field)
        case 5: revision = try r.readInt64(wt, field: field)
        case 6: stateHash = try r.readBytes(wt, field: field)
        case 7: vector = (try r.readMessage(wt, field: field) as VersionVectorMessage).vector
        case 8: peers.append(try r.readMessage(wt, field: field))
        case 9: pendingChanges = try r.readUInt64(wt, field: field)
        case 10: logEntries = try r.readUInt64(wt, field: field)
        case 11: keys = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.uint64(1, clusterID)
        v.uint64(2, memberID)
        v.string(3, name)
        v.uint64(4, incarnation)
        v.int64(5, revision)
        v.bytes(6, stateHash)
        v.messageField(7, VersionVectorMessage(vector))
        v.messages(8, peers)
        v.uint64(9, pendingChanges)
        v.uint64(10, logEntries)
        v.int64(11, keys)
        for m in members { v.messageField(12, EtcdAPI.Member(m)) }
        v.uint64(13, lastWriterWins)
        v.uint64(14, merges)
        v.uint64(15, mergeConflicts)
        v.uint64(16, changesReceived)
        v.uint64(17, duplicatesReceived)
    }
}

extension EtcdAPI.Member {
    /// etcd's form of a member (its wire form too: the peer Status reuses etcd's `Member`).
    public init(_ m: LatticeCore.Member) {
        self.init(id: m.id, name: m.name, peerURLs: m.peerURLs, clientURLs: m.clientURLs, isLearner: m.isLearner)
    }
}

extension LatticeCore.Member {
    public init(_ m: EtcdAPI.Member) {
        self.init(id: m.id, name: m.name, peerURLs: m.peerURLs, clientURLs: m.clientURLs, isLearner: m.isLearner)
    }
}

extension VersionVector {
    /// How many changes `self` has that `other` lacks (by the vectors).
    public func changesAhead(of other: VersionVector) -> UInt64 {
        entries.reduce(0) { $0 + ($1.value > other[$1.key] ? $1.value - other[$1.key] : 0) }
    }
}
