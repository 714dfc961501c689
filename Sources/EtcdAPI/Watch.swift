import ProtoWire

// etcdserverpb Watch service messages (Protos/etcd/rpc.proto).
// Field numbers are etcd's; field names are the proto names in lowerCamelCase.

public struct WatchRequest: ProtoMessage, Hashable {
    /// The `request_union` oneof.
    public enum RequestUnion: Hashable, Sendable {
        case createRequest(WatchCreateRequest)
        case cancelRequest(WatchCancelRequest)
        case progressRequest(WatchProgressRequest)
    }

    public var requestUnion: RequestUnion?

    public init() {}
    public init(_ requestUnion: RequestUnion) { self.requestUnion = requestUnion }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: requestUnion = .createRequest(try r.readMessage(wt, field: field))
        case 2: requestUnion = .cancelRequest(try r.readMessage(wt, field: field))
        case 3: requestUnion = .progressRequest(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        switch requestUnion {
        case .createRequest(let m)?: v.messageField(1, m)
        case .cancelRequest(let m)?: v.messageField(2, m)
        case .progressRequest(let m)?: v.messageField(3, m)
        case nil: break
        }
    }
}

public struct WatchCreateRequest: ProtoMessage, Hashable {
    public struct FilterType: RawRepresentable, Hashable, Sendable {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        /// Filter out put events.
        public static let noPut = FilterType(rawValue: 0)
        /// Filter out delete events.
        public static let noDelete = FilterType(rawValue: 1)
    }

    public var key: [UInt8] = []
    public var rangeEnd: [UInt8] = []
    public var startRevision: Int64 = 0
    public var progressNotify = false
    /// Repeated enum: written packed (as etcd does), read packed or unpacked.
    public var filters: [FilterType] = []
    public var prevKV = false
    public var watchID: Int64 = 0
    public var fragment = false

    public init() {}
    public init(
        key: [UInt8], rangeEnd: [UInt8] = [], startRevision: Int64 = 0, progressNotify: Bool = false,
        filters: [FilterType] = [], prevKV: Bool = false, watchID: Int64 = 0, fragment: Bool = false
    ) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.startRevision = startRevision
        self.progressNotify = progressNotify
        self.filters = filters
        self.prevKV = prevKV
        self.watchID = watchID
        self.fragment = fragment
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: key = try r.readBytes(wt, field: field)
        case 2: rangeEnd = try r.readBytes(wt, field: field)
        case 3: startRevision = try r.readInt64(wt, field: field)
        case 4: progressNotify = try r.readBool(wt, field: field)
        case 5:
            var raw: [UInt64] = []
            try r.readRepeatedVarint(wt, field: field, into: &raw)
            for x in raw { filters.append(FilterType(rawValue: Int32(truncatingIfNeeded: x))) }
        case 6: prevKV = try r.readBool(wt, field: field)
        case 7: watchID = try r.readInt64(wt, field: field)
        case 8: fragment = try r.readBool(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.bytes(1, key)
        v.bytes(2, rangeEnd)
        v.int64(3, startRevision)
        v.bool(4, progressNotify)
        if !filters.isEmpty {
            v.packedVarintField(5, filters.map { UInt64(bitPattern: Int64($0.rawValue)) })
        }
        v.bool(6, prevKV)
        v.int64(7, watchID)
        v.bool(8, fragment)
    }
}

public struct WatchCancelRequest: ProtoMessage, Hashable {
    public var watchID: Int64 = 0

    public init() {}
    public init(watchID: Int64) { self.watchID = watchID }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: watchID = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, watchID)
    }
}

/// Asks for a progress notification on the whole watch stream (no fields).
public struct WatchProgressRequest: ProtoMessage, Hashable {
    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        try r.skip(wt, field: field)
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {}
}

public struct WatchResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var watchID: Int64 = 0
    public var created = false
    public var canceled = false
    public var compactRevision: Int64 = 0
    public var cancelReason = ""
    public var fragment = false
    public var events: [Event] = []

    public init() {}
    public init(header: ResponseHeader?, watchID: Int64, events: [Event] = []) {
        self.header = header
        self.watchID = watchID
        self.events = events
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: watchID = try r.readInt64(wt, field: field)
        case 3: created = try r.readBool(wt, field: field)
        case 4: canceled = try r.readBool(wt, field: field)
        case 5: compactRevision = try r.readInt64(wt, field: field)
        case 6: cancelReason = try r.readString(wt, field: field)
        case 7: fragment = try r.readBool(wt, field: field)
        case 11: events.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.int64(2, watchID)
        v.bool(3, created)
        v.bool(4, canceled)
        v.int64(5, compactRevision)
        v.string(6, cancelReason)
        v.bool(7, fragment)
        v.messages(11, events)
    }
}
