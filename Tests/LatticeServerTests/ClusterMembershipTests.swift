import EtcdAPI
import Foundation
import GRPCWire
import LatticeServer
import LatticeTestSupport
import NIOCore
import XCTest

/// Membership as replicated state on a running cluster: `member add` on one member, the new
/// member joining with `--initial-cluster-state existing` (its id and the cluster id come from
/// the cluster), `member update`, `member remove` — seen by every member, with garbage
/// collection waiting for a stopped member until it is removed, and the removed member told so.
final class ClusterMembershipTests: XCTestCase {
    private var running: [String: ServerHarness] = [:]
    private var ports: [String: Int] = [:]
    private var dataDirs: [String: String] = [:]
    private let directories = TemporaryDirectories(prefix: "lattice-membership")
    private let token = "membership-test"

    override func tearDown() async throws {
        for h in running.values { try await h.stop() }
        running = [:]
        directories.removeAll()
    }

    private func url(_ name: String) -> String { "http://127.0.0.1:\(ports[name]!)" }

    /// Starts member `name` with `--initial-cluster` listing `cluster`, on its own data directory.
    private func start(_ name: String, cluster: [String], state: String = "new") async throws {
        if ports[name] == nil { ports[name] = try ClusterKubePatternTests.freeLoopbackPort() }
        if dataDirs[name] == nil { dataDirs[name] = directories.make() }
        for member in cluster where ports[member] == nil { ports[member] = try ClusterKubePatternTests.freeLoopbackPort() }
        let h = ServerHarness()
        let initial = cluster.map { (name: $0, peerURLs: [url($0)]) }
        let (dir, peer) = (dataDirs[name]!, url(name))
        do {
            try await start(h, name: name, dir: dir, peer: peer, initial: initial, state: state)
        } catch {
            try? await h.stop()
            throw error
        }
        running[name] = h
    }

    private func start(_ h: ServerHarness, name: String, dir: String, peer: String, initial: [(name: String, peerURLs: [String])],
                       state: String) async throws {
        try await h.start { c in
            c.name = name
            c.inMemory = false
            c.dataDir = dir
            c.initialCluster = initial
            c.initialClusterToken = self.token
            c.initialClusterState = state
            c.initialAdvertisePeerURLs = [peer]
            c.listenPeerURLs = [try! ServerURL(parsing: peer)]
            c.peerHeartbeatInterval = .milliseconds(100)
        }
    }

    private func stop(_ name: String) async throws {
        try await running.removeValue(forKey: name)?.stop()
    }

    private func memberList(_ name: String) async throws -> [Member] {
        let r: MemberListResponse = try await running[name]!.call("/etcdserverpb.Cluster/MemberList", MemberListRequest())
        return r.members
    }

    func testMembersAreAddedJoinedUpdatedAndRemovedOnARunningCluster() async throws {
        try await start("a", cluster: ["a", "b"])
        try await start("b", cluster: ["a", "b"])
        let a = running["a"]!
        try await a.put("/k/before", "1")
        try await eventually("b holds a's key") { try await running["b"]!.get("/k/before").kvs.count == 1 }

        // member add on b; c joins with --initial-cluster-state existing.
        ports["c"] = try ClusterKubePatternTests.freeLoopbackPort()
        let response: MemberAddResponse = try await running["b"]!.call("/etcdserverpb.Cluster/MemberAdd", MemberAddRequest(peerURLs: [url("c")]))
        XCTAssertEqual(response.members.count, 3)
        let added = try XCTUnwrap(response.member)
        XCTAssertEqual(added.peerURLs, [url("c")])
        XCTAssertEqual(added.name, "", "as in etcd, an added member has no name until it starts")
        try await eventually("a holds the new member") { try await memberList("a").count == 3 }
        let duplicate = try? await (running["a"]!.call("/etcdserverpb.Cluster/MemberAdd", MemberAddRequest(peerURLs: [url("c")])) as MemberAddResponse)
        XCTAssertNil(duplicate, "adding a peer URL twice fails")
        try await start("c", cluster: ["a", "b", "c"], state: "existing")
        let c = running["c"]!
        XCTAssertEqual(c.server.memberID, added.id, "the joining member takes the id the cluster gave it")
        XCTAssertEqual(c.server.clusterID, a.server.clusterID, "and the cluster's id")
        let before = try await c.get("/k/before")
        XCTAssertEqual(before.kvs.first?.value, Array("1".utf8), "it serves the cluster's data once it joined")
        try await c.put("/k/from-c", "3")
        try await eventually("a holds c's write") { try await a.get("/k/from-c").kvs.count == 1 }
        for name in ["a", "b", "c"] {
            try await eventually("\(name) lists c with its name and client URLs") {
                let list = try await memberList(name)
                return list.count == 3 && list.contains { $0.id == added.id && $0.name == "c" && !$0.clientURLs.isEmpty }
            }
        }

        // member update: every member sees the new peer URLs.
        let updated = [url("c"), "http://127.0.0.1:1"]
        let _: MemberUpdateResponse = try await a.call("/etcdserverpb.Cluster/MemberUpdate", MemberUpdateRequest(id: added.id, peerURLs: updated))
        try await eventually("b sees the update") { try await memberList("b").first { $0.id == added.id }?.peerURLs == updated }

        // b stops: garbage collection on a waits for it (its report is missing)…
        let bID = running["b"]!.server.memberID
        try await stop("b")
        for i in 0..<50 { try await a.put("/k/while-b-is-down", "\(i)") }
        try await eventually("c holds a's writes") { try await c.get("/k/while-b-is-down").kvs.first?.value == Array("49".utf8) }
        XCTAssertGreaterThanOrEqual(a.server.store.replicationCounters.logEntries, 50, "a keeps its log for the stopped member")

        // …until b is removed: then a and c forget it, and a's log is trimmed.
        let removed: MemberRemoveResponse = try await c.call("/etcdserverpb.Cluster/MemberRemove", MemberRemoveRequest(id: bID))
        XCTAssertEqual(removed.members.count, 2)
        for name in ["a", "c"] {
            try await eventually("\(name) no longer lists b") { try await memberList(name).map(\.id).contains(bID) == false }
        }
        try await a.put("/k/after-removal", "1")
        try await eventually("a's log is trimmed once b departed") { a.server.store.replicationCounters.logEntries < 10 }
        let again = try? await (a.call("/etcdserverpb.Cluster/MemberRemove", MemberRemoveRequest(id: bID)) as MemberRemoveResponse)
        XCTAssertNil(again, "a removed member is not found any more")

        // b comes back on its old data directory: its peers tell it that it was removed.
        try await start("b", cluster: ["a", "b"])
        try await eventually("b learns it was removed") { running["b"]!.server.replication.isRemovedFromCluster }
        let onB = try await running["b"]!.get("/k/after-removal")
        XCTAssertEqual(onB.kvs.count, 0, "nothing reaches a removed member")

        // c restarts on its data directory: it keeps the id it joined with.
        let cID = c.server.memberID
        try await stop("c")
        try await start("c", cluster: ["a", "b", "c"])
        XCTAssertEqual(running["c"]!.server.memberID, cID)
        XCTAssertEqual(running["c"]!.server.clusterID, a.server.clusterID)
        try await eventually("c catches up again") { try await running["c"]!.get("/k/after-removal").kvs.count == 1 }

        // A data directory without its `member` file (written by an older version, or a join
        // cut short) started with --initial-cluster-state existing asks the cluster again.
        try await stop("c")
        try FileManager.default.removeItem(atPath: dataDirs["c"]! + "/member")
        try await start("c", cluster: ["a", "b", "c"], state: "existing")
        XCTAssertEqual(running["c"]!.server.memberID, cID)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dataDirs["c"]! + "/member"), "the ids are kept again")
    }

    /// A member started with --initial-cluster-state existing that nobody added is refused with
    /// a message saying what to do.
    func testJoiningWithoutMemberAddFails() async throws {
        try await start("a", cluster: ["a"])
        ports["z"] = try ClusterKubePatternTests.freeLoopbackPort()
        do {
            try await start("z", cluster: ["a", "z"], state: "existing")
            XCTFail("a member that was not added must not join")
        } catch {
            XCTAssertTrue("\(error)".contains("has not been added to cluster"), "\(error)")
            XCTAssertTrue("\(error)".contains("member add"), "\(error)")
        }
    }
}
