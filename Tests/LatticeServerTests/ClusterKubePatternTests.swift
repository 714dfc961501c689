import EtcdAPI
import GRPCWire
@testable import LatticeReplication
import LatticeServer
import NIOCore
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Kubernetes at several sites: each site's kube-apiserver talks to its local member of a
/// 3-member cluster while the other sites write the same keys. The storage pattern must hold on
/// that member: a pinned paged LIST is consistent, the watch from the list's revision delivers
/// every change exactly once in revision order (list + watch rebuild exactly the member's
/// state), GuaranteedUpdate's compare-and-swap loop terminates, and event leases expire on
/// every member.
final class ClusterKubePatternTests: XCTestCase {
    private var members: [ServerHarness] = []

    override func setUp() async throws {
        let ports = try (0..<3).map { _ in try Self.freeLoopbackPort() }
        let cluster = (0..<3).map { (name: "m\($0)", peerURLs: ["http://127.0.0.1:\(ports[$0])"]) }
        for i in 0..<3 {
            let h = ServerHarness()
            try await h.start { c in
                c.name = "m\(i)"
                c.initialCluster = cluster
                c.initialClusterToken = "kube-pattern"
                c.initialAdvertisePeerURLs = ["http://127.0.0.1:\(ports[i])"]
                c.listenPeerURLs = [try! ServerURL(parsing: "http://127.0.0.1:\(ports[i])")]
                c.peerHeartbeatInterval = .milliseconds(100)
                c.watchProgressNotifyInterval = .milliseconds(300)
            }
            members.append(h)
        }
    }

    override func tearDown() async throws {
        for m in members { try await m.stop() }
        members = []
    }

    static func freeLoopbackPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw XCTSkip("cannot bind a loopback port") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    private func key(_ name: String) -> [UInt8] { Array("/registry/pods/default/\(name)".utf8) }
    private let prefixEnd = Array("/registry/pods0".utf8)

    private func converged() -> Bool {
        Set(members.map { $0.server.store.replicatedStateHash }).count == 1
            && Set(members.map { $0.server.store.versionVector }).count == 1
    }

    private func create(_ h: ServerHarness, _ name: String, _ value: String, lease: Int64 = 0) async throws -> TxnResponse {
        try await h.txn(TxnRequest(
            compare: [Compare(key: key(name), target: .mod, result: .equal, .modRevision(0))],
            success: [RequestOp(.put(PutRequest(key: key(name), value: Array(value.utf8), lease: lease)))]))
    }

    /// GuaranteedUpdate: read, CAS on mod_revision, retry from the else branch's fresh read.
    /// Returns the attempts it took.
    private func guaranteedUpdate(_ h: ServerHarness, _ name: String, _ transform: (String) -> String) async throws -> Int {
        var current = try await h.get("/registry/pods/default/\(name)")
        for attempt in 1...100 {
            guard let kv = current.kvs.first else { return attempt }
            let r = try await h.txn(TxnRequest(
                compare: [Compare(key: key(name), target: .mod, result: .equal, .modRevision(kv.modRevision))],
                success: [RequestOp(.put(PutRequest(key: key(name), value: Array(transform(String(decoding: kv.value, as: UTF8.self)).utf8))))],
                failure: [RequestOp(.range(RangeRequest(key: key(name))))]))
            if r.succeeded { return attempt }
            guard case .range(let fresh)? = r.responses.first?.response else { XCTFail("no else-branch range"); return attempt }
            current = fresh
        }
        return 101
    }

    func testASitesWatchCacheStaysExactWhileOtherSitesWriteTheSameKeys() async throws {
        let site = members[0]
        for i in 0..<6 { _ = try await create(site, "p\(i)", "{\"i\":\(i)}") }
        try await eventually("the other sites hold the pods") { converged() }

        // The other sites write the same objects (whole-object puts, deletes, re-creates).
        let writers = (1...2).map { m in
            Task { [members] in
                let h = members[m]
                for n in 0..<40 {
                    let name = "p\(n % 6)"
                    if n % 9 == 8 {
                        _ = try await h.delete("/registry/pods/default/\(name)")
                    } else {
                        _ = try await h.put("/registry/pods/default/\(name)", "{\"i\":\(n % 6),\"site\":\"m\(m)\",\"n\":\(n)}")
                    }
                }
            }
        }

        // The site's cacher: a paged LIST pinned at the first page's revision…
        var request = RangeRequest(key: Array("/registry/pods/".utf8), rangeEnd: prefixEnd, limit: 2)
        var listed: [KeyValue] = []
        var pinned: Int64 = 0
        while true {
            let page: RangeResponse = try await site.call("/etcdserverpb.KV/Range", request)
            if pinned == 0 { pinned = page.header!.revision }
            for kv in page.kvs { XCTAssertLessThanOrEqual(kv.modRevision, pinned, "a pinned page shows nothing newer than its revision") }
            listed += page.kvs
            guard page.more, let last = page.kvs.last else { break }
            request = RangeRequest(key: last.key + [0], rangeEnd: prefixEnd, limit: 2, revision: pinned)
        }
        XCTAssertEqual(listed.map(\.key), listed.map(\.key).sorted { $0.lexicographicallyPrecedes($1) }, "pages in key order, no key twice")
        XCTAssertEqual(Set(listed.map(\.key)).count, listed.count)

        // …then its watch from the list's revision + 1, while it updates the same objects too.
        let w = try await site.openWatch(metadata: [("hasleader", "true"), ("source", "cache")])
        w.create("/registry/pods/", end: "/registry/pods0", start: pinned + 1, prevKV: true, progressNotify: true)
        let confirmation = try await w.next()
        XCTAssertTrue(confirmation.created)
        for i in 0..<3 {
            let attempts = try await guaranteedUpdate(site, "p\(i)") { _ in "{\"i\":\(i),\"site\":\"m0\"}" }
            XCTAssertLessThanOrEqual(attempts, 100, "GuaranteedUpdate's CAS loop terminates")
        }
        for t in writers { try await t.value }
        try await eventually("the sites converge") { converged() }

        // Everything up to the site's current revision, then a progress notification at it.
        let current = site.server.store.currentRevision
        var cache: [[UInt8]: KeyValue] = [:]
        for kv in listed { cache[kv.key] = kv }
        var seen = Set<[Int64]>()
        var lastRevision = pinned
        var events = 0
        // A progress notification at the current revision means every event before it was sent.
        w.requestProgress()
        while true {
            let r = try await w.next()
            for e in r.events {
                let kv = e.kv!
                XCTAssertGreaterThanOrEqual(kv.modRevision, lastRevision, "events arrive in revision order")
                XCTAssertGreaterThan(kv.modRevision, pinned, "nothing the list already held")
                lastRevision = kv.modRevision
                XCTAssertTrue(seen.insert([kv.modRevision, Int64(kv.key.hashValue)]).inserted, "each change once")
                XCTAssertEqual(e.prevKV?.modRevision, cache[kv.key]?.modRevision, "prev_kv is what the cache held")
                if e.type == .delete { cache[kv.key] = nil } else { cache[kv.key] = kv }
                events += 1
            }
            if r.events.isEmpty && r.header!.revision >= current { break }
        }
        XCTAssertGreaterThan(events, 0)
        let now = try await site.get("/registry/pods/", end: "/registry/pods0", revision: current)
        XCTAssertEqual(cache.values.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map { [$0.key, $0.value] },
                       now.kvs.map { [$0.key, $0.value] }, "list + watch rebuild exactly the member's state")
        XCTAssertEqual(cache.values.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map(\.modRevision), now.kvs.map(\.modRevision))
    }

    func testEventLeasesExpireOnEveryMember() async throws {
        let site = members[0]
        let lease = try await site.grant(ttl: 5).id
        try await site.put("/registry/events/default/e1", "{}", lease: lease)
        for m in members {
            try await eventually("the event reaches every member") { try await m.get("/registry/events/default/e1").count == 1 }
        }
        // The granting member's clock passes the TTL: it expires the lease, and the revocation
        // deletes the event everywhere.
        site.clock.advance(byMilliseconds: 6_000)
        XCTAssertEqual(site.server.store.expireLeases(), [lease])
        for m in members {
            try await eventually("the event is gone on every member") { try await m.get("/registry/events/default/e1").count == 0 }
            let leases: LeaseLeasesResponse = try await m.call("/etcdserverpb.Lease/LeaseLeases", LeaseLeasesRequest())
            XCTAssertFalse(leases.leases.map(\.id).contains(lease))
        }
    }

    /// MemberList on any member shows every member with its peer URLs and the client URLs the
    /// others announced when they connected.
    func testMemberListShowsEveryMembersURLs() async throws {
        try await eventually("every member connected to every other") {
            members.allSatisfy { m in m.server.replication.status(stateHash: false).peers.allSatisfy(\.connected) }
        }
        let list: MemberListResponse = try await members[0].call("/etcdserverpb.Cluster/MemberList", MemberListRequest())
        XCTAssertEqual(Set(list.members.map(\.name)), ["m0", "m1", "m2"])
        for m in list.members {
            XCTAssertFalse(m.peerURLs.isEmpty, m.name)
            XCTAssertFalse(m.clientURLs.isEmpty, "\(m.name) has the client URLs it announced")
        }
    }

    /// Every member counts the changes it receives from its peers (author and relays), and the
    /// duplicates among them; `cluster-status` and the metrics show both.
    func testStatusCountsReceivedAndDuplicateChanges() async throws {
        for i in 0..<30 { _ = try await members[i % 3].put("/registry/pods/default/c\(i)", "{}") }
        try await eventually("every member holds every write") { converged() }
        for (i, m) in members.enumerated() {
            let s = m.server.replication.status(stateHash: false)
            XCTAssertGreaterThanOrEqual(s.changesReceived, 20, "m\(i) received the other members' 20 writes")
            XCTAssertLessThanOrEqual(s.duplicatesReceived, s.changesReceived - 20, "m\(i): at most the relayed copies are duplicates")
            let decoded = try PeerStatusResponse(protoBytes: s.protoBytes())
            XCTAssertEqual([decoded.changesReceived, decoded.duplicatesReceived], [s.changesReceived, s.duplicatesReceived], "on the wire")
        }
    }

    /// A pull link's hello names the authors its member receives from directly (the other live
    /// links), and the feeder's cursor starts from them (what the feeder then leaves out:
    /// `ReplicationSafetyTests.testAFeederToldInTheHelloDoesNotRelayFromItsFirstBatch`).
    func testALinksHelloNamesTheAuthorsReceivedDirectly() async throws {
        for i in 0..<3 { _ = try await members[i].put("/registry/pods/default/hello\(i)", "{}") }
        let node = members[0].server.replication
        let m1 = members[1].server.replication.configuration.local.id
        let m2 = members[2].server.store.replicaID
        try await eventually("m0 hears from m2 directly") { node.hello(to: m1).direct == [m2] }
        let hello = try PeerHello(protoBytes: node.hello(to: m1).protoBytes())
        XCTAssertEqual(hello.direct, [m2], "on the wire")
        XCTAssertEqual(FeedCursor(hello: hello).direct, [m2], "a feeder's cursor starts from the hello's direct authors")
    }
}
