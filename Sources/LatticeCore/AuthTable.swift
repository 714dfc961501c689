import ProtoWire

/// A thing the auth state says exists or not: the enabled flag, a user, a role, a role granted
/// to a user, a key-range permission of a role.
public enum AuthElement: Hashable, Sendable {
    case enabled
    case user(String)
    case role(String)
    case userRole(user: String, role: String)
    case permission(role: String, key: [UInt8], rangeEnd: [UInt8])

    /// Elements whose removal removes this one too: deleting a user takes its role grants,
    /// deleting a role takes its permissions and every user's grant of it (as in etcd).
    var ancestors: [AuthElement] {
        switch self {
        case .enabled, .user, .role: return []
        case .userRole(let user, let role): return [.user(user), .role(role)]
        case .permission(let role, _, _): return [.role(role)]
        }
    }
}

/// etcd's permission types (`authpb.Permission.Type`).
public enum AuthPermissionType: Int32, Hashable, Sendable {
    case read = 0, write = 1, readwrite = 2
}

/// What an element holds while it exists.
public enum AuthValue: Hashable, Sendable {
    case none
    case enabled(Bool)
    /// A user: its password as a bcrypt hash string (empty for a user without password), and
    /// etcd's `no_password` option.
    case user(passwordHash: String, noPassword: Bool)
    case permission(AuthPermissionType)
}

/// One auth operation: set `element` to `value` (creating it), or remove it.
public struct AuthOp: Hashable, Sendable {
    public var element: AuthElement
    public var remove: Bool
    public var value: AuthValue

    public init(set element: AuthElement, to value: AuthValue = .none) {
        self.element = element
        self.remove = false
        self.value = value
    }

    public init(remove element: AuthElement) {
        self.element = element
        self.remove = true
        self.value = .none
    }
}

/// A user as the auth state shows it.
public struct AuthUser: Hashable, Sendable {
    public var name: String
    public var passwordHash: String
    public var noPassword: Bool
    /// Granted roles that exist, ascending.
    public var roles: [String]

    public init(name: String, passwordHash: String, noPassword: Bool, roles: [String]) {
        self.name = name
        self.passwordHash = passwordHash
        self.noPassword = noPassword
        self.roles = roles
    }
}

/// A key-range permission of a role (etcd's `authpb.Permission`): `rangeEnd` empty for one key,
/// `[0]` for every key from `key` on.
public struct AuthPermission: Hashable, Sendable {
    public var type: AuthPermissionType
    public var key: [UInt8]
    public var rangeEnd: [UInt8]

    public init(type: AuthPermissionType, key: [UInt8], rangeEnd: [UInt8]) {
        self.type = type
        self.key = key
        self.rangeEnd = rangeEnd
    }
}

/// The visible auth state: what permission checks and the Auth API read. Built from the
/// replicated `AuthTable` after every change to it, shared immutably.
public struct AuthState: Hashable, Sendable {
    public var enabled = false
    /// etcd's auth revision: 1 at the start, +1 for every applied auth operation but enabling
    /// auth on this member
    /// (like the key revision, it counts what this member applied, so members can differ).
    public var revision: UInt64 = 1
    public var users: [String: AuthUser] = [:]
    /// Role → its permissions, in etcd's order (by key, then range end).
    public var roles: [String: [AuthPermission]] = [:]
    /// The write that enabled auth (nil while it is disabled): it changes whenever auth is
    /// disabled and enabled again anywhere, which ends every simple token issued before.
    public var enabledBy: Dot?

    public init() {}

    /// The operations that build this state from nothing (roles and their permissions, then
    /// users and their roles, then the enabled flag): what a snapshot carries.
    public var ops: [AuthOp] {
        var out: [AuthOp] = []
        for (role, permissions) in roles.sorted(by: { $0.key < $1.key }) {
            out.append(AuthOp(set: .role(role)))
            for p in permissions { out.append(AuthOp(set: .permission(role: role, key: p.key, rangeEnd: p.rangeEnd), to: .permission(p.type))) }
        }
        for (name, user) in users.sorted(by: { $0.key < $1.key }) {
            out.append(AuthOp(set: .user(name), to: .user(passwordHash: user.passwordHash, noPassword: user.noPassword)))
            for role in user.roles { out.append(AuthOp(set: .userRole(user: name, role: role))) }
        }
        if enabled { out.append(AuthOp(set: .enabled, to: .enabled(true))) }
        return out
    }
}

extension AuthOp {
    /// The operation's wire form (as replicated changes carry it).
    public var encoded: [UInt8] { AuthOpMessage(self).protoBytes() }

    /// Decodes `encoded`; nil when the bytes are no valid operation.
    public init?(encoded bytes: [UInt8]) {
        guard let op = (try? AuthOpMessage(protoBytes: bytes))?.op else { return nil }
        self = op
    }
}

/// Users, roles and permissions as replicated state. Every element is a *remove-wins* set
/// member with a last-writer-wins value:
/// - an element is present when some write of it (an add) has seen every removal of the
///   element and of its ancestors (`AuthElement.ancestors`); a removal concurrent with a write
///   wins — for permissions the safe side: a revoke beats a concurrent grant, a deleted user or
///   role stays deleted even if another site changed it meanwhile;
/// - among the present adds, the value of the latest (HLC, then dot) wins;
/// - the enabled flag is never removed: last writer wins.
///
/// Adds and removals seen by a later one are dropped as they are superseded, so the table holds
/// the concurrent frontier of each element and the removals of deleted users and roles (their
/// dots only). Changes are applied in causal order, so whether an add had seen a removal is
/// whether the removal's dot is in the add's deps.
struct AuthTable: Hashable, Sendable {
    struct Add: Hashable, Sendable {
        var dot: Dot
        var hlc: HLC
        var deps: VersionVector
        var value: AuthValue
    }

    struct Entry: Hashable, Sendable {
        var adds: [Add] = []
        var removes: [Dot] = []
    }

    private(set) var entries: [AuthElement: Entry]
    /// Auth operations applied on this member, enabling not counted (etcd's auth revision is
    /// this + 1).
    private(set) var applied: UInt64

    init(entries: [AuthElement: Entry] = [:], applied: UInt64 = 0) {
        self.entries = entries
        self.applied = applied
    }

    mutating func apply(_ op: AuthOp, of change: Change) {
        // etcd's auth revision counts every change but enabling auth.
        if op.element != .enabled || op.value != .enabled(true) { applied += 1 }
        var entry = entries[op.element] ?? Entry()
        entry.adds.removeAll { change.deps.contains($0.dot) || $0.dot == change.id }
        if op.remove {
            entry.removes.removeAll { change.deps.contains($0) }
            entry.removes.append(change.id)
            // Everything beneath that the removal had seen is gone for good, and so are the
            // removals beneath it: a write it had not seen is removed by this removal anyway.
            switch op.element {
            case .user(let name):
                dropSeen(by: change) { if case .userRole(name, _) = $0 { return true } else { return false } }
            case .role(let name):
                dropSeen(by: change) {
                    switch $0 {
                    case .userRole(_, name), .permission(name, _, _): return true
                    default: return false
                    }
                }
            default:
                break
            }
        } else {
            entry.adds.append(Add(dot: change.id, hlc: change.hlc, deps: change.deps, value: op.value))
        }
        entries[op.element] = entry
    }

    private mutating func dropSeen(by change: Change, where matches: (AuthElement) -> Bool) {
        for element in entries.keys where matches(element) {
            var e = entries[element]!
            e.adds.removeAll { change.deps.contains($0.dot) }
            e.removes.removeAll { change.deps.contains($0) }
            entries[element] = e.adds.isEmpty && e.removes.isEmpty ? nil : e
        }
    }

    /// The element's value, nil when it is not present.
    func value(of element: AuthElement) -> AuthValue? { winner(of: element)?.value }

    /// The write whose value the element has, nil when it is not present.
    func winner(of element: AuthElement) -> Add? {
        guard let entry = entries[element] else { return nil }
        var removals = entry.removes
        for a in element.ancestors { removals += entries[a]?.removes ?? [] }
        var best: Add?
        for add in entry.adds where removals.allSatisfy({ add.deps.contains($0) }) {
            if best.map({ ($0.hlc, $0.dot) < (add.hlc, add.dot) }) ?? true { best = add }
        }
        return best
    }

    var state: AuthState {
        var s = AuthState()
        s.revision = applied + 1
        if let add = winner(of: .enabled), case .enabled(let on) = add.value {
            s.enabled = on
            if on { s.enabledBy = add.dot }
        }
        var grants: [String: [String]] = [:]
        var permissions: [(role: String, AuthPermission)] = []
        for element in entries.keys {
            switch element {
            case .user(let name):
                if case .user(let hash, let noPassword)? = value(of: element) {
                    s.users[name] = AuthUser(name: name, passwordHash: hash, noPassword: noPassword, roles: [])
                }
            case .role(let name):
                if value(of: element) != nil { s.roles[name] = [] }
            case .userRole(let user, let role):
                if value(of: element) != nil { grants[user, default: []].append(role) }
            case .permission(let role, let key, let rangeEnd):
                if case .permission(let type)? = value(of: element) {
                    permissions.append((role, AuthPermission(type: type, key: key, rangeEnd: rangeEnd)))
                }
            case .enabled:
                break
            }
        }
        for (user, roles) in grants where s.users[user] != nil {
            // The root role needs no role record to be granted (etcd's rule).
            s.users[user]!.roles = roles.filter { s.roles[$0] != nil || $0 == "root" }.sorted()
        }
        for (role, p) in permissions where s.roles[role] != nil { s.roles[role]!.append(p) }
        for role in s.roles.keys {
            s.roles[role]!.sort { a, b in
                a.key != b.key ? a.key.lexicographicallyPrecedes(b.key) : a.rangeEnd.lexicographicallyPrecedes(b.rangeEnd)
            }
        }
        return s
    }
}

// MARK: wire encoding

/// Wire form of an `AuthOp` (also the element and value parts of a snapshot's auth entry):
/// 1 element kind (1 enabled, 2 user, 3 role, 4 user's role, 5 permission), 2 user name,
/// 3 role name, 4 key, 5 range end, 6 remove, 7 value kind (1 enabled, 2 user, 3 permission),
/// 8 password hash, 9 no password, 10 permission type, 11 enabled.
struct AuthOpMessage: ProtoMessage {
    var op: AuthOp?
    init() {}
    init(_ op: AuthOp) { self.op = op }

    private var elementKind: Int32 = 0
    private var user = ""
    private var role = ""
    private var key: [UInt8] = []
    private var rangeEnd: [UInt8] = []
    private var remove = false
    private var valueKind: Int32 = 0
    private var password = ""
    private var noPassword = false
    private var permType: Int32 = 0
    private var enabled = false

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: elementKind = try r.readInt32(wt, field: field)
        case 2: user = try r.readString(wt, field: field)
        case 3: role = try r.readString(wt, field: field)
        case 4: key = try r.readBytes(wt, field: field)
        case 5: rangeEnd = try r.readBytes(wt, field: field)
        case 6: remove = try r.readBool(wt, field: field)
        case 7: valueKind = try r.readInt32(wt, field: field)
        case 8: password = try r.readString(wt, field: field)
        case 9: noPassword = try r.readBool(wt, field: field)
        case 10: permType = try r.readInt32(wt, field: field)
        case 11: enabled = try r.readBool(wt, field: field)
        default: try r.skip(wt, field: field)
        }
        let element: AuthElement
        switch elementKind {
        case 1: element = .enabled
        case 2: element = .user(user)
        case 3: element = .role(role)
        case 4: element = .userRole(user: user, role: role)
        case 5: element = .permission(role: role, key: key, rangeEnd: rangeEnd)
        default: op = nil; return
        }
        let value: AuthValue
        switch valueKind {
        case 0: value = .none
        case 1: value = .enabled(enabled)
        case 2: value = .user(passwordHash: password, noPassword: noPassword)
        case 3:
            guard let t = AuthPermissionType(rawValue: permType) else { op = nil; return }
            value = .permission(t)
        default: op = nil; return
        }
        op = remove ? AuthOp(remove: element) : AuthOp(set: element, to: value)
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        guard let op else { return }
        switch op.element {
        case .enabled: v.int32(1, 1)
        case .user(let name): v.int32(1, 2); v.string(2, name)
        case .role(let name): v.int32(1, 3); v.string(3, name)
        case .userRole(let user, let role): v.int32(1, 4); v.string(2, user); v.string(3, role)
        case .permission(let role, let key, let rangeEnd):
            v.int32(1, 5); v.string(3, role); v.bytes(4, key); v.bytes(5, rangeEnd)
        }
        v.bool(6, op.remove)
        switch op.value {
        case .none: break
        case .enabled(let on): v.int32(7, 1); v.bool(11, on)
        case .user(let hash, let noPassword): v.int32(7, 2); v.string(8, hash); v.bool(9, noPassword)
        case .permission(let t): v.int32(7, 3); v.int32(10, t.rawValue)
        }
    }
}

/// A snapshot's auth entry: 1 the element (an `AuthOpMessage`), 2 adds, 3 removals.
struct AuthEntryMessage: ProtoMessage {
    var element: AuthElement = .enabled
    var entry = AuthTable.Entry()

    init() {}
    init(_ element: AuthElement, _ entry: AuthTable.Entry) {
        self.element = element
        self.entry = entry
    }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1:
            guard let op = (try r.readMessage(wt, field: field) as AuthOpMessage).op else { throw .unsupported("auth element of unknown kind") }
            element = op.element
        case 2: entry.adds.append((try r.readMessage(wt, field: field) as AuthAddMessage).add)
        case 3: entry.removes.append((try r.readMessage(wt, field: field) as DotMessage).dot)
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.messageField(1, AuthOpMessage(AuthOp(remove: element)))
        for a in entry.adds { v.messageField(2, AuthAddMessage(a)) }
        for d in entry.removes { v.messageField(3, DotMessage(d)) }
    }
}

/// 1 dot, 2 HLC wall, 3 HLC logical, 4 deps, 5 value (an `AuthOpMessage` of any element).
struct AuthAddMessage: ProtoMessage {
    var add = AuthTable.Add(dot: Dot(member: 0, seq: 0), hlc: .zero, deps: VersionVector(), value: .none)
    init() {}
    init(_ add: AuthTable.Add) { self.add = add }

    mutating func decodeField(_ field: Int, _ wt: WireType, from r: inout ProtoReader) throws(ProtoDecodingError) {
        switch field {
        case 1: add.dot = (try r.readMessage(wt, field: field) as DotMessage).dot
        case 2: add.hlc.wallMilliseconds = try r.readInt64(wt, field: field)
        case 3: add.hlc.logical = try r.readUInt32(wt, field: field)
        case 4: add.deps = (try r.readMessage(wt, field: field) as VersionVectorMessage).vector
        case 5:
            guard let op = (try r.readMessage(wt, field: field) as AuthOpMessage).op else { throw .unsupported("auth value of unknown kind") }
            add.value = op.value
        default: try r.skip(wt, field: field)
        }
    }

    func traverse<V: ProtoVisitor>(_ v: inout V) {
        v.messageField(1, DotMessage(add.dot))
        v.int64(2, add.hlc.wallMilliseconds)
        v.uint32(3, add.hlc.logical)
        v.messageField(4, VersionVectorMessage(add.deps))
        v.messageField(5, AuthOpMessage(AuthOp(set: .enabled, to: add.value)))
    }
}

// MARK: permission checks

extension AuthState {
    /// Whether `user` holds the root role (etcd's admin).
    public func isAdmin(_ user: String) -> Bool { users[user]?.roles.contains("root") ?? false }

    /// etcd's range permission check: the keys `[key, rangeEnd)` (one key when `rangeEnd` is
    /// empty, every key from `key` on when it is `[0]`) must be covered by the union of the
    /// user's permissions of that kind (READWRITE counts as both). The root role may do anything.
    public func isPermitted(_ user: String, key: [UInt8], rangeEnd: [UInt8], write: Bool) -> Bool {
        guard let u = users[user] else { return false }
        if u.roles.contains("root") { return true }
        // Intervals [start, end) with end nil for "no end".
        var intervals: [(start: [UInt8], end: [UInt8]?)] = []
        for role in u.roles {
            for p in roles[role] ?? [] {
                switch p.type {
                case .readwrite: break
                case .read: if write { continue }
                case .write: if !write { continue }
                }
                intervals.append(AuthState.interval(p.key, p.rangeEnd))
            }
        }
        let query = AuthState.interval(key, rangeEnd)
        intervals.sort { $0.start.lexicographicallyPrecedes($1.start) }
        var covered = query.start  // everything below `covered` (from the query's start) is permitted
        for i in intervals {
            if covered.lexicographicallyPrecedes(i.start) { break }
            guard let end = i.end else { return true }
            if covered.lexicographicallyPrecedes(end) {
                covered = end
                if let qEnd = query.end, !covered.lexicographicallyPrecedes(qEnd) { return true }
            }
        }
        return false
    }

    /// A permission or request range as an interval: one key is `[key, key + 0x00)`, a range
    /// end of `[0]` has no end.
    static func interval(_ key: [UInt8], _ rangeEnd: [UInt8]) -> (start: [UInt8], end: [UInt8]?) {
        if rangeEnd.isEmpty { return (key, key + [0]) }
        if rangeEnd == [0] { return (key, nil) }
        return (key, rangeEnd)
    }
}
