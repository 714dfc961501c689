import EtcdAPI
import Foundation
import LatticeCore
import LatticeReplication
import LatticeStore
import LatticeTestSupport
import XCTest

/// A deterministic, seeded simulation of a cluster: several stores with real WAL directories
/// exchanging changes through the real sync logic (`FeedCursor` on the feeding side, `PullState`
/// on the pulling side, the same code the network streams run), with random interleavings of
/// writes, deliveries, dropped connections, restarts from disk (WAL replay and snapshots) and
/// garbage collection driven by peer reports. After healing, every member must hold every change
/// and show the identical keyspace and state hash, and the change log must be collected.
final class ClusterSimulationTests: XCTestCase {
    /// One direction of one pair: feeder → puller messages and puller → feeder acks, in order.
    struct Link {
        var cursor: FeedCursor?
        var pull: PullState
        var toPuller: [SyncResponse] = []
        var toFeeder: [PeerAck] = []
    }

    final class Cluster {
        let ids: [UInt64]
        let dirs: [UInt64: String]
        var stores: [UInt64: MVCCStore] = [:]
        var links: [String: Link] = [:]
        var counts: [String: Int] = [:]

        init(size: Int, root: String) throws {
            ids = (1...UInt64(size)).map { $0 * 0x1111 }
            var d: [UInt64: String] = [:]
            for id in ids { d[id] = root + "/m\(id)" }
            dirs = d
            for id in ids { try open(id) }
            for f in ids { for p in ids where p != f { links["\(f)>\(p)"] = Link(pull: PullState(peer: f)) } }
        }

        func open(_ id: UInt64) throws {
            var c = MVCCStore.Configuration(memberID: id, clusterID: 7)
            c.dataDirectory = dirs[id]
            c.snapshotCount = 15
            c.walSegmentBytes = 1 << 20
            c.peerMemberIDs = Set(ids.filter { $0 != id })
            stores[id] = try MVCCStore(configuration: c)
        }

        func restart(_ id: UInt64) throws {
            stores[id]!.close()
            stores[id] = nil
            try open(id)
            for key in links.keys where key.hasPrefix("\(id)>") || key.hasSuffix(">\(id)") { disconnect(key) }
            counts["restarts", default: 0] += 1
        }

        func disconnect(_ key: String) {
            links[key]!.cursor = nil
            links[key]!.toPuller = []
            links[key]!.toFeeder = []
            let feeder = UInt64(key.split(separator: ">")[0])!
            links[key]!.pull = PullState(peer: feeder)
        }

        /// The puller dials: its hello carries its durable vector.
        func connect(_ key: String) {
            let parts = key.split(separator: ">").map { UInt64($0)! }
            let (feeder, puller) = (parts[0], parts[1])
            let hello = stores[puller]!.versionVector
            stores[feeder]!.recordPeerReport(member: puller, vector: hello)
            links[key]!.cursor = FeedCursor(pullerVector: hello)
        }

        /// The feeder sends what its cursor allows.
        func pump(_ key: String, heartbeat: Bool) {
            guard links[key]!.cursor != nil else { return }
            let feeder = UInt64(key.split(separator: ">")[0])!
            var sentHeartbeat = !heartbeat
            while true {
                switch links[key]!.cursor!.next(from: stores[feeder]!, heartbeat: !sentHeartbeat) {
                case .send(let r):
                    if r.report != nil { sentHeartbeat = true; counts["reports", default: 0] += 1 }
                    links[key]!.toPuller.append(r)
                    continue
                case .idle: return
                case .needsStateTransfer: XCTFail("state transfer needed on \(key)"); return
                }
            }
        }

        /// Delivers one message each way, if any.
        func deliver(_ key: String) async throws {
            let puller = UInt64(key.split(separator: ">")[1])!
            let feeder = UInt64(key.split(separator: ">")[0])!
            if !links[key]!.toPuller.isEmpty {
                let r = links[key]!.toPuller.removeFirst()
                var pull = links[key]!.pull
                let ack: PeerAck
                if !r.changes.isEmpty {
                    ack = try await pull.applyBatch(r, store: stores[puller]!)
                    counts["batches", default: 0] += 1
                    counts["shipped", default: 0] += r.changes.count
                } else {
                    ack = pull.applyReport(r.report!, store: stores[puller]!)
                }
                links[key]!.pull = pull
                links[key]!.toFeeder.append(ack)
            }
            if !links[key]!.toFeeder.isEmpty, links[key]!.cursor != nil {
                let ack = links[key]!.toFeeder.removeFirst()
                links[key]!.cursor!.acknowledged(ack)
                stores[feeder]!.recordPeerReport(member: puller, vector: ack.vector)
            }
        }

        var quiet: Bool { links.values.allSatisfy { $0.toPuller.isEmpty && $0.toFeeder.isEmpty } }
    }

    private func write(_ store: MVCCStore, rng: inout SplitMix64, counts: inout [String: Int]) throws {
        let key = "/registry/things/k\(rng.int(0...11))"
        switch rng.int(0...9) {
        case 0...5:
            // JSON objects with a few fields, so concurrent edits merge field by field.
            let fields = (0..<rng.int(1...3)).map { _ in "\"f\(rng.int(0...4))\":\(rng.int(0...99))" }
            var seen = Set<String>()
            let unique = fields.filter { seen.insert(String($0.prefix(4))).inserted }
            _ = try store.put(PutRequest(key: Array(key.utf8), value: Array("{\(unique.joined(separator: ","))}".utf8)))
            counts["puts", default: 0] += 1
        case 6...7:
            _ = try store.put(PutRequest(key: Array(key.utf8), value: Array("plain-\(rng.int(0...999))".utf8)))
            counts["puts", default: 0] += 1
        default:
            _ = try store.deleteRange(DeleteRangeRequest(key: Array(key.utf8)))
            counts["deletes", default: 0] += 1
        }
    }

    private func run(seed: UInt64, members: Int, steps: Int) async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("lattice-sim-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        var rng = SplitMix64(seed: seed)
        let cluster = try Cluster(size: members, root: root)
        defer { for s in cluster.stores.values { s.close() } }
        var writeCounts: [String: Int] = [:]
        let keys = cluster.links.keys.sorted()
        for key in keys { cluster.connect(key) }
        for _ in 0..<steps {
            let roll = rng.int(0...99)
            if roll < 35 {
                try write(cluster.stores[rng.pick(cluster.ids)]!, rng: &rng, counts: &writeCounts)
            } else if roll < 55 {
                cluster.pump(rng.pick(keys), heartbeat: rng.chance(0.3))
            } else if roll < 85 {
                try await cluster.deliver(rng.pick(keys))
            } else if roll < 92 {
                let key = rng.pick(keys)
                if cluster.links[key]!.cursor == nil { cluster.connect(key) } else { cluster.disconnect(key); cluster.counts["disconnects", default: 0] += 1 }
            } else if roll < 95 {
                try cluster.restart(rng.pick(cluster.ids))
            }
        }
        // Heal: every link up, deliver everything, with heartbeats, until nothing moves.
        for key in keys where cluster.links[key]!.cursor == nil { cluster.connect(key) }
        var rounds = 0
        repeat {
            rounds += 1
            for key in keys { cluster.pump(key, heartbeat: true) }
            while !cluster.quiet { for key in keys { try await cluster.deliver(key) } }
            // A commit barrier: the collections the last reports queued have run.
            for id in cluster.ids { _ = try await cluster.stores[id]!.applyRemote([]) }
        } while rounds < 200 && (Set(cluster.ids.map { cluster.stores[$0]!.versionVector }).count > 1 ||
                                 cluster.ids.contains { cluster.stores[$0]!.replicationCounters.logEntries > 0 })
        for key in keys { cluster.pump(key, heartbeat: true) }
        while !cluster.quiet { for key in keys { try await cluster.deliver(key) } }
        for id in cluster.ids { _ = try await cluster.stores[id]!.applyRemote([]) }

        let context = "seed \(seed): \(cluster.counts) \(writeCounts)"
        let first = cluster.stores[cluster.ids[0]]!
        let all = RangeRequest(key: [0], rangeEnd: [0])
        let expected = try first.range(all).kvs.map { [$0.key, $0.value] }
        for id in cluster.ids {
            let s = cluster.stores[id]!
            XCTAssertEqual(s.versionVector, first.versionVector, context)
            XCTAssertEqual(s.replicatedStateHash, first.replicatedStateHash, context)
            XCTAssertEqual(try s.range(all).kvs.map { [$0.key, $0.value] }, expected, context)
            XCTAssertEqual(s.replicationCounters.pendingChanges, 0, context)
            XCTAssertEqual(s.replicationCounters.logEntries, 0, "stable changes are collected once every peer reported them; \(context)")
        }
        // The generator exercised what it claims to (a weakened one fails here).
        XCTAssertGreaterThan(cluster.counts["shipped", default: 0], 50, context)
        XCTAssertGreaterThan(cluster.counts["restarts", default: 0], 0, context)
        XCTAssertGreaterThan(writeCounts["puts", default: 0], 20, context)
    }

    func testThreeMembersConvergeThroughRandomDeliveryDisconnectsAndRestarts() async throws {
        let seed = ProcessInfo.processInfo.environment["LATTICE_SIM_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max)
        print("cluster simulation seed \(seed) (LATTICE_SIM_SEED=\(seed) reproduces it)")
        for round in 0..<3 {
            try await run(seed: seed &+ UInt64(round), members: 3, steps: 400)
        }
    }

    func testFiveMembersConverge() async throws {
        try await run(seed: 0x5EED_0005, members: 5, steps: 500)
    }
}
