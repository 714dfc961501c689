import ProtoWire

// etcdserverpb Auth service messages (Protos/etcd/rpc.proto).
// Field numbers are etcd's; field names are the proto names in lowerCamelCase.

/// No fields.
public struct AuthEnableRequest: ProtoMessage, Hashable {
    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        try r.skip(wt, field: field)
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {}
}

/// No fields.
public struct AuthDisableRequest: ProtoMessage, Hashable {
    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        try r.skip(wt, field: field)
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {}
}

/// etcd 3.5. No fields.
public struct AuthStatusRequest: ProtoMessage, Hashable {
    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        try r.skip(wt, field: field)
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {}
}

public struct AuthenticateRequest: ProtoMessage, Hashable {
    public var name = ""
    public var password = ""

    public init() {}
    public init(name: String, password: String) {
        self.name = name
        self.password = password
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: name = try r.readString(wt, field: field)
        case 2: password = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.string(1, name)
        v.string(2, password)
    }
}

public struct AuthUserAddRequest: ProtoMessage, Hashable {
    public var name = ""
    public var password = ""
    public var options: UserAddOptions?
    /// etcd 3.5: the bcrypt hash, filled in by the API layer (clients send `password`).
    public var hashedPassword = ""

    public init() {}
    public init(name: String, password: String, options: UserAddOptions? = nil, hashedPassword: String = "") {
        self.name = name
        self.password = password
        self.options = options
        self.hashedPassword = hashedPassword
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: name = try r.readString(wt, field: field)
        case 2: password = try r.readString(wt, field: field)
        case 3: options = try r.readMessage(wt, field: field)
        case 4: hashedPassword = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.string(1, name)
        v.string(2, password)
        v.message(3, options)
        v.string(4, hashedPassword)
    }
}

public struct AuthUserGetRequest: ProtoMessage, Hashable {
    public var name = ""

    public init() {}
    public init(name: String) { self.name = name }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: name = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.string(1, name)
    }
}

public struct AuthUserDeleteRequest: ProtoMessage, Hashable {
    public var name = ""

    public init() {}
    public init(name: String) { self.name = name }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: name = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.string(1, name)
    }
}

public struct AuthUserChangePasswordRequest: ProtoMessage, Hashable {
    public var name = ""
    public var password = ""
    /// etcd 3.5: the bcrypt hash, filled in by the API layer (clients send `password`).
    public var hashedPassword = ""

    public init() {}
    public init(name: String, password: String, hashedPassword: String = "") {
        self.name = name
        self.password = password
        self.hashedPassword = hashedPassword
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: name = try r.readString(wt, field: field)
        case 2: password = try r.readString(wt, field: field)
        case 3: hashedPassword = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.string(1, name)
        v.string(2, password)
        v.string(3, hashedPassword)
    }
}

public struct AuthUserGrantRoleRequest: ProtoMessage, Hashable {
    public var user = ""
    public var role = ""

    public init() {}
    public init(user: String, role: String) {
        self.user = user
        self.role = role
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: user = try r.readString(wt, field: field)
        case 2: role = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.string(1, user)
        v.string(2, role)
    }
}

public struct AuthUserRevokeRoleRequest: ProtoMessage, Hashable {
    public var name = ""
    public var role = ""

    public init() {}
    public init(name: String, role: String) {
        self.name = name
        self.role = role
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: name = try r.readString(wt, field: field)
        case 2: role = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.string(1, name)
        v.string(2, role)
    }
}

public struct AuthRoleAddRequest: ProtoMessage, Hashable {
    public var name = ""

    public init() {}
    public init(name: String) { self.name = name }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: name = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.string(1, name)
    }
}

public struct AuthRoleGetRequest: ProtoMessage, Hashable {
    public var role = ""

    public init() {}
    public init(role: String) { self.role = role }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: role = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.string(1, role)
    }
}

/// No fields.
public struct AuthUserListRequest: ProtoMessage, Hashable {
    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        try r.skip(wt, field: field)
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {}
}

/// No fields.
public struct AuthRoleListRequest: ProtoMessage, Hashable {
    public init() {}

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        try r.skip(wt, field: field)
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {}
}

public struct AuthRoleDeleteRequest: ProtoMessage, Hashable {
    public var role = ""

    public init() {}
    public init(role: String) { self.role = role }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: role = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.string(1, role)
    }
}

public struct AuthRoleGrantPermissionRequest: ProtoMessage, Hashable {
    public var name = ""
    public var perm: Permission?

    public init() {}
    public init(name: String, perm: Permission?) {
        self.name = name
        self.perm = perm
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: name = try r.readString(wt, field: field)
        case 2: perm = try r.readMessage(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.string(1, name)
        v.message(2, perm)
    }
}

public struct AuthRoleRevokePermissionRequest: ProtoMessage, Hashable {
    public var role = ""
    public var key: [UInt8] = []
    public var rangeEnd: [UInt8] = []

    public init() {}
    public init(role: String, key: [UInt8], rangeEnd: [UInt8]) {
        self.role = role
        self.key = key
        self.rangeEnd = rangeEnd
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: role = try r.readString(wt, field: field)
        case 2: key = try r.readBytes(wt, field: field)
        case 3: rangeEnd = try r.readBytes(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.string(1, role)
        v.bytes(2, key)
        v.bytes(3, rangeEnd)
    }
}

public struct AuthEnableResponse: ProtoMessage, Hashable {
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

public struct AuthDisableResponse: ProtoMessage, Hashable {
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
public struct AuthStatusResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var enabled = false
    public var authRevision: UInt64 = 0

    public init() {}
    public init(header: ResponseHeader?, enabled: Bool, authRevision: UInt64) {
        self.header = header
        self.enabled = enabled
        self.authRevision = authRevision
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: enabled = try r.readBool(wt, field: field)
        case 3: authRevision = try r.readUInt64(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.bool(2, enabled)
        v.uint64(3, authRevision)
    }
}

public struct AuthenticateResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var token = ""

    public init() {}
    public init(header: ResponseHeader?, token: String) {
        self.header = header
        self.token = token
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: token = try r.readString(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.string(2, token)
    }
}

public struct AuthUserAddResponse: ProtoMessage, Hashable {
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

public struct AuthUserGetResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var roles: [String] = []

    public init() {}
    public init(header: ResponseHeader?, roles: [String]) {
        self.header = header
        self.roles = roles
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: roles.append(try r.readString(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.repeatedStrings(2, roles)
    }
}

public struct AuthUserDeleteResponse: ProtoMessage, Hashable {
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

public struct AuthUserChangePasswordResponse: ProtoMessage, Hashable {
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

public struct AuthUserGrantRoleResponse: ProtoMessage, Hashable {
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

public struct AuthUserRevokeRoleResponse: ProtoMessage, Hashable {
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

public struct AuthRoleAddResponse: ProtoMessage, Hashable {
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

public struct AuthRoleGetResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var perm: [Permission] = []

    public init() {}
    public init(header: ResponseHeader?, perm: [Permission]) {
        self.header = header
        self.perm = perm
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: perm.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.messages(2, perm)
    }
}

public struct AuthRoleListResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var roles: [String] = []

    public init() {}
    public init(header: ResponseHeader?, roles: [String]) {
        self.header = header
        self.roles = roles
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: roles.append(try r.readString(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.repeatedStrings(2, roles)
    }
}

public struct AuthUserListResponse: ProtoMessage, Hashable {
    public var header: ResponseHeader?
    public var users: [String] = []

    public init() {}
    public init(header: ResponseHeader?, users: [String]) {
        self.header = header
        self.users = users
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: header = try r.readMessage(wt, field: field)
        case 2: users.append(try r.readString(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.message(1, header)
        v.repeatedStrings(2, users)
    }
}

public struct AuthRoleDeleteResponse: ProtoMessage, Hashable {
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

public struct AuthRoleGrantPermissionResponse: ProtoMessage, Hashable {
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

public struct AuthRoleRevokePermissionResponse: ProtoMessage, Hashable {
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
