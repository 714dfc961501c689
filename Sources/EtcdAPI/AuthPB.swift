import ProtoWire

// authpb messages (Protos/etcd/auth.proto): the auth store's users, roles and permissions.
// Field numbers are etcd's; field names are the proto names in lowerCamelCase.

/// authpb.UserAddOptions
public struct UserAddOptions: ProtoMessage, Hashable {
    /// The user authenticates by certificate common name only, never by password.
    public var noPassword = false

    public init() {}
    public init(noPassword: Bool) { self.noPassword = noPassword }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: noPassword = try r.readBool(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.bool(1, noPassword)
    }
}

/// authpb.User: one entry of the auth store's users bucket.
public struct User: ProtoMessage, Hashable {
    public var name: [UInt8] = []
    /// The password hash (bcrypt), not the password.
    public var password: [UInt8] = []
    public var roles: [String] = []
    public var options: UserAddOptions?

    public init() {}
    public init(name: [UInt8], password: [UInt8], roles: [String] = [], options: UserAddOptions? = nil) {
        self.name = name
        self.password = password
        self.roles = roles
        self.options = options
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: name = try r.readBytes(wt, field: field)
        case 2: password = try r.readBytes(wt, field: field)
        case 3: roles.append(try r.readString(wt, field: field))
        case 4: options = try r.readMessage(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.bytes(1, name)
        v.bytes(2, password)
        v.repeatedStrings(3, roles)
        v.message(4, options)
    }
}

/// authpb.Permission: access to one key or key range.
public struct Permission: ProtoMessage, Hashable {
    /// The proto enum `Permission.Type` (renamed: `Type` is reserved in Swift member position).
    public struct PermissionType: RawRepresentable, Hashable, Sendable {
        public var rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let read = PermissionType(rawValue: 0)
        public static let write = PermissionType(rawValue: 1)
        public static let readWrite = PermissionType(rawValue: 2)
    }

    public var permType: PermissionType = .read
    public var key: [UInt8] = []
    public var rangeEnd: [UInt8] = []

    public init() {}
    public init(permType: PermissionType, key: [UInt8], rangeEnd: [UInt8] = []) {
        self.permType = permType
        self.key = key
        self.rangeEnd = rangeEnd
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: permType = PermissionType(rawValue: try r.readInt32(wt, field: field))
        case 2: key = try r.readBytes(wt, field: field)
        case 3: rangeEnd = try r.readBytes(wt, field: field)
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.int32(1, permType.rawValue)
        v.bytes(2, key)
        v.bytes(3, rangeEnd)
    }
}

/// authpb.Role: one entry of the auth store's roles bucket.
public struct Role: ProtoMessage, Hashable {
    public var name: [UInt8] = []
    public var keyPermission: [Permission] = []

    public init() {}
    public init(name: [UInt8], keyPermission: [Permission] = []) {
        self.name = name
        self.keyPermission = keyPermission
    }

    public mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: name = try r.readBytes(wt, field: field)
        case 2: keyPermission.append(try r.readMessage(wt, field: field))
        default: try r.skip(wt, field: field)
        }
    }

    public func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.bytes(1, name)
        v.messages(2, keyPermission)
    }
}
