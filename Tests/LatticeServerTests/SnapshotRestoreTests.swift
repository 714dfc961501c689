import EtcdAPI
import LatticeCore
@testable import LatticeServer
import LatticeStore
import LatticeTestSupport
import XCTest

/// A Lattice snapshot stream restores into a new data directory holding the same keys, values
/// and lease attachments; damage is caught by the snapshot's checksum.
final class SnapshotRestoreTests: XCTestCase {
    func testASnapshotRestoresIntoANewDataDirectoryAndDamageIsRefused() throws {
        let dirs = TemporaryDirectories(prefix: "lattice-restore")
        defer { dirs.removeAll() }
        let source = try MVCCStore(configuration: .init(memberID: 1, clusterID: 2))
        _ = try source.leaseGrant(LeaseGrantRequest(ttl: 60, id: 77))
        for i in 0..<300 {
            _ = try source.put(PutRequest(key: Array("k/\(i)".utf8), value: Array(repeating: UInt8(i % 251), count: i * 10),
                                          lease: i == 5 ? 77 : 0))
        }
        _ = try source.deleteRange(DeleteRangeRequest(key: Array("k/7".utf8)))
        let bytes = source.snapshotBytes()
        source.close()

        let contents = try SnapshotContents.parse(bytes)
        XCTAssertEqual(contents.format, .lattice)
        XCTAssertEqual(contents.kvs.count, 299)
        let dir = dirs.make()
        XCTAssertEqual(try contents.restore(into: dir, memberID: 1, clusterID: 2, defaultLeaseTTL: 30), 1)
        let restored = try MVCCStore(configuration: { var c = MVCCStore.Configuration(memberID: 1, clusterID: 2); c.dataDirectory = dir; return c }())
        defer { restored.close() }
        let all = try restored.range(RangeRequest(key: [0], rangeEnd: [0]))
        XCTAssertEqual(all.kvs.map(\.key), contents.kvs.map(\.key))
        XCTAssertEqual(all.kvs.map(\.value), contents.kvs.map(\.value))
        XCTAssertEqual(all.kvs.first { $0.key == Array("k/5".utf8) }?.lease, 77)
        XCTAssertThrowsError(try contents.restore(into: dir, memberID: 1, clusterID: 2, defaultLeaseTTL: 30))
    }

    /// Users, roles, permissions and the enabled flag travel in the snapshot: restored, auth is
    /// on with the same state (a snapshot without auth restores none).
    func testASnapshotCarriesTheAuthState() throws {
        let dirs = TemporaryDirectories(prefix: "lattice-restore-auth")
        defer { dirs.removeAll() }
        let source = try MVCCStore(configuration: .init(memberID: 1, clusterID: 2))
        let plain = try SnapshotContents.parse(source.snapshotBytes())
        XCTAssertEqual(plain.auth, [], "no auth state, no auth operations")
        try source.changeAuth([
            AuthOp(set: .user("root"), to: .user(passwordHash: "$2a$04$root", noPassword: false)),
            AuthOp(set: .userRole(user: "root", role: "root")),
            AuthOp(set: .role("app")),
            AuthOp(set: .permission(role: "app", key: Array("app/".utf8), rangeEnd: Array("app0".utf8)), to: .permission(.readwrite)),
            AuthOp(set: .permission(role: "app", key: Array("cfg".utf8), rangeEnd: []), to: .permission(.read)),
            AuthOp(set: .user("bot"), to: .user(passwordHash: "", noPassword: true)),
            AuthOp(set: .userRole(user: "bot", role: "app")),
            AuthOp(set: .enabled, to: .enabled(true)),
        ])
        _ = try source.put(PutRequest(key: Array("app/x".utf8), value: Array("1".utf8)))
        let expected = source.authState
        let contents = try SnapshotContents.parse(source.snapshotBytes())
        source.close()
        XCTAssertEqual(contents.kvs.count, 1, "the auth operations are not keys")

        let dir = dirs.make()
        try contents.restore(into: dir, memberID: 1, clusterID: 2, defaultLeaseTTL: 30)
        let restored = try MVCCStore(configuration: { var c = MVCCStore.Configuration(memberID: 1, clusterID: 2); c.dataDirectory = dir; return c }())
        defer { restored.close() }
        var got = restored.authState
        got.revision = expected.revision  // counts the changes applied here, not the source's
        XCTAssertNotNil(got.enabledBy)
        got.enabledBy = expected.enabledBy  // enabled by the restore's own write
        XCTAssertEqual(got, expected)
        XCTAssertTrue(got.enabled)
    }

    /// Every key keeps its create revision, mod revision and version (kube-apiserver's
    /// resourceVersions stay valid), across a restart too; the store continues after the
    /// snapshot's revision and earlier revisions read as compacted.
    func testARestoredKeyspaceKeepsItsRevisionsAndVersions() throws {
        let dirs = TemporaryDirectories(prefix: "lattice-restore-revisions")
        defer { dirs.removeAll() }
        let source = try MVCCStore(configuration: .init(memberID: 1, clusterID: 2))
        for round in 0..<3 {
            for i in 0..<200 where i % (round + 1) == 0 {
                _ = try source.put(PutRequest(key: Array("k/\(i)".utf8), value: Array("v\(round)".utf8)))
            }
        }
        _ = try source.deleteRange(DeleteRangeRequest(key: Array("k/3".utf8)))
        _ = try source.put(PutRequest(key: Array("k/3".utf8), value: Array("again".utf8)))
        _ = try source.deleteRange(DeleteRangeRequest(key: Array("k/9".utf8)))
        let sourceRevision = source.currentRevision
        let expected = try source.range(RangeRequest(key: [0], rangeEnd: [0])).kvs
        let bytes = source.snapshotBytes()
        source.close()

        let contents = try SnapshotContents.parse(bytes)
        XCTAssertEqual(contents.revision, sourceRevision)
        let dir = dirs.make()
        try contents.restore(into: dir, memberID: 1, clusterID: 2, defaultLeaseTTL: 30)
        let configuration = { var c = MVCCStore.Configuration(memberID: 1, clusterID: 2); c.dataDirectory = dir; return c }()
        for restart in 0..<2 {
            let restored = try MVCCStore(configuration: configuration)
            defer { restored.close() }
            let all = try restored.range(RangeRequest(key: [0], rangeEnd: [0]))
            let k0 = Array("k/0".utf8)
            XCTAssertEqual(all.kvs.filter { $0.key != k0 }, expected.filter { $0.key != k0 }, "restart \(restart)")
            XCTAssertEqual(all.kvs.count, expected.count)
            XCTAssertEqual(all.header?.revision, sourceRevision + Int64(restart))
            if restart == 0 {
                XCTAssertThrowsError(try restored.range(RangeRequest(key: [0], rangeEnd: [0], revision: sourceRevision - 1))) { error in
                    XCTAssertEqual((error as? EtcdError)?.message, "etcdserver: mvcc: required revision has been compacted")
                }
                let put = try restored.put(PutRequest(key: k0, value: Array("after".utf8), prevKV: true))
                XCTAssertEqual(put.header?.revision, sourceRevision + 1)
                XCTAssertEqual(put.prevKV, expected.first { $0.key == k0 })
                let after = try restored.range(RangeRequest(key: k0)).kvs.first
                XCTAssertEqual(after?.version, (put.prevKV?.version ?? 0) + 1)
                XCTAssertEqual(after?.createRevision, put.prevKV?.createRevision)
            }
        }

        var damaged = bytes
        damaged[damaged.count / 2] ^= 0xFF
        XCTAssertThrowsError(try SnapshotContents.parse(damaged)) { error in
            XCTAssertTrue("\(error)".contains("hash mismatch"), "\(error)")
        }
        XCTAssertThrowsError(try SnapshotContents.parse(Array("nothing here".utf8)))
    }
}
