import ArgumentParser
import GRPCWire
import LatticeCore
import LatticeReplication
import NIOPosix

/// `lattice cluster-status --endpoints a:2379,b:2379`: each member's convergence digest (a
/// revision-independent hash of its replicated state), version vector and per-peer lag, one JSON
/// object per line. Members that hold the same changes print the same `state_hash`.
struct ClusterStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster-status",
        abstract: "Print each member's state hash, version vector and replication lag (JSON lines).")

    @Option(help: "Comma-separated client (or peer) endpoints, host:port.")
    var endpoints = "127.0.0.1:2379"

    @Option(help: "Per-endpoint timeout in seconds.")
    var timeout = 3

    @Flag(help: "Leave out the state hash (it costs O(keys) on each member); vectors and lag only.")
    var noStateHash = false

    @Option(help: "With auth enabled on the client port: log in as this root user (name:password).")
    var user: String?

    func run() async throws {
        var failures = 0
        for endpoint in endpoints.split(separator: ",").map(String.init) {
            guard let colon = endpoint.lastIndex(of: ":"), let port = Int(endpoint[endpoint.index(after: colon)...]) else {
                throw ValidationError("endpoint \"\(endpoint)\" is not host:port")
            }
            var host = String(endpoint[..<colon])
            if host.hasPrefix("http://") { host.removeFirst(7) }
            do {
                let client = try await GRPCClient.connect(host: host, port: port, group: MultiThreadedEventLoopGroup.singleton,
                                                          connectTimeout: .seconds(Int64(timeout)))
                defer { Task { await client.close() } }
                let metadata = try await tokenMetadata(user: user, client: client, timeout: .seconds(Int64(timeout)))
                let bytes = try await client.unary(path: PeerMethod.status, request: PeerStatusRequest(skipStateHash: noStateHash).protoBytes(),
                                                   timeout: .seconds(Int64(timeout)), metadata: metadata)
                let s = try PeerStatusResponse(protoBytes: bytes)
                print(Self.json(s, endpoint: endpoint))
            } catch {
                failures += 1
                print("{\"endpoint\":\"\(endpoint)\",\"error\":\"\(String(describing: error).replacingQuotes)\"}")
            }
        }
        if failures > 0 { throw ExitCode(1) }
    }

    static func json(_ s: PeerStatusResponse, endpoint: String) -> String {
        func vector(_ v: VersionVector) -> String {
            "{" + v.entries.sorted { $0.key < $1.key }.map { "\"\(hex16($0.key))\":\($0.value)" }.joined(separator: ",") + "}"
        }
        let peers = s.peers.map { p in
            "{\"name\":\"\(p.name)\",\"member_id\":\"\(hex16(p.memberID))\",\"connected\":\(p.connected),\"lag_changes\":\(p.lagChanges),\"lag_seconds\":\(p.lagSeconds)}"
        }.joined(separator: ",")
        return "{\"endpoint\":\"\(endpoint)\",\"name\":\"\(s.name)\",\"member_id\":\"\(hex16(s.memberID))\",\"cluster_id\":\"\(hex16(s.clusterID))\","
            + "\"incarnation\":\"\(hex16(s.incarnation))\",\"revision\":\(s.revision),\"keys\":\(s.keys),"
            + "\"state_hash\":\"\(s.stateHash.map { hex2($0) }.joined())\",\"pending_changes\":\(s.pendingChanges),"
            + "\"log_entries\":\(s.logEntries),\"last_writer_wins\":\(s.lastWriterWins),\"merges\":\(s.merges),"
            + "\"merge_conflicts\":\(s.mergeConflicts),\"changes_received\":\(s.changesReceived),\"duplicates_received\":\(s.duplicatesReceived),\"vector\":\(vector(s.vector)),\"peers\":[\(peers)]}"
    }
}

private func hex16(_ v: UInt64) -> String {
    let d = String(v, radix: 16)
    return String(repeating: "0", count: 16 - d.count) + d
}

private func hex2(_ b: UInt8) -> String { b < 16 ? "0" + String(b, radix: 16) : String(b, radix: 16) }

extension String {
    fileprivate var replacingQuotes: String { String(map { $0 == "\"" ? "'" : $0 }) }
}
