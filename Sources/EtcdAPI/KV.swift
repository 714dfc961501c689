import ProtoWire

// etcdserverpb KV service messages and mvccpb (Protos/etcd/rpc.proto, Protos/etcd/kv.proto).
// Field numbers are etcd's; field names are the proto names in lowerCamelCase.

public struct ResponseHeader: ProtoMessage, Hashable {
    public var clusterID: UInt64 = 0
    public var memberID: UInt64 = 0
    public var revision: Int64 = 0
    public var raftTerm: UInt64 = 0

    public init() {}
    public init(clusterID: UInt64, memberID: UInt64, revision: Int64, raftTerm: UInt64) {
        self.clusterID = clusterID
        self.memberID = memberID
        self.revision = revision
        self.raftTerm = raftTerm
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: clusterID = try r.readUInt64(wt, field: field)
        case 2: memberID = try r.readUInt64(wt, field: field)
        case 3: revision = try r.readInt64(wt, field: field)
        case 4: raftTerm = try r.readUInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.uint64(1, clusterID)
        v.uint64(2, memberID)
        v.int64(3, revision)
        v.uint64(4, raftTerm)
    }
}

/// mvccpb.KeyValue
public struct KeyValue: ProtoMessage, Hashable {
    public var key: [UInt8] = []
    public var createRevision: Int64 = 0
    public var modRevision: Int64 = 0
    public var version: Int64 = 0
    public var value: [UInt8] = []
    public var lease: Int64 = 0

    public init() {}
    public init(key: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, value: [UInt8], lease: Int64) {
        self.key = key
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.value = value
        self.lease = lease
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: key = try r.readBytes(wt, field: field)
        case 2: createRevision = try r.readInt64(wt, field: field)
        case 3: modRevision = try r.readInt64(wt, field: field)
        case 4: version = try r.readInt64(wt, field: field)
        case 5: value = try r.readBytes(wt, field: field)
        case 6: lease = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.bytes(1, key)
        v.int64(2, createRevision)
        v.int64(3, modRevision)
        v.int64(4, version)
        v.bytes(5, value)
        v.int64(6, lease)
    }
}

/// mvccpb.Event
public struct Event: ProtoMessage, Hashable {
    public struct EventType: RawRepresentable, Hashable, Sendable {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let put = EventType(rawValue: 0)
        public static let delete = EventType(rawValue: 1)
    }

    public var type: EventType = .put
    public var kv: KeyValue?
    public var prevKV: KeyValue?

    public init() {}
    public init(type: EventType, kv: KeyValue?, prevKV: KeyValue? = nil) {
        self.type = type
        self.kv = kv
        self.prevKV = prevKV
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: type = EventType(rawValue: try r.readInt32(wt, field: field))
        case 2: kv = try r.readMessage(wt, field: field)
        case 3: prevKV = try r.readMessage(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int32(1, type.rawValue)
        v.message(2, kv)
        v.message(3, prevKV)
    }
}

public struct RangeRequest: ProtoMessage, Hashable {
    public struct SortOrder: RawRepresentable, Hashable, Sendable {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let none = SortOrder(rawValue: 0)
        public static let ascend = SortOrder(rawValue: 1)
        public static let descend = SortOrder(rawValue: 2)
    }

    public struct SortTarget: RawRepresentable, Hashable, Sendable {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let key = SortTarget(rawValue: 0)
        public static let version = SortTarget(rawValue: 1)
        public static let create = SortTarget(rawValue: 2)
        public static let mod = SortTarget(rawValue: 3)
        public static let value = SortTarget(rawValue: 4)
    }

    public var key: [UInt8] = []
    public var rangeEnd: [UInt8] = []
    public var limit: Int64 = 0
    public var revision: Int64 = 0
    public var sortOrder: SortOrder = .none
    public var sortTarget: SortTarget = .key
    public var serializable = false
    public var keysOnly = false
    public var countOnly = false
    public var minModRevision: Int64 = 0
    public var maxModRevision: Int64 = 0
    public var minCreateRevision: Int64 = 0
    public var maxCreateRevision: Int64 = 0

    public init() {}
    public init(key: [UInt8], rangeEnd: [UInt8] = [], limit: Int64 = 0, revision: Int64 = 0) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.limit = limit
        self.revision = revision
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: key = try r.readBytes(wt, field: field)
        case 2: rangeEnd = try r.readBytes(wt, field: field)
        case 3: limit = try r.readInt64(wt, field: field)
        case 4: revision = try r.readInt64(wt, field: field)
        case 5: sortOrder = SortOrder(rawValue: try r.readInt32(wt, field: field))
        case 6: sortTarget = SortTarget(rawValue: try r.readInt32(wt, field: field))
        case 7: serializable = try r.readBool(wt, field: field)
        case 8: keysOnly = try r.readBool(wt, field: field)
        case 9: countOnly = try r.readBool(wt, field: field)
        case 10: minModRevision = try r.readInt64(wt, field: field)
        case 11: maxModRevision = try r.readInt64(wt, field: field)
        case 12: minCreateRevision = try r.readInt64(wt, field: field)
        case 13: maxCreateRevision = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.bytes(1, key)
        v.bytes(2, rangeEnd)
        v.int64(3, limit)
        v.int64(4, revision)
        v.int32(5, sortOrder.rawValue)
        v.int32(6, sortTarget.rawValue)
        v.bool(7, serializable)
        v.bool(8, keysOnly)
        v.bool(9, countOnly)
        v.int64(10, minModRevision)
        v.int64(11, maxModRevision)
        v.int64(12, minCreateRevision)
        v.int64(13, maxCreateRevision)
    }
}

public struct RangeResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var kvs: [KeyValue] = []
    public var more = false
    public var count: Int64 = 0

    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: kvs.append(try r.readMessage(wt, field: field))
        case 3: more = try r.readBool(wt, field: field)
        case 4: count = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.messages(2, kvs)
        v.bool(3, more)
        v.int64(4, count)
    }
}

public struct PutRequest: ProtoMessage, Hashable {
    public var key: [UInt8] = []
    public var value: [UInt8] = []
    public var lease: Int64 = 0
    public var prevKV = false
    public var ignoreValue = false
    public var ignoreLease = false

    public init() {}
    public init(key: [UInt8], value: [UInt8], lease: Int64 = 0, prevKV: Bool = false) {
        self.key = key
        self.value = value
        self.lease = lease
        self.prevKV = prevKV
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: key = try r.readBytes(wt, field: field)
        case 2: value = try r.readBytes(wt, field: field)
        case 3: lease = try r.readInt64(wt, field: field)
        case 4: prevKV = try r.readBool(wt, field: field)
        case 5: ignoreValue = try r.readBool(wt, field: field)
        case 6: ignoreLease = try r.readBool(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.bytes(1, key)
        v.bytes(2, value)
        v.int64(3, lease)
        v.bool(4, prevKV)
        v.bool(5, ignoreValue)
        v.bool(6, ignoreLease)
    }
}

public struct PutResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var prevKV: KeyValue?

    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: prevKV = try r.readMessage(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.message(2, prevKV)
    }
}

public struct DeleteRangeRequest: ProtoMessage, Hashable {
    public var key: [UInt8] = []
    public var rangeEnd: [UInt8] = []
    public var prevKV = false

    public init() {}
    public init(key: [UInt8], rangeEnd: [UInt8] = [], prevKV: Bool = false) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.prevKV = prevKV
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: key = try r.readBytes(wt, field: field)
        case 2: rangeEnd = try r.readBytes(wt, field: field)
        case 3: prevKV = try r.readBool(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.bytes(1, key)
        v.bytes(2, rangeEnd)
        v.bool(3, prevKV)
    }
}

public struct DeleteRangeResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var deleted: Int64 = 0
    public var prevKVs: [KeyValue] = []

    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: deleted = try r.readInt64(wt, field: field)
        case 3: prevKVs.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.int64(2, deleted)
        v.messages(3, prevKVs)
    }
}

public struct RequestOp: ProtoMessage, Hashable {
    public indirect enum Request: Hashable, Sendable {
        case range(RangeRequest)
        case put(PutRequest)
        case deleteRange(DeleteRangeRequest)
        case txn(TxnRequest)
    }

    public var request: Request?

    public init() {}
    public init(_ request: Request) { self.request = request }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: request = .range(try r.readMessage(wt, field: field))
        case 2: request = .put(try r.readMessage(wt, field: field))
        case 3: request = .deleteRange(try r.readMessage(wt, field: field))
        case 4: request = .txn(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        switch request {
        case .range(let m)?: v.messageField(1, m)
        case .put(let m)?: v.messageField(2, m)
        case .deleteRange(let m)?: v.messageField(3, m)
        case .txn(let m)?: v.messageField(4, m)
        case nil: break
        }
    }
}

public struct ResponseOp: ProtoMessage, Hashable {
    public indirect enum Response: Hashable, Sendable {
        case range(RangeResponse)
        case put(PutResponse)
        case deleteRange(DeleteRangeResponse)
        case txn(TxnResponse)
    }

    public var response: Response?

    public init() {}
    public init(_ response: Response) { self.response = response }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: response = .range(try r.readMessage(wt, field: field))
        case 2: response = .put(try r.readMessage(wt, field: field))
        case 3: response = .deleteRange(try r.readMessage(wt, field: field))
        case 4: response = .txn(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        switch response {
        case .range(let m)?: v.messageField(1, m)
        case .put(let m)?: v.messageField(2, m)
        case .deleteRange(let m)?: v.messageField(3, m)
        case .txn(let m)?: v.messageField(4, m)
        case nil: break
        }
    }
}

public struct Compare: ProtoMessage, Hashable {
    public struct CompareResult: RawRepresentable, Hashable, Sendable {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let equal = CompareResult(rawValue: 0)
        public static let greater = CompareResult(rawValue: 1)
        public static let less = CompareResult(rawValue: 2)
        public static let notEqual = CompareResult(rawValue: 3)
    }

    public struct CompareTarget: RawRepresentable, Hashable, Sendable {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let version = CompareTarget(rawValue: 0)
        public static let create = CompareTarget(rawValue: 1)
        public static let mod = CompareTarget(rawValue: 2)
        public static let value = CompareTarget(rawValue: 3)
        public static let lease = CompareTarget(rawValue: 4)
    }

    /// The `target_union` oneof.
    public enum TargetUnion: Hashable, Sendable {
        case version(Int64)
        case createRevision(Int64)
        case modRevision(Int64)
        case value([UInt8])
        case lease(Int64)
    }

    public var result: CompareResult = .equal
    public var target: CompareTarget = .version
    public var key: [UInt8] = []
    public var targetUnion: TargetUnion?
    public var rangeEnd: [UInt8] = []

    public init() {}
    public init(key: [UInt8], target: CompareTarget, result: CompareResult, _ union: TargetUnion, rangeEnd: [UInt8] = []) {
        self.key = key
        self.target = target
        self.result = result
        self.targetUnion = union
        self.rangeEnd = rangeEnd
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: result = CompareResult(rawValue: try r.readInt32(wt, field: field))
        case 2: target = CompareTarget(rawValue: try r.readInt32(wt, field: field))
        case 3: key = try r.readBytes(wt, field: field)
        case 4: targetUnion = .version(try r.readInt64(wt, field: field))
        case 5: targetUnion = .createRevision(try r.readInt64(wt, field: field))
        case 6: targetUnion = .modRevision(try r.readInt64(wt, field: field))
        case 7: targetUnion = .value(try r.readBytes(wt, field: field))
        case 8: targetUnion = .lease(try r.readInt64(wt, field: field))
        case 64: rangeEnd = try r.readBytes(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int32(1, result.rawValue)
        v.int32(2, target.rawValue)
        v.bytes(3, key)
        switch targetUnion {
        case .version(let x)?: v.varintField(4, UInt64(bitPattern: x))
        case .createRevision(let x)?: v.varintField(5, UInt64(bitPattern: x))
        case .modRevision(let x)?: v.varintField(6, UInt64(bitPattern: x))
        case .value(let x)?: v.bytesField(7, x)
        case .lease(let x)?: v.varintField(8, UInt64(bitPattern: x))
        case nil: break
        }
        v.bytes(64, rangeEnd)
    }
}

public struct TxnRequest: ProtoMessage, Hashable {
    public var compare: [Compare] = []
    public var success: [RequestOp] = []
    public var failure: [RequestOp] = []

    public init() {}
    public init(compare: [Compare], success: [RequestOp], failure: [RequestOp] = []) {
        self.compare = compare
        self.success = success
        self.failure = failure
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: compare.append(try r.readMessage(wt, field: field))
        case 2: success.append(try r.readMessage(wt, field: field))
        case 3: failure.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.messages(1, compare)
        v.messages(2, success)
        v.messages(3, failure)
    }
}

public struct TxnResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var succeeded = false
    public var responses: [ResponseOp] = []

    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: succeeded = try r.readBool(wt, field: field)
        case 3: responses.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.bool(2, succeeded)
        v.messages(3, responses)
    }
}

public struct CompactionRequest: ProtoMessage, Hashable {
    public var revision: Int64 = 0
    public var physical = false

    public init() {}
    public init(revision: Int64, physical: Bool = false) {
        self.revision = revision
        self.physical = physical
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: revision = try r.readInt64(wt, field: field)
        case 2: physical = try r.readBool(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, revision)
        v.bool(2, physical)
    }
}

public struct CompactionResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?

    public init() {}

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
