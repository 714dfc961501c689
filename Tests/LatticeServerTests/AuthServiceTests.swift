import EtcdAPI
import GRPCWire
import LatticeCore
import LatticeStore
import NIOConcurrencyHelpers
import Dispatch
import NIOCore
import ProtoWire
import XCTest
@testable import LatticeServer

/// etcd's Auth API over gRPC: who may do what once auth is enabled, and what happens to tokens.
final class AuthServiceTests: XCTestCase {
    private var harness: ServerHarness!

    override func setUp() async throws {
        harness = ServerHarness()
        try await harness.start { $0.bcryptCost = 4 }
    }

    override func tearDown() async throws {
        try await harness.stop()
    }

    private func call<Request: ProtoMessage, Response: ProtoMessage>(
        _ path: String, _ request: Request, token: String? = nil, as: Response.Type = Response.self
    ) async throws -> Response {
        let metadata = token.map { [("token", $0)] } ?? []
        return try Response(protoBytes: try await harness.client.unary(path: path, request: request.protoBytes(), metadata: metadata))
    }

    private func auth<Request: ProtoMessage, Response: ProtoMessage>(
        _ method: String, _ request: Request, token: String? = nil, as: Response.Type = Response.self
    ) async throws -> Response {
        try await call("/etcdserverpb.Auth/\(method)", request, token: token)
    }

    private func login(_ name: String, _ password: String) async throws -> String {
        let r: AuthenticateResponse = try await auth("Authenticate", AuthenticateRequest(name: name, password: password))
        XCTAssertFalse(r.token.isEmpty)
        return r.token
    }

    private func get(_ key: String, token: String?) async throws -> RangeResponse {
        try await call("/etcdserverpb.KV/Range", RangeRequest(key: Array(key.utf8)), token: token)
    }

    private func put(_ key: String, token: String?) async throws {
        let _: PutResponse = try await call("/etcdserverpb.KV/Put", PutRequest(key: Array(key.utf8), value: Array("v".utf8)), token: token)
    }

    /// root and a reader of `/a/`, auth enabled.
    private func setUpUsers() async throws {
        let _: AuthUserAddResponse = try await auth("UserAdd", AuthUserAddRequest(name: "root", password: "rootpw"))
        let _: AuthUserGrantRoleResponse = try await auth("UserGrantRole", AuthUserGrantRoleRequest(user: "root", role: "root"))
        let _: AuthRoleAddResponse = try await auth("RoleAdd", AuthRoleAddRequest(name: "reader"))
        let perm = Permission(permType: .read, key: Array("/a/".utf8), rangeEnd: Array("/a0".utf8))
        let _: AuthRoleGrantPermissionResponse = try await auth("RoleGrantPermission", AuthRoleGrantPermissionRequest(name: "reader", perm: perm))
        let _: AuthUserAddResponse = try await auth("UserAdd", AuthUserAddRequest(name: "alice", password: "alicepw"))
        let _: AuthUserGrantRoleResponse = try await auth("UserGrantRole", AuthUserGrantRoleRequest(user: "alice", role: "reader"))
        let _: AuthEnableResponse = try await auth("AuthEnable", AuthEnableRequest())
    }

    func testEnablingAuthNeedsARootUserWithTheRootRole() async throws {
        await expectStatus(.failedPrecondition, "etcdserver: root user does not exist") {
            let _: AuthEnableResponse = try await self.auth("AuthEnable", AuthEnableRequest())
        }
        let _: AuthUserAddResponse = try await auth("UserAdd", AuthUserAddRequest(name: "root", password: "pw"))
        await expectStatus(.failedPrecondition, "etcdserver: root user does not have root role") {
            let _: AuthEnableResponse = try await self.auth("AuthEnable", AuthEnableRequest())
        }
        let status: AuthStatusResponse = try await auth("AuthStatus", AuthStatusRequest())
        XCTAssertFalse(status.enabled)
        await expectStatus(.failedPrecondition, "etcdserver: authentication is not enabled") {
            _ = try await self.login("root", "pw")
        }
    }

    func testPermissionsTokensAndPasswordChanges() async throws {
        try await setUpUsers()
        await expectStatus(.invalidArgument, "etcdserver: user name is empty") { _ = try await self.get("/a/x", token: nil) }
        await expectStatus(.unauthenticated, "etcdserver: invalid auth token") { _ = try await self.get("/a/x", token: "bogus.1") }
        await expectStatus(.invalidArgument, "etcdserver: authentication failed, invalid user ID or password") {
            _ = try await self.login("alice", "wrong")
        }
        let root = try await login("root", "rootpw")
        try await put("/a/x", token: root)
        let alice = try await login("alice", "alicepw")
        let read = try await get("/a/x", token: alice)
        XCTAssertEqual(read.kvs.count, 1)
        await expectStatus(.permissionDenied, "etcdserver: permission denied") { try await self.put("/a/x", token: alice) }
        await expectStatus(.permissionDenied, "etcdserver: permission denied") { _ = try await self.get("/b", token: alice) }
        await expectStatus(.permissionDenied, "etcdserver: permission denied") {
            let _: AuthUserListResponse = try await self.auth("UserList", AuthUserListRequest(), token: alice)
        }
        // etcd sends the maintenance admin check's error unmapped.
        await expectStatus(.unknown, "auth: permission denied") {
            let _: DefragmentResponse = try await self.call("/etcdserverpb.Maintenance/Defragment", DefragmentRequest(), token: alice)
        }
        let me: AuthUserGetResponse = try await auth("UserGet", AuthUserGetRequest(name: "alice"), token: alice)
        XCTAssertEqual(me.roles, ["reader"], "a user may read itself")

        // A watch on a range the user may not read is cancelled when created.
        let watch = try await harness.openWatch(metadata: [("token", alice)])
        watch.create("/b")
        let denied = try await watch.next()
        XCTAssertTrue(denied.created && denied.canceled)
        XCTAssertEqual(denied.cancelReason, "rpc error: code = PermissionDenied desc = etcdserver: permission denied")

        // A new password invalidates the user's tokens.
        let _: AuthUserChangePasswordResponse = try await auth("UserChangePassword", AuthUserChangePasswordRequest(name: "alice", password: "newpw"), token: root)
        await expectStatus(.unauthenticated, "etcdserver: invalid auth token") { _ = try await self.get("/a/x", token: alice) }
        let again = try await login("alice", "newpw")
        let readAgain = try await get("/a/x", token: again)
        XCTAssertEqual(readAgain.kvs.count, 1)
        // So does deleting the user, and root stays protected while auth is on.
        let _: AuthUserDeleteResponse = try await auth("UserDelete", AuthUserDeleteRequest(name: "alice"), token: root)
        await expectStatus(.unauthenticated, "etcdserver: invalid auth token") { _ = try await self.get("/a/x", token: again) }
        await expectStatus(.invalidArgument, "etcdserver: invalid auth management") {
            let _: AuthUserDeleteResponse = try await self.auth("UserDelete", AuthUserDeleteRequest(name: "root"), token: root)
        }
        let _: AuthDisableResponse = try await auth("AuthDisable", AuthDisableRequest(), token: root)
        let open = try await get("/a/x", token: nil)
        XCTAssertEqual(open.kvs.count, 1, "no token needed once disabled")
    }

    /// Passwords as etcd 3.5 handles them: UserAdd always hashes `password` (a client's
    /// `hashed_password` is not trusted there); UserChangePassword takes a password, or else
    /// the base64 of a bcrypt hash, or else leaves a password nothing matches.
    func testPasswordsAreHashedByTheServerAsEtcdDoes() async throws {
        try await setUpUsers()
        let root = try await login("root", "rootpw")
        let _: AuthUserAddResponse = try await auth("UserAdd", AuthUserAddRequest(name: "bob", password: "bobpw", hashedPassword: "garbage"), token: root)
        _ = try await login("bob", "bobpw")

        // No password and no hash: nothing logs in any more, not even the empty password.
        let _: AuthUserChangePasswordResponse = try await auth("UserChangePassword", AuthUserChangePasswordRequest(name: "bob", password: ""), token: root)
        for attempt in ["bobpw", ""] {
            await expectStatus(.invalidArgument, "etcdserver: authentication failed, invalid user ID or password") {
                _ = try await self.login("bob", attempt)
            }
        }
        // A client-made bcrypt hash, base64 as etcd's client sends it.
        let hash = try BCrypt.hash(password: Array("hashedpw".utf8), cost: 4)
        var change = AuthUserChangePasswordRequest(name: "bob", password: "")
        change.hashedPassword = String(decoding: Base64.encode(Array(hash.utf8)), as: UTF8.self)
        let _: AuthUserChangePasswordResponse = try await auth("UserChangePassword", change, token: root)
        _ = try await login("bob", "hashedpw")
        change.hashedPassword = "not base64!"
        await expectStatus(.unknown, "auth: authentication failed, password was given for no password user") {
            let _: AuthUserChangePasswordResponse = try await self.auth("UserChangePassword", change, token: root)
        }
        _ = try await login("bob", "hashedpw")
    }

    /// bcrypt runs on its own bounded workers: a flood of logins is refused at once with etcd's
    /// "too many requests" rather than queueing without end.
    func testPasswordWorkIsBounded() async throws {
        try await setUpUsers()
        let release = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        let refused = NIOLockedValueBox(0)
        for _ in 0..<PasswordWork.limit {
            PasswordWork.run({ (_: Result<Void, EtcdError>) in refused.withLockedValue { $0 += 1 } }) {
                started.signal()
                release.wait()
            }
        }
        XCTAssertEqual(refused.withLockedValue { $0 }, 0, "up to the limit, work is taken")
        started.wait()  // a worker holds one; the rest are queued
        await expectStatus(.resourceExhausted, "etcdserver: too many requests") { _ = try await self.login("alice", "alicepw") }
        for _ in 0..<PasswordWork.limit { release.signal() }
        let deadline = ContinuousClock.now + .seconds(10)
        var token: String?
        while token == nil, ContinuousClock.now < deadline {
            token = try? await login("alice", "alicepw")
        }
        XCTAssertNotNil(token, "once the work drains, logins are served again")
    }

    /// Attaching a key to a lease, and revoking it, needs write access to every key already on
    /// the lease (etcd's rule: otherwise the caller could delete keys it may not write). A
    /// lease without keys may be revoked without a token; an invalid token is refused anyway.
    func testALeaseWithAKeyTheCallerMayNotWriteCanBeNeitherJoinedNorRevoked() async throws {
        let _: AuthRoleAddResponse = try await auth("RoleAdd", AuthRoleAddRequest(name: "writer"))
        let perm = Permission(permType: .readWrite, key: Array("/a/".utf8), rangeEnd: Array("/a0".utf8))
        let _: AuthRoleGrantPermissionResponse = try await auth("RoleGrantPermission", AuthRoleGrantPermissionRequest(name: "writer", perm: perm))
        let _: AuthUserAddResponse = try await auth("UserAdd", AuthUserAddRequest(name: "bob", password: "bobpw"))
        let _: AuthUserGrantRoleResponse = try await auth("UserGrantRole", AuthUserGrantRoleRequest(user: "bob", role: "writer"))
        try await setUpUsers()
        let root = try await login("root", "rootpw")
        let bob = try await login("bob", "bobpw")
        let mixed: LeaseGrantResponse = try await call("/etcdserverpb.Lease/LeaseGrant", LeaseGrantRequest(ttl: 600), token: root)
        let _: PutResponse = try await call("/etcdserverpb.KV/Put", PutRequest(key: Array("/a/x".utf8), value: [], lease: mixed.id), token: root)
        let _: PutResponse = try await call("/etcdserverpb.KV/Put", PutRequest(key: Array("/b/x".utf8), value: [], lease: mixed.id), token: root)
        await expectStatus(.permissionDenied, "etcdserver: permission denied") {
            let _: PutResponse = try await self.call("/etcdserverpb.KV/Put", PutRequest(key: Array("/a/y".utf8), value: [], lease: mixed.id), token: bob)
        }
        await expectStatus(.permissionDenied, "etcdserver: permission denied") {
            let _: LeaseRevokeResponse = try await self.call("/etcdserverpb.Lease/LeaseRevoke", LeaseRevokeRequest(id: mixed.id), token: bob)
        }
        let own: LeaseGrantResponse = try await call("/etcdserverpb.Lease/LeaseGrant", LeaseGrantRequest(ttl: 600), token: root)
        let _: PutResponse = try await call("/etcdserverpb.KV/Put", PutRequest(key: Array("/a/y".utf8), value: [], lease: own.id), token: bob)
        let _: PutResponse = try await call("/etcdserverpb.KV/Put", PutRequest(key: Array("/a/z".utf8), value: [], lease: own.id), token: bob)
        let _: LeaseRevokeResponse = try await call("/etcdserverpb.Lease/LeaseRevoke", LeaseRevokeRequest(id: own.id), token: bob)
        let left: RangeResponse = try await call("/etcdserverpb.KV/Range", RangeRequest(key: Array("/".utf8), rangeEnd: Array("0".utf8)), token: root)
        XCTAssertEqual(left.kvs.map { String(decoding: $0.key, as: UTF8.self) }, ["/a/x", "/b/x"])
        let empty: LeaseGrantResponse = try await call("/etcdserverpb.Lease/LeaseGrant", LeaseGrantRequest(ttl: 600), token: root)
        await expectStatus(.unauthenticated, "etcdserver: invalid auth token") {
            let _: LeaseRevokeResponse = try await self.call("/etcdserverpb.Lease/LeaseRevoke", LeaseRevokeRequest(id: empty.id), token: "bogus.1")
        }
        let _: LeaseRevokeResponse = try await call("/etcdserverpb.Lease/LeaseRevoke", LeaseRevokeRequest(id: empty.id))
    }

    /// Lease TimeToLive with keys lists keys only to a user who may read each of them (etcd
    /// 3.5.9's rule); without keys it needs no permission.
    func testLeaseKeysAreListedOnlyToReadersOfEachKey() async throws {
        try await setUpUsers()
        let root = try await login("root", "rootpw")
        let alice = try await login("alice", "alicepw")
        let lease: LeaseGrantResponse = try await call("/etcdserverpb.Lease/LeaseGrant", LeaseGrantRequest(ttl: 600), token: root)
        let _: PutResponse = try await call("/etcdserverpb.KV/Put", PutRequest(key: Array("/a/x".utf8), value: [], lease: lease.id), token: root)
        let allowed: LeaseTimeToLiveResponse = try await call("/etcdserverpb.Lease/LeaseTimeToLive", LeaseTimeToLiveRequest(id: lease.id, keys: true), token: alice)
        XCTAssertEqual(allowed.keys, [Array("/a/x".utf8)])
        let _: PutResponse = try await call("/etcdserverpb.KV/Put", PutRequest(key: Array("/b/x".utf8), value: [], lease: lease.id), token: root)
        await expectStatus(.permissionDenied, "etcdserver: permission denied") {
            let _: LeaseTimeToLiveResponse = try await self.call("/etcdserverpb.Lease/LeaseTimeToLive", LeaseTimeToLiveRequest(id: lease.id, keys: true), token: alice)
        }
        let ttl: LeaseTimeToLiveResponse = try await call("/etcdserverpb.Lease/LeaseTimeToLive", LeaseTimeToLiveRequest(id: lease.id), token: alice)
        XCTAssertEqual(ttl.grantedTTL, 600)
    }

    /// A request is validated before its permissions are checked, as in etcd: a bad request
    /// gets its own error, whoever sends it.
    func testBadRequestsGetTheirOwnErrorBeforePermissions() async throws {
        try await setUpUsers()
        let alice = try await login("alice", "alicepw")
        await expectStatus(.invalidArgument, "etcdserver: key is not provided") {
            let _: PutResponse = try await self.call("/etcdserverpb.KV/Put", PutRequest(key: [], value: []), token: alice)
        }
        let ops = (0...128).map { RequestOp(.put(PutRequest(key: Array("/b/\($0)".utf8), value: []))) }
        await expectStatus(.invalidArgument, "etcdserver: too many operations in txn request") {
            let _: TxnResponse = try await self.call("/etcdserverpb.KV/Txn", TxnRequest(compare: [], success: ops), token: alice)
        }
        // A token header that is there but empty is an invalid token, not a missing one.
        await expectStatus(.unauthenticated, "etcdserver: invalid auth token") { _ = try await self.get("/a/x", token: "") }
    }

    /// A watch is checked on the range it reads: an empty key watches "\0".
    func testWatchPermissionIsCheckedOnTheRangeTheWatchReads() async throws {
        try await setUpUsers()
        let root = try await login("root", "rootpw")
        let _: AuthRoleAddResponse = try await auth("RoleAdd", AuthRoleAddRequest(name: "zero"), token: root)
        let perm = Permission(permType: .read, key: [0], rangeEnd: [])
        let _: AuthRoleGrantPermissionResponse = try await auth("RoleGrantPermission", AuthRoleGrantPermissionRequest(name: "zero", perm: perm), token: root)
        let _: AuthUserGrantRoleResponse = try await auth("UserGrantRole", AuthUserGrantRoleRequest(user: "alice", role: "zero"), token: root)
        let alice = try await login("alice", "alicepw")
        let watch = try await harness.openWatch(metadata: [("token", alice)])
        watch.create("")
        let created = try await watch.next()
        XCTAssertTrue(created.created)
        XCTAssertFalse(created.canceled, "read on \"\\0\" permits the watch of the empty key")
    }

    func testSimpleTokensExpireAfterTheirTTLSinceLastUseAndAreBounded() {
        let now = NIOLockedValueBoxDeadline(.uptimeNanoseconds(1_000_000_000))
        let tokens = SimpleTokens(ttl: .seconds(300), clock: { now.get() }, limit: 3)
        var state = AuthState()
        state.users["u"] = AuthUser(name: "u", passwordHash: "h", noPassword: false, roles: [])
        state.revision = 7
        let t = tokens.issue(for: "u", in: state)
        XCTAssertTrue(t.hasSuffix(".7"))
        XCTAssertEqual(t.count, 18, "16 random letters, a dot and the auth revision")
        now.advance(.seconds(299))
        XCTAssertEqual(tokens.user(of: t, in: state), "u", "used within the TTL: renewed")
        now.advance(.seconds(299))
        XCTAssertEqual(tokens.user(of: t, in: state), "u")
        now.advance(.seconds(300))
        XCTAssertNil(tokens.user(of: t, in: state), "unused for the TTL: expired")
        let first = tokens.issue(for: "u", in: state)
        now.advance(.seconds(1))
        for _ in 2...4 { _ = tokens.issue(for: "u", in: state) }
        XCTAssertEqual(tokens.count, 3)
        XCTAssertNil(tokens.user(of: first, in: state), "past the limit, the least recently used token goes")
    }

    /// Auth disabled and enabled again — on any member, so without this member's AuthDisable
    /// clearing its tokens — ends the tokens issued before: the enabling write differs.
    func testSimpleTokensEndWhenAuthIsDisabledAndEnabledAgainElsewhere() {
        let tokens = SimpleTokens(ttl: .seconds(300), clock: { .now() })
        var state = AuthState()
        state.users["u"] = AuthUser(name: "u", passwordHash: "h", noPassword: false, roles: [])
        state.enabled = true
        state.enabledBy = Dot(member: 1, seq: 4)
        let t = tokens.issue(for: "u", in: state)
        XCTAssertEqual(tokens.user(of: t, in: state), "u")
        var disabled = state
        disabled.enabled = false
        disabled.enabledBy = nil
        XCTAssertNil(tokens.user(of: tokens.issue(for: "u", in: state), in: disabled), "auth off: the token is invalid")
        var reenabled = state
        reenabled.enabledBy = Dot(member: 2, seq: 9)
        XCTAssertNil(tokens.user(of: t, in: reenabled), "enabled again by another write: the token issued before is invalid")
    }
}

/// A settable deadline for token clocks.
final class NIOLockedValueBoxDeadline: Sendable {
    private let box: NIOLockedValueBox<NIODeadline>
    init(_ value: NIODeadline) { box = NIOLockedValueBox(value) }
    func get() -> NIODeadline { box.withLockedValue { $0 } }
    func advance(_ by: TimeAmount) { box.withLockedValue { $0 = $0 + by } }
}
