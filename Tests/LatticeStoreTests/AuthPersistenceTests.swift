import EtcdAPI
import LatticeCore
import Synchronization
import XCTest
@testable import LatticeStore

/// Auth state is replicated state of the store: it survives restarts (WAL replay, snapshots,
/// defragmentation), arrives from other members through the one apply path, and does not
/// change the key revision.
final class AuthPersistenceTests: XCTestCase {
    private var dir: String!

    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("lattice-auth-\(UUID().uuidString)").path
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func open(_ id: UInt64 = 1, snapshotCount: Int = 100_000, directory: String? = nil) throws -> MVCCStore {
        var c = MVCCStore.Configuration(memberID: id, clusterID: 2)
        c.dataDirectory = directory ?? dir
        c.snapshotCount = snapshotCount
        c.collectGarbage = false
        return try MVCCStore(configuration: c)
    }

    private func change(_ store: MVCCStore, _ ops: [AuthOp]) throws {
        _ = try store.wait { done in store.changeAuth({ _ in ops }, completion: done) }
    }

    private func populate(_ store: MVCCStore) throws {
        try change(store, [AuthOp(set: .user("root"), to: .user(passwordHash: "$2a$04$r", noPassword: false)),
                           AuthOp(set: .userRole(user: "root", role: "root"))])
        try change(store, [AuthOp(set: .role("reader"))])
        try change(store, [AuthOp(set: .permission(role: "reader", key: b("/a/"), rangeEnd: b("/a0")), to: .permission(.read))])
        try change(store, [AuthOp(set: .user("alice"), to: .user(passwordHash: "$2a$04$a", noPassword: false))])
        try change(store, [AuthOp(set: .userRole(user: "alice", role: "reader"))])
        try change(store, [AuthOp(set: .enabled, to: .enabled(true))])
    }

    private func restartKeepsAuth(snapshotCount: Int) throws {
        var store: MVCCStore? = try open(snapshotCount: snapshotCount)
        let revision = store!.currentRevision
        try populate(store!)
        // Keys written between auth changes, so snapshots fall between them too.
        for i in 0..<20 { _ = try store!.put(PutRequest(key: b("k\(i)"), value: b("v"))) }
        try change(store!, [AuthOp(remove: .userRole(user: "alice", role: "reader"))])
        XCTAssertEqual(store!.currentRevision, revision + 20, "auth changes take no key revision")
        let before = store!.authState
        XCTAssertTrue(before.enabled)
        XCTAssertEqual(before.users["alice"]?.roles, [])
        XCTAssertEqual(before.roles["reader"], [AuthPermission(type: .read, key: b("/a/"), rangeEnd: b("/a0"))])
        store!.close()
        store = nil
        let reopened = try open(snapshotCount: snapshotCount)
        XCTAssertEqual(reopened.authState, before)
        try reopened.defragment()
        XCTAssertEqual(reopened.authState, before)
        reopened.close()
        let again = try open(snapshotCount: snapshotCount)
        defer { again.close() }
        XCTAssertEqual(again.authState, before, "after a defragmentation and another restart")
    }

    func testAuthStateSurvivesARestartFromTheWAL() throws {
        try restartKeepsAuth(snapshotCount: 100_000)
    }

    func testAuthStateSurvivesARestartFromSnapshots() throws {
        try restartKeepsAuth(snapshotCount: 3)
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: dir + "/snap").filter { $0.hasSuffix(".snap") }.isEmpty)
    }

    func testAuthChangesReachAnotherMember() throws {
        let a = try open(1, directory: dir + "/a"), other = try open(2, directory: dir + "/b")
        defer { a.close(); other.close() }
        try populate(a)
        for c in a.changes(since: other.versionVector) ?? [] { try other.applyRemote(c) }
        var expected = a.authState, got = other.authState
        expected.revision = 0
        got.revision = 0
        XCTAssertEqual(got, expected)
        XCTAssertTrue(other.authState.isPermitted("alice", key: b("/a/x"), rangeEnd: [], write: false))
    }

    /// The check runs on the writer against the state of the writes before it, so two requests
    /// racing to add the same user cannot both succeed.
    func testTheCheckSeesEarlierChangesOfTheSameBatch() throws {
        let store = try open()
        defer { store.close() }
        let results = Mutex<[Result<AuthState, EtcdError>]>([])
        let group = DispatchGroup()
        for _ in 0..<8 {
            group.enter()
            store.changeAuth({ (s: AuthState) throws(EtcdError) -> [AuthOp] in
                if s.users["bob"] != nil { throw EtcdError(.failedPrecondition, "exists") }
                return [AuthOp(set: .user("bob"), to: .user(passwordHash: "", noPassword: true))]
            }, completion: { r in results.withLock { $0.append(r) }; group.leave() })
        }
        group.wait()
        XCTAssertEqual(results.withLock { $0.filter { if case .success = $0 { return true } else { return false } }.count }, 1)
    }
}
