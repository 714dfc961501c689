import ProtoWire

// etcdserverpb Lease service messages (Protos/etcd/rpc.proto).
// Field numbers are etcd's; field names are the proto names in lowerCamelCase
// (`TTL` → `ttl`, `ID` → `id`, `remaining_TTL` → `remainingTTL`).

public struct LeaseGrantRequest: ProtoMessage, Hashable {
    public var ttl: Int64 = 0
    public var id: Int64 = 0

    public init() {}
    public init(ttl: Int64, id: Int64 = 0) {
        self.ttl = ttl
        self.id = id
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: ttl = try r.readInt64(wt, field: field)
        case 2: id = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, ttl)
        v.int64(2, id)
    }
}

public struct LeaseGrantResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var id: Int64 = 0
    public var ttl: Int64 = 0
    public var error = ""

    public init() {}
    public init(header: ResponseHeader?, id: Int64, ttl: Int64, error: String = "") {
        self.header = header
        self.id = id
        self.ttl = ttl
        self.error = error
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: id = try r.readInt64(wt, field: field)
        case 3: ttl = try r.readInt64(wt, field: field)
        case 4: error = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.int64(2, id)
        v.int64(3, ttl)
        v.string(4, error)
    }
}

public struct LeaseRevokeRequest: ProtoMessage, Hashable {
    public var id: Int64 = 0

    public init() {}
    public init(id: Int64) { self.id = id }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: id = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, id)
    }
}

public struct LeaseRevokeResponse: ProtoMessage, Hashable {
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

public struct LeaseCheckpoint: ProtoMessage, Hashable {
    public var id: Int64 = 0
    public var remainingTTL: Int64 = 0

    public init() {}
    public init(id: Int64, remainingTTL: Int64) {
        self.id = id
        self.remainingTTL = remainingTTL
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: id = try r.readInt64(wt, field: field)
        case 2: remainingTTL = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, id)
        v.int64(2, remainingTTL)
    }
}

public struct LeaseCheckpointRequest: ProtoMessage, Hashable {
    public var checkpoints: [LeaseCheckpoint] = []

    public init() {}
    public init(checkpoints: [LeaseCheckpoint]) { self.checkpoints = checkpoints }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: checkpoints.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.messages(1, checkpoints)
    }
}

public struct LeaseCheckpointResponse: ProtoMessage, Hashable {
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

public struct LeaseKeepAliveRequest: ProtoMessage, Hashable {
    public var id: Int64 = 0

    public init() {}
    public init(id: Int64) { self.id = id }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: id = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, id)
    }
}

public struct LeaseKeepAliveResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var id: Int64 = 0
    public var ttl: Int64 = 0

    public init() {}
    public init(header: ResponseHeader?, id: Int64, ttl: Int64) {
        self.header = header
        self.id = id
        self.ttl = ttl
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: id = try r.readInt64(wt, field: field)
        case 3: ttl = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.int64(2, id)
        v.int64(3, ttl)
    }
}

public struct LeaseTimeToLiveRequest: ProtoMessage, Hashable {
    public var id: Int64 = 0
    /// Whether to list the keys attached to the lease.
    public var keys = false

    public init() {}
    public init(id: Int64, keys: Bool = false) {
        self.id = id
        self.keys = keys
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: id = try r.readInt64(wt, field: field)
        case 2: keys = try r.readBool(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, id)
        v.bool(2, keys)
    }
}

public struct LeaseTimeToLiveResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var id: Int64 = 0
    public var ttl: Int64 = 0
    public var grantedTTL: Int64 = 0
    public var keys: [[UInt8]] = []

    public init() {}
    public init(header: ResponseHeader?, id: Int64, ttl: Int64, grantedTTL: Int64, keys: [[UInt8]] = []) {
        self.header = header
        self.id = id
        self.ttl = ttl
        self.grantedTTL = grantedTTL
        self.keys = keys
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: id = try r.readInt64(wt, field: field)
        case 3: ttl = try r.readInt64(wt, field: field)
        case 4: grantedTTL = try r.readInt64(wt, field: field)
        case 5: keys.append(try r.readBytes(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.int64(2, id)
        v.int64(3, ttl)
        v.int64(4, grantedTTL)
        v.repeatedBytes(5, keys)
    }
}

/// Lists all leases (no fields).
public struct LeaseLeasesRequest: ProtoMessage, Hashable {
    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        try r.skip(wt, field: field)
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {}
}

public struct LeaseStatus: ProtoMessage, Hashable {
    public var id: Int64 = 0

    public init() {}
    public init(id: Int64) { self.id = id }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: id = try r.readInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int64(1, id)
    }
}

public struct LeaseLeasesResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var leases: [LeaseStatus] = []

    public init() {}
    public init(header: ResponseHeader?, leases: [LeaseStatus]) {
        self.header = header
        self.leases = leases
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: leases.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.messages(2, leases)
    }
}
