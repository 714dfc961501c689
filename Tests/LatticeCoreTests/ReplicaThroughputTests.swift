import XCTest
import LatticeCore

/// Hot-path cost of the CRDT layer on a single node, opt-in:
/// `LATTICE_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter ReplicaThroughputTests`.
/// Compares `makeChange` + garbage collection per batch against a plain dictionary of the same
/// keys and values (the floor any store pays).
final class ReplicaThroughputTests: XCTestCase {
    func testLocalPutThroughput() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["LATTICE_BENCH"] != nil, "set LATTICE_BENCH=1 to run")
        let keys = (0..<10_000).map { bytes("/registry/pods/default/pod-\($0)") }
        let value = bytes(String(repeating: "x", count: 256))
        let puts = 1_000_000
        let batch = 64

        var plain: [[UInt8]: [UInt8]] = [:]
        var start = Date()
        for i in 0..<puts { plain[keys[i % keys.count]] = value }
        let plainSeconds = Date().timeIntervalSince(start)

        var replica = Replica(member: 1, wallClock: SystemWallClock())
        start = Date()
        for i in 0..<puts {
            replica.makeChange([.put(key: keys[i % keys.count], value: value, lease: 0, parents: [])])
            if i % batch == batch - 1 { replica.collectGarbage(stableVector: replica.vector) }
        }
        replica.collectGarbage(stableVector: replica.vector)
        let replicaSeconds = Date().timeIntervalSince(start)
        XCTAssertEqual(replica.storedVersionCount, keys.count)

        print(String(format: "plain map: %.0f puts/s; Replica.makeChange + GC every %d: %.0f puts/s (%.2f µs/put)",
                     Double(puts) / plainSeconds, batch, Double(puts) / replicaSeconds, replicaSeconds / Double(puts) * 1e6))
    }
}
