import EtcdAPI
import GRPCWire
import LatticeCore
import NIOConcurrencyHelpers
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

    func testSimpleTokensExpireAfterTheirTTLSinceLastUseAndAreBounded() {
        let now = NIOLockedValueBoxDeadline(.uptimeNanoseconds(1_000_000_000))
        let tokens = SimpleTokens(ttl: .seconds(300), clock: { now.get() }, limit: 3)
        var state = AuthState()
        state.users["u"] = AuthUser(name: "u", passwordHash: "h", noPassword: false, roles: [])
        let t = tokens.issue(for: "u", passwordHash: "h", revision: 7)
        XCTAssertTrue(t.hasSuffix(".7"))
        XCTAssertEqual(t.count, 18, "16 random letters, a dot and the suffix")
        now.advance(.seconds(299))
        XCTAssertEqual(tokens.user(of: t, in: state), "u", "used within the TTL: renewed")
        now.advance(.seconds(299))
        XCTAssertEqual(tokens.user(of: t, in: state), "u")
        now.advance(.seconds(300))
        XCTAssertNil(tokens.user(of: t, in: state), "unused for the TTL: expired")
        let first = tokens.issue(for: "u", passwordHash: "h", revision: 1)
        now.advance(.seconds(1))
        for i in 2...4 { _ = tokens.issue(for: "u", passwordHash: "h", revision: UInt64(i)) }
        XCTAssertEqual(tokens.count, 3)
        XCTAssertNil(tokens.user(of: first, in: state), "past the limit, the least recently used token goes")
    }
}

/// A settable deadline for token clocks.
final class NIOLockedValueBoxDeadline: Sendable {
    private let box: NIOLockedValueBox<NIODeadline>
    init(_ value: NIODeadline) { box = NIOLockedValueBox(value) }
    func get() -> NIODeadline { box.withLockedValue { $0 } }
    func advance(_ by: TimeAmount) { box.withLockedValue { $0 = $0 + by } }
}
