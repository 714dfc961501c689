import ProtoWire

// etcdserverpb Cluster service messages (Protos/etcd/rpc.proto).
// Field numbers are etcd's; field names are the proto names in lowerCamelCase (`ID` → `id`).

public struct Member: ProtoMessage, Hashable {
    public var id: UInt64 = 0
    public var name = ""
    public var peerURLs: [String] = []
    public var clientURLs: [String] = []
    public var isLearner = false

    public init() {}
    public init(id: UInt64, name: String, peerURLs: [String], clientURLs: [String], isLearner: Bool = false) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.isLearner = isLearner
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: id = try r.readUInt64(wt, field: field)
        case 2: name = try r.readString(wt, field: field)
        case 3: peerURLs.append(try r.readString(wt, field: field))
        case 4: clientURLs.append(try r.readString(wt, field: field))
        case 5: isLearner = try r.readBool(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.uint64(1, id)
        v.string(2, name)
        v.repeatedStrings(3, peerURLs)
        v.repeatedStrings(4, clientURLs)
        v.bool(5, isLearner)
    }
}

public struct MemberAddRequest: ProtoMessage, Hashable {
    public var peerURLs: [String] = []
    public var isLearner = false

    public init() {}
    public init(peerURLs: [String], isLearner: Bool = false) {
        self.peerURLs = peerURLs
        self.isLearner = isLearner
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: peerURLs.append(try r.readString(wt, field: field))
        case 2: isLearner = try r.readBool(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.repeatedStrings(1, peerURLs)
        v.bool(2, isLearner)
    }
}

public struct MemberAddResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    /// The added member.
    public var member: Member?
    /// All members after the addition.
    public var members: [Member] = []

    public init() {}
    public init(header: ResponseHeader?, member: Member?, members: [Member]) {
        self.header = header
        self.member = member
        self.members = members
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: member = try r.readMessage(wt, field: field)
        case 3: members.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.message(2, member)
        v.messages(3, members)
    }
}

public struct MemberRemoveRequest: ProtoMessage, Hashable {
    public var id: UInt64 = 0

    public init() {}
    public init(id: UInt64) { self.id = id }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: id = try r.readUInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.uint64(1, id)
    }
}

public struct MemberRemoveResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    /// All members after the removal.
    public var members: [Member] = []

    public init() {}
    public init(header: ResponseHeader?, members: [Member]) {
        self.header = header
        self.members = members
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: members.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.messages(2, members)
    }
}

public struct MemberUpdateRequest: ProtoMessage, Hashable {
    public var id: UInt64 = 0
    public var peerURLs: [String] = []

    public init() {}
    public init(id: UInt64, peerURLs: [String]) {
        self.id = id
        self.peerURLs = peerURLs
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: id = try r.readUInt64(wt, field: field)
        case 2: peerURLs.append(try r.readString(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.uint64(1, id)
        v.repeatedStrings(2, peerURLs)
    }
}

public struct MemberUpdateResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    /// All members after the update.
    public var members: [Member] = []

    public init() {}
    public init(header: ResponseHeader?, members: [Member]) {
        self.header = header
        self.members = members
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: members.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.messages(2, members)
    }
}

public struct MemberListRequest: ProtoMessage, Hashable {
    /// etcd 3.5: serve the list through consensus rather than from local state.
    public var linearizable = false

    public init() {}
    public init(linearizable: Bool) { self.linearizable = linearizable }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: linearizable = try r.readBool(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.bool(1, linearizable)
    }
}

public struct MemberListResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var members: [Member] = []

    public init() {}
    public init(header: ResponseHeader?, members: [Member]) {
        self.header = header
        self.members = members
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: members.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.messages(2, members)
    }
}

public struct MemberPromoteRequest: ProtoMessage, Hashable {
    public var id: UInt64 = 0

    public init() {}
    public init(id: UInt64) { self.id = id }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: id = try r.readUInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.uint64(1, id)
    }
}

public struct MemberPromoteResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    /// All members after the promotion.
    public var members: [Member] = []

    public init() {}
    public init(header: ResponseHeader?, members: [Member]) {
        self.header = header
        self.members = members
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: members.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.messages(2, members)
    }
}
