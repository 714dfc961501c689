import ProtoWire

// etcdserverpb Maintenance service messages (Protos/etcd/rpc.proto).
// Field numbers are etcd's; field names are the proto names in lowerCamelCase.
// Fields that etcd added after 3.5 (noted "etcd 3.6") are included so that a newer client sees
// them; older clients skip them as unknown fields.

/// etcdserverpb.AlarmType (a top-level enum).
public struct AlarmType: RawRepresentable, Hashable, Sendable {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    /// Default; in a GET request, matches any alarm.
    public static let none = AlarmType(rawValue: 0)
    /// The space quota is exhausted.
    public static let noSpace = AlarmType(rawValue: 1)
    /// Key-value store corruption was detected.
    public static let corrupt = AlarmType(rawValue: 2)
}

public struct AlarmRequest: ProtoMessage, Hashable {
    public struct AlarmAction: RawRepresentable, Hashable, Sendable {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let get = AlarmAction(rawValue: 0)
        public static let activate = AlarmAction(rawValue: 1)
        public static let deactivate = AlarmAction(rawValue: 2)
    }

    public var action: AlarmAction = .get
    /// 0 means all members.
    public var memberID: UInt64 = 0
    public var alarm: AlarmType = .none

    public init() {}
    public init(action: AlarmAction, memberID: UInt64 = 0, alarm: AlarmType = .none) {
        self.action = action
        self.memberID = memberID
        self.alarm = alarm
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: action = AlarmAction(rawValue: try r.readInt32(wt, field: field))
        case 2: memberID = try r.readUInt64(wt, field: field)
        case 3: alarm = AlarmType(rawValue: try r.readInt32(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int32(1, action.rawValue)
        v.uint64(2, memberID)
        v.int32(3, alarm.rawValue)
    }
}

public struct AlarmMember: ProtoMessage, Hashable {
    public var memberID: UInt64 = 0
    public var alarm: AlarmType = .none

    public init() {}
    public init(memberID: UInt64, alarm: AlarmType) {
        self.memberID = memberID
        self.alarm = alarm
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: memberID = try r.readUInt64(wt, field: field)
        case 2: alarm = AlarmType(rawValue: try r.readInt32(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.uint64(1, memberID)
        v.int32(2, alarm.rawValue)
    }
}

public struct AlarmResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var alarms: [AlarmMember] = []

    public init() {}
    public init(header: ResponseHeader?, alarms: [AlarmMember]) {
        self.header = header
        self.alarms = alarms
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: alarms.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.messages(2, alarms)
    }
}

/// No fields.
public struct StatusRequest: ProtoMessage, Hashable {
    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        try r.skip(wt, field: field)
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {}
}

/// etcd 3.6: downgrade state reported in `StatusResponse.downgradeInfo`.
public struct DowngradeInfo: ProtoMessage, Hashable {
    public var enabled = false
    public var targetVersion = ""

    public init() {}
    public init(enabled: Bool, targetVersion: String) {
        self.enabled = enabled
        self.targetVersion = targetVersion
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: enabled = try r.readBool(wt, field: field)
        case 2: targetVersion = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.bool(1, enabled)
        v.string(2, targetVersion)
    }
}

public struct StatusResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    /// The cluster protocol version of the responding member, e.g. "3.5.1".
    public var version = ""
    public var dbSize: Int64 = 0
    public var leader: UInt64 = 0
    public var raftIndex: UInt64 = 0
    public var raftTerm: UInt64 = 0
    public var raftAppliedIndex: UInt64 = 0
    public var errors: [String] = []
    public var dbSizeInUse: Int64 = 0
    public var isLearner = false
    /// etcd 3.6.
    public var storageVersion = ""
    /// etcd 3.6.
    public var dbSizeQuota: Int64 = 0
    /// etcd 3.6.
    public var downgradeInfo: DowngradeInfo?

    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: version = try r.readString(wt, field: field)
        case 3: dbSize = try r.readInt64(wt, field: field)
        case 4: leader = try r.readUInt64(wt, field: field)
        case 5: raftIndex = try r.readUInt64(wt, field: field)
        case 6: raftTerm = try r.readUInt64(wt, field: field)
        case 7: raftAppliedIndex = try r.readUInt64(wt, field: field)
        case 8: errors.append(try r.readString(wt, field: field))
        case 9: dbSizeInUse = try r.readInt64(wt, field: field)
        case 10: isLearner = try r.readBool(wt, field: field)
        case 11: storageVersion = try r.readString(wt, field: field)
        case 12: dbSizeQuota = try r.readInt64(wt, field: field)
        case 13: downgradeInfo = try r.readMessage(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.string(2, version)
        v.int64(3, dbSize)
        v.uint64(4, leader)
        v.uint64(5, raftIndex)
        v.uint64(6, raftTerm)
        v.uint64(7, raftAppliedIndex)
        v.repeatedStrings(8, errors)
        v.int64(9, dbSizeInUse)
        v.bool(10, isLearner)
        v.string(11, storageVersion)
        v.int64(12, dbSizeQuota)
        v.message(13, downgradeInfo)
    }
}

/// No fields.
public struct DefragmentRequest: ProtoMessage, Hashable {
    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        try r.skip(wt, field: field)
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {}
}

public struct DefragmentResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?

    public init() {}
    public init(header: ResponseHeader?) { self.header = header }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
    }
}

/// No fields.
public struct HashRequest: ProtoMessage, Hashable {
    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        try r.skip(wt, field: field)
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {}
}

public struct HashResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var hash: UInt32 = 0

    public init() {}
    public init(header: ResponseHeader?, hash: UInt32) {
        self.header = header
        self.hash = hash
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: hash = try r.readUInt32(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.uint32(2, hash)
    }
}

public struct HashKVRequest: ProtoMessage, Hashable {
    public var revision: Int64 = 0

    public init() {}
    public init(revision: Int64) { self.revision = revision }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: revision = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, revision)
    }
}

public struct HashKVResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var hash: UInt32 = 0
    public var compactRevision: Int64 = 0
    /// etcd 3.6: the revision up to which the hash was computed.
    public var hashRevision: Int64 = 0

    public init() {}
    public init(header: ResponseHeader?, hash: UInt32, compactRevision: Int64, hashRevision: Int64 = 0) {
        self.header = header
        self.hash = hash
        self.compactRevision = compactRevision
        self.hashRevision = hashRevision
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: hash = try r.readUInt32(wt, field: field)
        case 3: compactRevision = try r.readInt64(wt, field: field)
        case 4: hashRevision = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.uint32(2, hash)
        v.int64(3, compactRevision)
        v.int64(4, hashRevision)
    }
}

/// No fields.
public struct SnapshotRequest: ProtoMessage, Hashable {
    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        try r.skip(wt, field: field)
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {}
}

public struct SnapshotResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    /// Number of blob bytes still to be sent after this message.
    public var remainingBytes: UInt64 = 0
    public var blob: [UInt8] = []
    /// etcd 3.6: the server version that created the snapshot.
    public var version = ""

    public init() {}
    public init(header: ResponseHeader?, remainingBytes: UInt64, blob: [UInt8], version: String = "") {
        self.header = header
        self.remainingBytes = remainingBytes
        self.blob = blob
        self.version = version
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: remainingBytes = try r.readUInt64(wt, field: field)
        case 3: blob = try r.readBytes(wt, field: field)
        case 4: version = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.uint64(2, remainingBytes)
        v.bytes(3, blob)
        v.string(4, version)
    }
}

public struct MoveLeaderRequest: ProtoMessage, Hashable {
    public var targetID: UInt64 = 0

    public init() {}
    public init(targetID: UInt64) { self.targetID = targetID }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: targetID = try r.readUInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.uint64(1, targetID)
    }
}

public struct MoveLeaderResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?

    public init() {}
    public init(header: ResponseHeader?) { self.header = header }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
    }
}

/// etcd 3.5.
public struct DowngradeRequest: ProtoMessage, Hashable {
    public struct DowngradeAction: RawRepresentable, Hashable, Sendable {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let validate = DowngradeAction(rawValue: 0)
        public static let enable = DowngradeAction(rawValue: 1)
        public static let cancel = DowngradeAction(rawValue: 2)
    }

    public var action: DowngradeAction = .validate
    /// The target version, e.g. "3.4".
    public var version = ""

    public init() {}
    public init(action: DowngradeAction, version: String = "") {
        self.action = action
        self.version = version
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: action = DowngradeAction(rawValue: try r.readInt32(wt, field: field))
        case 2: version = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int32(1, action.rawValue)
        v.string(2, version)
    }
}

/// etcd 3.5.
public struct DowngradeResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    /// The current cluster version.
    public var version = ""

    public init() {}
    public init(header: ResponseHeader?, version: String) {
        self.header = header
        self.version = version
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: version = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.string(2, version)
    }
}
