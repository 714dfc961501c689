import EtcdAPI
import GRPCWire
import LatticeCore
import LatticeStore
import NIOCore
import NIOPosix
import Synchronization

/// Who is calling, once auth is enabled: the user named by the call's token, and the auth
/// state the checks of this call read (one consistent view per call).
struct AuthCaller: Sendable {
    let user: String
    let state: AuthState

    var isAdmin: Bool { state.isAdmin(user) }

    func requireAdmin() throws(EtcdError) { if !isAdmin { throw .permissionDenied } }

    func requireRead(_ key: [UInt8], _ rangeEnd: [UInt8] = []) throws(EtcdError) {
        if !state.isPermitted(user, key: key, rangeEnd: rangeEnd, write: false) { throw .permissionDenied }
    }

    func requireWrite(_ key: [UInt8], _ rangeEnd: [UInt8] = []) throws(EtcdError) {
        if !state.isPermitted(user, key: key, rangeEnd: rangeEnd, write: true) { throw .permissionDenied }
    }

    /// etcd's Txn check: read on every compare, and every operation of both branches (nested
    /// transactions included), whichever branch runs.
    func requireTxn(_ r: TxnRequest) throws(EtcdError) {
        for c in r.compare { try requireRead(c.key, c.rangeEnd) }
        for op in r.success + r.failure {
            switch op.request {
            case .range(let q)?: try requireRead(q.key, q.rangeEnd)
            case .put(let p)?:
                try requireWrite(p.key)
                if p.prevKV { try requireRead(p.key) }
            case .deleteRange(let d)?:
                try requireWrite(d.key, d.rangeEnd)
                if d.prevKV { try requireRead(d.key, d.rangeEnd) }
            case .txn(let nested)?: try requireTxn(nested)
            case nil: break
            }
        }
    }
}

/// Issues the tokens Authenticate answers with and says whom a token names (`--auth-token`).
public protocol AuthTokenProvider: Sendable {
    /// A new token for `user` (who exists in `state`, with the password just checked); it
    /// shows the auth revision (a JWT's `revision` claim, a simple token's suffix; neither is
    /// checked, see docs/consistency.md). Throws when this member cannot issue tokens (a JWT
    /// public key without its private key).
    func issue(for user: String, in state: AuthState) throws(EtcdError) -> String
    /// The user `token` names, if it is valid now in `state`: issued here (or signed with this
    /// member's key), not expired, and its user still has the password it had at issue.
    func user(of token: String, in state: AuthState) -> String?
    /// Auth was disabled on this member: tokens held in memory are dropped.
    func removeAll()
}

/// The auth side of every call: tokens, and who a call's token names.
public final class AuthGate: Sendable {
    let store: MVCCStore
    let tokens: any AuthTokenProvider
    /// `--bcrypt-cost`: the work factor of the password hashes this member writes.
    let bcryptCost: Int

    /// `tokens` nil: etcd's default, simple tokens with `tokenTTL`.
    public init(store: MVCCStore, tokens: (any AuthTokenProvider)? = nil, tokenTTL: Duration = .seconds(300), bcryptCost: Int = 10,
                clock: @escaping @Sendable () -> NIODeadline = { .now() }) {
        self.store = store
        self.tokens = tokens ?? SimpleTokens(ttl: tokenTTL, clock: clock)
        self.bcryptCost = bcryptCost
    }

    /// The caller, or nil when auth is disabled (every call is allowed). A call without a token
    /// fails with "user name is empty" once auth is enabled; one with an unknown or expired token
    /// fails with "invalid auth token" — even while auth is disabled, as in etcd (a client
    /// that logged in before auth was disabled logs in again, and learns it is off). The token
    /// travels in the metadata as `token` (gRPC clients) or `authorization` (the JSON gateway).
    /// A call without a token on a connection whose client certificate was verified
    /// (`--client-cert-auth`) is made by the user the certificate's common name names, as in
    /// etcd; the JSON gateway's calls never are.
    func caller(_ call: GRPCCallContext) throws(EtcdError) -> AuthCaller? {
        let state = store.authState
        // A token header that is present but empty is an invalid token, as in etcd.
        let token = call.headers.first(name: "token") ?? call.headers.first(name: "authorization")
        if let token {
            guard let user = tokens.user(of: token, in: state) else { throw .invalidAuthToken }
            return state.enabled ? AuthCaller(user: user, state: state) : nil
        }
        guard state.enabled else { return nil }
        if let commonName = call.peerIdentity { return AuthCaller(user: commonName, state: state) }
        throw .userEmpty
    }

    /// Runs `check` against the caller when auth is enabled.
    func check(_ call: GRPCCallContext, _ check: (AuthCaller) throws(EtcdError) -> Void) throws(EtcdError) {
        if let caller = try caller(call) { try check(caller) }
    }

    /// For calls etcd lets anyone make: only a token that is not valid is refused.
    func rejectInvalidToken(_ call: GRPCCallContext) throws(EtcdError) {
        do throws(EtcdError) { _ = try caller(call) } catch where error != .userEmpty { throw error } catch {}
    }

    /// Admin calls: root only when auth is enabled ("user name not found" when the token's user
    /// is gone, as etcd's admin check answers).
    func requireAdmin(_ call: GRPCCallContext) throws(EtcdError) {
        try check(call) { (c: AuthCaller) throws(EtcdError) in
            guard !c.user.isEmpty else { throw .userEmpty }
            guard c.state.users[c.user] != nil else { throw .userNotFound }
            try c.requireAdmin()
        }
    }

    /// The admin check of Defragment, Snapshot, Hash and HashKV, whose errors etcd sends
    /// unmapped: gRPC code Unknown with its internal "auth: …" text.
    func requireAdminForMaintenance(_ call: GRPCCallContext) -> GRPCStatus? {
        do throws(EtcdError) {
            try requireAdmin(call)
            return nil
        } catch {
            let text: String
            switch error {
            case .userEmpty: text = "auth: user name is empty"
            case .invalidAuthToken: text = "auth: invalid auth token"
            case .userNotFound: text = "auth: user not found"
            default: text = "auth: permission denied"
            }
            return GRPCStatus(.unknown, text)
        }
    }
}

/// etcd's "simple" tokens: random, held in this member's memory, valid for `--auth-token-ttl`
/// after their last use. A token stands for one user with the password hash it had when the
/// token was issued, so changing the password or deleting the user — on any member — makes it
/// invalid, and so does disabling auth. At most `limit` tokens are kept; past it, the one used
/// least recently goes.
final class SimpleTokens: AuthTokenProvider {
    struct Entry {
        var user: String
        var passwordHash: String
        /// The write that had enabled auth when the token was issued.
        var enabledBy: Dot?
        var lastUse: NIODeadline
    }

    private let entries = Mutex<[String: Entry]>([:])
    let ttl: Duration
    let clock: @Sendable () -> NIODeadline
    let limit: Int

    init(ttl: Duration, clock: @escaping @Sendable () -> NIODeadline, limit: Int = 65_536) {
        self.ttl = ttl
        self.clock = clock
        self.limit = limit
    }

    var count: Int { entries.withLock { $0.count } }

    private var ttlNanoseconds: Int64 {
        let c = ttl.components
        return c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000
    }

    func issue(for user: String, in state: AuthState) -> String {
        let passwordHash = state.users[user]?.passwordHash ?? ""
        let suffix = state.revision
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        var rng = SystemRandomNumberGenerator()
        let random = String(decoding: (0..<16).map { _ in letters.randomElement(using: &rng)! }, as: UTF8.self)
        let token = "\(random).\(suffix)"
        let now = clock()
        let ttl = TimeAmount.nanoseconds(ttlNanoseconds)
        entries.withLock { e in
            if e.count >= limit {
                e = e.filter { now - $0.value.lastUse < ttl }
                if e.count >= limit, let oldest = e.min(by: { $0.value.lastUse < $1.value.lastUse })?.key { e[oldest] = nil }
            }
            e[token] = Entry(user: user, passwordHash: passwordHash, enabledBy: state.enabledBy, lastUse: now)
        }
        return token
    }

    /// The user `token` stands for, renewing it; nil when unknown, expired, or its user was
    /// deleted or changed password since.
    func user(of token: String, in state: AuthState) -> String? {
        let now = clock()
        let ttl = TimeAmount.nanoseconds(ttlNanoseconds)
        return entries.withLock { e -> String? in
            guard var entry = e[token] else { return nil }
            // Disabling auth anywhere ends the tokens (enabling it again is another write).
            guard now - entry.lastUse < ttl, state.users[entry.user]?.passwordHash == entry.passwordHash,
                  state.enabledBy == entry.enabledBy else {
                e[token] = nil
                return nil
            }
            entry.lastUse = now
            e[token] = entry
            return entry.user
        }
    }

    func removeAll() { entries.withLock { $0.removeAll() } }
}

/// `etcdserverpb.Auth`: users, roles and permissions as replicated auth state (see
/// `AuthTable`), with etcd's validation and errors. Every method but Authenticate and
/// AuthStatus is root-only once auth is enabled (a user may read itself and its roles).
enum AuthService {
    static func register(on routes: inout GRPCRoutes, store: MVCCStore, gate: AuthGate) {
        let service = "etcdserverpb.Auth"
        @Sendable func admin(_ call: GRPCCallContext) throws(EtcdError) { try gate.requireAdmin(call) }
        @Sendable func header() -> ResponseHeader { store.currentHeader() }

        routes.add(service: service, method: "AuthEnable", asyncUnary(limits: nil, AuthEnableResponse.self) {
            (_: AuthEnableRequest, call, done) in
            do throws(EtcdError) { try admin(call) } catch { return done(.failure(error)) }
            store.changeAuth({ (s: AuthState) throws(EtcdError) -> [AuthOp] in
                if s.enabled { return [] }
                guard let root = s.users["root"] else { throw .rootUserNotExist }
                guard root.roles.contains("root") else { throw .rootRoleNotExist }
                return [AuthOp(set: .enabled, to: .enabled(true))]
            }, completion: { done($0.map { _ in AuthEnableResponse(header: header()) }) })
        })
        routes.add(service: service, method: "AuthDisable", asyncUnary(limits: nil, AuthDisableResponse.self) {
            (_: AuthDisableRequest, call, done) in
            do throws(EtcdError) { try admin(call) } catch { return done(.failure(error)) }
            store.changeAuth({ (s: AuthState) throws(EtcdError) -> [AuthOp] in
                s.enabled ? [AuthOp(set: .enabled, to: .enabled(false))] : []
            }, completion: { result in
                if case .success = result { gate.tokens.removeAll() }
                done(result.map { _ in AuthDisableResponse(header: header()) })
            })
        })
        routes.add(service: service, method: "AuthStatus", asyncUnary(limits: nil, AuthStatusResponse.self) {
            (_: AuthStatusRequest, call, done) in
            do throws(EtcdError) { try admin(call) } catch { return done(.failure(error)) }
            let s = store.authState
            done(.success(AuthStatusResponse(header: header(), enabled: s.enabled, authRevision: s.revision)))
        })
        routes.add(service: service, method: "Authenticate", asyncUnary(limits: nil, AuthenticateResponse.self) {
            (r: AuthenticateRequest, call, done) in
            let s = store.authState
            guard s.enabled else { return done(.failure(.authNotEnabled)) }
            guard let user = s.users[r.name] else { return done(.failure(.authFailed)) }
            if user.noPassword { return done(.failure(.noPasswordUser)) }
            // bcrypt is slow on purpose: off the event loop, on its own bounded workers.
            PasswordWork.run(done) {
                guard BCrypt.verify(password: Array(r.password.utf8), hash: user.passwordHash) else { return done(.failure(.authFailed)) }
                let token: String
                do throws(EtcdError) {
                    token = try gate.tokens.issue(for: r.name, in: s)
                } catch { return done(.failure(error)) }
                var response = AuthenticateResponse()
                response.header = header()
                response.token = token
                done(.success(response))
            }
        })

        routes.add(service: service, method: "UserAdd", asyncUnary(limits: nil, AuthUserAddResponse.self) {
            (r: AuthUserAddRequest, call, done) in
            do throws(EtcdError) {
                try admin(call)
                guard !r.name.isEmpty else { throw .userEmpty }
            } catch { return done(.failure(error)) }
            let noPassword = r.options?.noPassword ?? false
            // As etcd 3.5: the password is hashed here (an empty one too); a hashed_password
            // in the request is not used.
            hashPassword(noPassword ? nil : r.password, cost: gate.bcryptCost, failure: done) { hash in
                store.changeAuth({ (s: AuthState) throws(EtcdError) -> [AuthOp] in
                    if s.users[r.name] != nil { throw .userAlreadyExists }
                    return [AuthOp(set: .user(r.name), to: .user(passwordHash: hash, noPassword: noPassword))]
                }, completion: { done($0.map { _ in var x = AuthUserAddResponse(); x.header = header(); return x }) })
            }
        })
        routes.add(service: service, method: "UserGet", asyncUnary(limits: nil, AuthUserGetResponse.self) {
            (r: AuthUserGetRequest, call, done) in
            do throws(EtcdError) {
                let caller = try gate.caller(call)
                let s = caller?.state ?? store.authState
                if let caller, caller.user != r.name { try caller.requireAdmin() }
                guard let user = s.users[r.name] else { throw .userNotFound }
                var x = AuthUserGetResponse()
                x.header = header()
                x.roles = user.roles
                done(.success(x))
            } catch { done(.failure(error)) }
        })
        routes.add(service: service, method: "UserList", asyncUnary(limits: nil, AuthUserListResponse.self) {
            (_: AuthUserListRequest, call, done) in
            do throws(EtcdError) { try admin(call) } catch { return done(.failure(error)) }
            var x = AuthUserListResponse()
            x.header = header()
            x.users = store.authState.users.keys.sorted()
            done(.success(x))
        })
        routes.add(service: service, method: "UserDelete", asyncUnary(limits: nil, AuthUserDeleteResponse.self) {
            (r: AuthUserDeleteRequest, call, done) in
            do throws(EtcdError) { try admin(call) } catch { return done(.failure(error)) }
            store.changeAuth({ (s: AuthState) throws(EtcdError) -> [AuthOp] in
                if s.enabled && r.name == "root" { throw .invalidAuthManagement }
                guard s.users[r.name] != nil else { throw .userNotFound }
                return [AuthOp(remove: .user(r.name))]
            }, completion: { done($0.map { _ in var x = AuthUserDeleteResponse(); x.header = header(); return x }) })
        })
        routes.add(service: service, method: "UserChangePassword", asyncUnary(limits: nil, AuthUserChangePasswordResponse.self) {
            (r: AuthUserChangePasswordRequest, call, done) in
            do throws(EtcdError) { try admin(call) } catch { return done(.failure(error)) }
            // As etcd 3.5: a password is hashed here; without one, hashed_password is taken as
            // the base64 of a bcrypt hash (none at all leaves a password nothing matches).
            hashPassword(r.password.isEmpty ? nil : r.password, cost: gate.bcryptCost, failure: done) { hash in
                store.changeAuth({ (s: AuthState) throws(EtcdError) -> [AuthOp] in
                    guard let user = s.users[r.name] else { throw .userNotFound }
                    // A user without password keeps having none (etcd ignores the password).
                    if user.noPassword { return [AuthOp(set: .user(r.name), to: .user(passwordHash: "", noPassword: true))] }
                    var stored = hash
                    if r.password.isEmpty {
                        guard let decoded = Base64.decode(Array(r.hashedPassword.utf8)) else { throw .noPasswordUser }
                        stored = String(decoding: decoded, as: UTF8.self)
                    }
                    return [AuthOp(set: .user(r.name), to: .user(passwordHash: stored, noPassword: false))]
                }, completion: { done($0.map { _ in var x = AuthUserChangePasswordResponse(); x.header = header(); return x }) })
            }
        })
        routes.add(service: service, method: "UserGrantRole", asyncUnary(limits: nil, AuthUserGrantRoleResponse.self) {
            (r: AuthUserGrantRoleRequest, call, done) in
            do throws(EtcdError) { try admin(call) } catch { return done(.failure(error)) }
            store.changeAuth({ (s: AuthState) throws(EtcdError) -> [AuthOp] in
                guard let user = s.users[r.user] else { throw .userNotFound }
                if r.role != "root" && s.roles[r.role] == nil { throw .roleNotFound }
                if user.roles.contains(r.role) { return [] }
                return [AuthOp(set: .userRole(user: r.user, role: r.role))]
            }, completion: { done($0.map { _ in var x = AuthUserGrantRoleResponse(); x.header = header(); return x }) })
        })
        routes.add(service: service, method: "UserRevokeRole", asyncUnary(limits: nil, AuthUserRevokeRoleResponse.self) {
            (r: AuthUserRevokeRoleRequest, call, done) in
            do throws(EtcdError) { try admin(call) } catch { return done(.failure(error)) }
            store.changeAuth({ (s: AuthState) throws(EtcdError) -> [AuthOp] in
                if s.enabled && r.name == "root" && r.role == "root" { throw .invalidAuthManagement }
                guard let user = s.users[r.name] else { throw .userNotFound }
                guard user.roles.contains(r.role) else { throw .roleNotGranted }
                return [AuthOp(remove: .userRole(user: r.name, role: r.role))]
            }, completion: { done($0.map { _ in var x = AuthUserRevokeRoleResponse(); x.header = header(); return x }) })
        })

        routes.add(service: service, method: "RoleAdd", asyncUnary(limits: nil, AuthRoleAddResponse.self) {
            (r: AuthRoleAddRequest, call, done) in
            do throws(EtcdError) {
                try admin(call)
                guard !r.name.isEmpty else { throw .roleEmpty }
            } catch { return done(.failure(error)) }
            store.changeAuth({ (s: AuthState) throws(EtcdError) -> [AuthOp] in
                if s.roles[r.name] != nil { throw .roleAlreadyExists }
                return [AuthOp(set: .role(r.name))]
            }, completion: { done($0.map { _ in var x = AuthRoleAddResponse(); x.header = header(); return x }) })
        })
        routes.add(service: service, method: "RoleGet", asyncUnary(limits: nil, AuthRoleGetResponse.self) {
            (r: AuthRoleGetRequest, call, done) in
            do throws(EtcdError) {
                let caller = try gate.caller(call)
                let s = caller?.state ?? store.authState
                if let caller, !(s.users[caller.user]?.roles.contains(r.role) ?? false) { try caller.requireAdmin() }
                guard let perms = s.roles[r.role] else { throw .roleNotFound }
                var x = AuthRoleGetResponse()
                x.header = header()
                x.perm = perms.map { Permission(permType: Permission.PermissionType(rawValue: $0.type.rawValue), key: $0.key, rangeEnd: $0.rangeEnd) }
                done(.success(x))
            } catch { done(.failure(error)) }
        })
        routes.add(service: service, method: "RoleList", asyncUnary(limits: nil, AuthRoleListResponse.self) {
            (_: AuthRoleListRequest, call, done) in
            do throws(EtcdError) { try admin(call) } catch { return done(.failure(error)) }
            var x = AuthRoleListResponse()
            x.header = header()
            x.roles = store.authState.roles.keys.sorted()
            done(.success(x))
        })
        routes.add(service: service, method: "RoleDelete", asyncUnary(limits: nil, AuthRoleDeleteResponse.self) {
            (r: AuthRoleDeleteRequest, call, done) in
            do throws(EtcdError) { try admin(call) } catch { return done(.failure(error)) }
            store.changeAuth({ (s: AuthState) throws(EtcdError) -> [AuthOp] in
                if s.enabled && r.role == "root" { throw .invalidAuthManagement }
                guard s.roles[r.role] != nil else { throw .roleNotFound }
                return [AuthOp(remove: .role(r.role))]
            }, completion: { done($0.map { _ in var x = AuthRoleDeleteResponse(); x.header = header(); return x }) })
        })
        routes.add(service: service, method: "RoleGrantPermission", asyncUnary(limits: nil, AuthRoleGrantPermissionResponse.self) {
            (r: AuthRoleGrantPermissionRequest, call, done) in
            do throws(EtcdError) { try admin(call) } catch { return done(.failure(error)) }
            guard let perm = r.perm else { return done(.failure(.permissionNotGiven)) }
            store.changeAuth({ (s: AuthState) throws(EtcdError) -> [AuthOp] in
                guard s.roles[r.name] != nil else { throw .roleNotFound }
                // etcd 3.5.1 stores any range (an empty or inverted one grants nothing).
                guard let type = AuthPermissionType(rawValue: perm.permType.rawValue) else { throw .permissionNotGiven }
                return [AuthOp(set: .permission(role: r.name, key: perm.key, rangeEnd: perm.rangeEnd), to: .permission(type))]
            }, completion: { done($0.map { _ in var x = AuthRoleGrantPermissionResponse(); x.header = header(); return x }) })
        })
        routes.add(service: service, method: "RoleRevokePermission", asyncUnary(limits: nil, AuthRoleRevokePermissionResponse.self) {
            (r: AuthRoleRevokePermissionRequest, call, done) in
            do throws(EtcdError) { try admin(call) } catch { return done(.failure(error)) }
            store.changeAuth({ (s: AuthState) throws(EtcdError) -> [AuthOp] in
                guard let perms = s.roles[r.role] else { throw .roleNotFound }
                guard perms.contains(where: { $0.key == r.key && $0.rangeEnd == r.rangeEnd }) else { throw .permissionNotGranted }
                return [AuthOp(remove: .permission(role: r.role, key: r.key, rangeEnd: r.rangeEnd))]
            }, completion: { done($0.map { _ in var x = AuthRoleRevokePermissionResponse(); x.header = header(); return x }) })
        })
    }

    /// What etcd checks on the other services' methods that carry no key: maintenance that
    /// reads or rewrites the whole store and membership changes are root only; Alarm and
    /// LeaseGrant only refuse an invalid token. (Status, MemberList, MoveLeader and the lease
    /// reads check nothing, as in etcd.)
    static func guardOtherMethods(_ routes: inout GRPCRoutes, gate: AuthGate) {
        for method in ["Defragment", "Hash", "HashKV", "Snapshot"] {
            routes.precede("/etcdserverpb.Maintenance/\(method)") { call in gate.requireAdminForMaintenance(call) }
        }
        for method in ["MemberAdd", "MemberRemove", "MemberUpdate", "MemberPromote"] {
            routes.precede("/etcdserverpb.Cluster/\(method)") { call in
                do throws(EtcdError) { try gate.requireAdmin(call); return nil } catch { return error.grpcStatus }
            }
        }
        for path in ["/etcdserverpb.Maintenance/Alarm", "/etcdserverpb.Lease/LeaseGrant", "/etcdserverpb.KV/Compact"] {
            routes.precede(path) { call in
                do throws(EtcdError) { try gate.rejectInvalidToken(call); return nil } catch { return error.grpcStatus }
            }
        }
    }

    /// A bcrypt hash of `password` made off the event loop (`then` gets it), or "" at once for
    /// nil. When the password workers are saturated, `failure` hears "too many requests".
    static func hashPassword<R>(_ password: String?, cost: Int, failure: @escaping @Sendable (Result<R, EtcdError>) -> Void,
                                then: @escaping @Sendable (String) -> Void) {
        guard let password else { return then("") }
        PasswordWork.run(failure) {
            // The cost was checked at start-up (4…31), the only way hashing fails.
            then((try? BCrypt.hash(password: Array(password.utf8), cost: cost)) ?? "")
        }
    }
}

/// Threads for bcrypt (Authenticate, UserAdd, UserChangePassword), apart from the read pool so
/// that a flood of logins — which anyone can send — never delays reads, and bounded: past
/// `limit` hashes queued or running, a call fails at once with "etcdserver: too many requests".
enum PasswordWork {
    static let limit = 64
    private static let pending = Atomic<Int>(0)
    private static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: max(1, System.coreCount / 2))
        pool.start()
        return pool
    }()

    static func run<R>(_ failure: @escaping @Sendable (Result<R, EtcdError>) -> Void, _ work: @escaping @Sendable () -> Void) {
        guard pending.add(1, ordering: .relaxed).newValue <= limit else {
            pending.subtract(1, ordering: .relaxed)
            return failure(.failure(.tooManyRequests))
        }
        pool.submit { _ in
            defer { pending.subtract(1, ordering: .relaxed) }
            work()
        }
    }
}
