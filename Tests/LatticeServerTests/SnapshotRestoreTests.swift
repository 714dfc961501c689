import EtcdAPI
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

        var damaged = bytes
        damaged[damaged.count / 2] ^= 0xFF
        XCTAssertThrowsError(try SnapshotContents.parse(damaged)) { error in
            XCTAssertTrue("\(error)".contains("hash mismatch"), "\(error)")
        }
        XCTAssertThrowsError(try SnapshotContents.parse(Array("nothing here".utf8)))
    }
}
