import LatticeTestSupport
import XCTest
@testable import LatticeCore

/// Auth state as replicated state: concurrent grants, revokes and deletions merge the same way
/// on every member, whatever the order they arrive in, and removal wins.
final class AuthStateTests: XCTestCase {
    private func user(_ name: String, _ hash: String = "$2a$04$x") -> Op { .auth(AuthOp(set: .user(name), to: .user(passwordHash: hash, noPassword: false))) }
    private func role(_ name: String) -> Op { .auth(AuthOp(set: .role(name))) }
    private func grant(_ user: String, _ role: String) -> Op { .auth(AuthOp(set: .userRole(user: user, role: role))) }
    private func revoke(_ user: String, _ role: String) -> Op { .auth(AuthOp(remove: .userRole(user: user, role: role))) }
    private func perm(_ role: String, _ key: String, _ end: [UInt8], _ type: AuthPermissionType) -> Op {
        .auth(AuthOp(set: .permission(role: role, key: bytes(key), rangeEnd: end), to: .permission(type)))
    }

    /// Two members, each changed once without seeing the other's change, then synced both ways.
    private func concurrently(base: [Op], _ left: [Op], _ right: [Op]) throws -> (Replica, Replica) {
        var a = Replica.test(1), b = Replica.test(2)
        if !base.isEmpty { a.makeChange(base) }
        try b.sync(from: a)
        if !left.isEmpty { a.makeChange(left) }
        if !right.isEmpty { b.makeChange(right) }
        try a.sync(from: b)
        try b.sync(from: a)
        XCTAssertEqual(a.authState, b.authState, "both members show the same auth state")
        return (a, b)
    }

    func testARevokeBeatsAConcurrentGrantInEitherOrder() throws {
        let base = [user("alice"), role("reader"), grant("alice", "reader")]
        // Revoke on one side, a re-grant (a no-op for etcd, but a write here) on the other.
        let (a, _) = try concurrently(base: base, [revoke("alice", "reader")], [grant("alice", "reader")])
        XCTAssertEqual(a.authState.users["alice"]?.roles, [])
        // A grant written after the revoke was seen brings the role back.
        var c = a
        c.makeChange([grant("alice", "reader")])
        XCTAssertEqual(c.authState.users["alice"]?.roles, ["reader"])
    }

    func testADeletedUserStaysDeletedAndComesBackWithoutItsOldRoles() throws {
        let base = [user("alice", "$2a$04$old"), role("reader"), grant("alice", "reader")]
        let (a, _) = try concurrently(base: base, [.auth(AuthOp(remove: .user("alice")))],
                                      [user("alice", "$2a$04$new"), role("writer"), grant("alice", "writer")])
        XCTAssertNil(a.authState.users["alice"], "a password change or grant concurrent with the deletion does not resurrect the user")
        XCTAssertEqual(Set(a.authState.roles.keys), ["reader", "writer"])
        var c = a
        c.makeChange([user("alice", "$2a$04$again")])
        XCTAssertEqual(c.authState.users["alice"], AuthUser(name: "alice", passwordHash: "$2a$04$again", noPassword: false, roles: []))
    }

    func testDeletingARoleTakesItsPermissionsAndGrantsEvenConcurrentOnes() throws {
        let base = [user("alice"), role("reader"), perm("reader", "/a", [], .read)]
        let (a, _) = try concurrently(base: base, [.auth(AuthOp(remove: .role("reader")))],
                                      [grant("alice", "reader"), perm("reader", "/b", [0], .write)])
        XCTAssertNil(a.authState.roles["reader"])
        XCTAssertEqual(a.authState.users["alice"]?.roles, [])
        var c = a
        c.makeChange([role("reader")])
        XCTAssertEqual(c.authState.roles["reader"], [], "a role added again starts empty")
    }

    func testConcurrentPasswordChangesAndPermissionTypesAgreeByLastWriter() throws {
        let clockA = TestClock(), clockB = TestClock(1_700_000_000_000 + 50)
        var a = Replica.test(1, clock: clockA), b = Replica.test(2, clock: clockB)
        a.makeChange([user("alice"), role("r"), perm("r", "/k", [], .read)])
        try b.sync(from: a)
        a.makeChange([user("alice", "$2a$04$fromA"), perm("r", "/k", [], .write)])
        b.makeChange([user("alice", "$2a$04$fromB"), perm("r", "/k", [], .readwrite)])
        try a.sync(from: b)
        try b.sync(from: a)
        XCTAssertEqual(a.authState, b.authState)
        XCTAssertEqual(a.authState.users["alice"]?.passwordHash, "$2a$04$fromB", "the later HLC wins")
        XCTAssertEqual(a.authState.roles["r"], [AuthPermission(type: .readwrite, key: bytes("/k"), rangeEnd: [])])
    }

    func testAuthStateSurvivesEncodingAndCountsItsRevision() throws {
        var a = Replica.test(1)
        XCTAssertEqual(a.authState.revision, 1)
        a.makeChange([user("root"), grant("root", "root"), role("r"), perm("r", "/p/", bytes("/p0"), .readwrite)])
        a.makeChange([.auth(AuthOp(set: .enabled, to: .enabled(true)))])
        XCTAssertEqual(a.authState.revision, 5, "enabling auth does not count, as in etcd")
        XCTAssertTrue(a.authState.enabled)
        XCTAssertEqual(a.authState.users["root"]?.roles, ["root"], "the root role needs no role record")
        let restored = try Replica(decodingState: a.encodeState(), wallClock: TestClock())
        XCTAssertEqual(restored.authState, a.authState)
        XCTAssertEqual(restored.stateHash(), a.stateHash())
        var b = Replica.test(2)
        b.makeChange([user("root")])
        XCTAssertNotEqual(b.stateHash(), a.stateHash(), "the state hash covers the auth state")
    }

    // MARK: permission checks (etcd's range permission rules)

    private func state(_ perms: [AuthPermission], roles: [String] = ["r"]) -> AuthState {
        var s = AuthState()
        s.enabled = true
        s.users["u"] = AuthUser(name: "u", passwordHash: "", noPassword: true, roles: roles)
        s.roles["r"] = perms
        return s
    }

    func testPermissionsCoverKeysRangesPrefixesAndOpenEnds() {
        let s = state([
            AuthPermission(type: .read, key: bytes("/one"), rangeEnd: []),
            AuthPermission(type: .readwrite, key: bytes("/a/"), rangeEnd: bytes("/a0")),
            AuthPermission(type: .write, key: bytes("/w/"), rangeEnd: bytes("/w/m")),
            AuthPermission(type: .write, key: bytes("/w/m"), rangeEnd: bytes("/w0")),
            AuthPermission(type: .read, key: bytes("/z"), rangeEnd: [0]),
        ])
        func read(_ k: String, _ e: [UInt8] = []) -> Bool { s.isPermitted("u", key: bytes(k), rangeEnd: e, write: false) }
        func write(_ k: String, _ e: [UInt8] = []) -> Bool { s.isPermitted("u", key: bytes(k), rangeEnd: e, write: true) }
        XCTAssertTrue(read("/one"))
        XCTAssertFalse(write("/one"), "read does not allow writes")
        XCTAssertFalse(read("/one", bytes("/onf")), "a one-key permission does not cover a range")
        XCTAssertFalse(read("/one1"))
        XCTAssertTrue(read("/a/x") && write("/a/x"), "readwrite allows both")
        XCTAssertTrue(read("/a/", bytes("/a0")), "the prefix itself")
        XCTAssertTrue(read("/a/b", bytes("/a/c")), "a range inside it")
        XCTAssertFalse(read("/a/", bytes("/a1")), "a range past its end")
        XCTAssertTrue(write("/w/a", bytes("/w/z")), "two adjacent ranges together cover a range across both")
        XCTAssertFalse(read("/w/a"), "write does not allow reads")
        XCTAssertTrue(read("/zz", [0]) && read("/z"), "an open-ended permission covers an open-ended range")
        XCTAssertFalse(read("/y", [0]), "a range starting below it is not covered")
        XCTAssertFalse(read("/b"))
        XCTAssertFalse(state([], roles: []).isPermitted("u", key: bytes("/a"), rangeEnd: [], write: false))
        XCTAssertFalse(s.isPermitted("nobody", key: bytes("/one"), rangeEnd: [], write: false))
        let root = state([], roles: ["root"])
        XCTAssertTrue(root.isPermitted("u", key: [0], rangeEnd: [0], write: true), "root may do anything")
        XCTAssertTrue(root.isAdmin("u"))
        XCTAssertFalse(s.isAdmin("u"))
    }
}
