import EtcdAPI
import Foundation
import GRPCWire
@testable import LatticeServer
import LatticeTestSupport
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A reply read off a raw HTTP/1.1 connection.
struct RawHTTPReply {
    var status: Int
    var headers: [String: String]
    var body: String
}

/// A minimal blocking HTTP/1.1 client connection over loopback (5 s receive timeout).
final class RawHTTPConnection {
    private let fd: Int32
    private var pending: [UInt8] = []

    init(port: Int, receiveBuffer: Int? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if var size = receiveBuffer.map(Int32.init) {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
    }

    deinit { close(fd) }

    func send(_ request: String) {
        let bytes = Array(request.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return }
            offset += n
        }
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 65536, 0) }
        guard n > 0 else { throw POSIXError(.ECONNRESET) }
        pending += chunk[0..<n]
    }

    func readReply() throws -> RawHTTPReply {
        let separator = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        var searched = 0
        while headEnd == nil {
            if pending.count >= 4 {
                headEnd = (max(0, searched - 3)...(pending.count - 4)).first { pending[$0..<($0 + 4)].elementsEqual(separator) }
                searched = pending.count
            }
            if headEnd == nil { try fill() }
        }
        let head = String(decoding: pending[0..<headEnd!], as: UTF8.self).components(separatedBy: "\r\n")
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { headers[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        let bodyStart = headEnd! + 4
        while pending.count < bodyStart + length { try fill() }
        let status = Int(head[0].split(separator: " ")[1]) ?? 0
        let reply = RawHTTPReply(status: status, headers: headers,
                                 body: String(decoding: pending[bodyStart..<(bodyStart + length)], as: UTF8.self))
        pending.removeFirst(bodyStart + length)
        return reply
    }
}

/// Sends `requests` on one connection and reads one reply per request.
func rawHTTP(port: Int, _ requests: [String]) throws -> [RawHTTPReply] {
    let connection = try RawHTTPConnection(port: port)
    return try requests.map { request in
        connection.send(request)
        return try connection.readReply()
    }
}

func httpGet(port: Int, _ path: String, method: String = "GET") throws -> RawHTTPReply {
    try rawHTTP(port: port, ["\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"])[0]
}

/// The client port answers HTTP/1.1 beside gRPC, as etcd's does: /health, /livez, /readyz,
/// /version and /metrics, with etcd's bodies, status codes and content types.
final class HTTPEndpointTests: XCTestCase {
    func testHealthVersionAndMetricsAreServedBesideGRPCOnTheClientPort() async throws {
        let dirs = TemporaryDirectories(prefix: "lattice-http")
        defer { dirs.removeAll() }
        let dataDir = dirs.make()
        let harness = ServerHarness()
        try await harness.start {
            $0.inMemory = false
            $0.dataDir = dataDir
        }
        defer { Task { try? await harness.stop() } }
        try await harness.put("a", "1")
        var txn = TxnRequest()
        var put = RequestOp()
        put.request = .put(PutRequest(key: Array("b".utf8), value: Array("2".utf8)))
        var delete = RequestOp()
        delete.request = .deleteRange(DeleteRangeRequest(key: Array("a".utf8)))
        txn.success = [put, delete]
        _ = try await harness.txn(txn)
        _ = try await harness.get("b")
        let port = harness.server.clientAddresses[0].port!

        let health = try httpGet(port: port, "/health")
        XCTAssertEqual(health.status, 200)
        XCTAssertEqual(health.body, #"{"health":"true","reason":""}"#)
        XCTAssertEqual(health.headers["content-type"], "text/plain; charset=utf-8")

        let version = try httpGet(port: port, "/version")
        XCTAssertEqual(version.status, 200)
        XCTAssertEqual(version.headers["content-type"], "application/json")
        XCTAssertEqual(version.body, "{\"etcdserver\":\"\(EtcdCompatibility.version)\",\"etcdcluster\":\"3.5.0\"}")

        for path in ["/livez", "/readyz"] {
            let r = try httpGet(port: port, path)
            XCTAssertEqual(r.status, 200, path)
            XCTAssertEqual(r.body, "ok", path)
        }
        let missing = try httpGet(port: port, "/v2/keys")
        XCTAssertEqual(missing.status, 404)
        XCTAssertEqual(missing.body, "404 page not found\n")
        let post = try httpGet(port: port, "/health", method: "POST")
        XCTAssertEqual(post.status, 405)
        XCTAssertEqual(post.headers["allow"], "GET")
        XCTAssertEqual(post.body, "Method Not Allowed\n")

        let metrics = try httpGet(port: port, "/metrics")
        XCTAssertEqual(metrics.status, 200)
        XCTAssertEqual(metrics.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        let lines = Set(metrics.body.split(separator: "\n").map(String.init))
        for expected in [
            #"grpc_server_started_total{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1"#,
            #"grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1"#,
            #"grpc_server_handled_total{grpc_code="OK",grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1"#,
            #"grpc_server_handled_total{grpc_code="Unavailable",grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 0"#,
            "etcd_mvcc_put_total 2", "etcd_mvcc_delete_total 1", "etcd_mvcc_txn_total 1", "etcd_mvcc_range_total 1",
            "etcd_server_has_leader 1.0", "etcd_debugging_mvcc_keys_total 1.0", "etcd_debugging_mvcc_current_revision 3.0",
            "etcd_server_quota_backend_bytes 2147483648.0", "etcd_server_health_success 1",
        ] {
            XCTAssertTrue(lines.contains(expected), "missing: \(expected)")
        }
        // One fsync per write batch at least (the two writes), and bytes both ways.
        let fsyncs = lines.first { $0.hasPrefix("etcd_disk_wal_fsync_duration_seconds_count ") }
        XCTAssertGreaterThanOrEqual(Int(fsyncs?.split(separator: " ").last ?? "") ?? 0, 2)
        for name in ["etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total",
                     "process_resident_memory_bytes", "process_open_fds", "etcd_mvcc_db_total_size_in_bytes"] {
            let value = lines.first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last!) } ?? 0
            XCTAssertGreaterThan(value, 0, name)
        }
        // gRPC still works on the port after HTTP/1.1 connections, and keep-alive serves
        // several requests on one connection.
        try await harness.put("c", "3")
        let twice = try rawHTTP(port: port, ["GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "GET /version HTTP/1.1\r\nHost: x\r\n\r\n"])
        XCTAssertEqual(twice.map(\.status), [200, 200])
    }

    /// A client that pipelines requests and does not read the replies gets one reply at a time:
    /// the next is produced only once the previous one has left for the socket.
    func testPipelinedRequestsAreAnsweredOnlyAsFastAsTheClientReads() async throws {
        let harness = ServerHarness()
        try await harness.start()
        defer { Task { try? await harness.stop() } }
        let port = harness.server.clientAddresses[0].port!
        let scrapes = { () -> Int in harness.server.metrics.scrapesServed.load(ordering: .relaxed) }
        let requests = 100
        let greedy = try RawHTTPConnection(port: port, receiveBuffer: 4096)
        greedy.send(String(repeating: "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", count: requests))
        try await eventually("the first scrape is answered") { scrapes() >= 1 }
        // The socket's buffers hold a few replies (each is about 100 KB); the rest wait.
        let watchUntil = ContinuousClock.now + .seconds(1)
        while ContinuousClock.now < watchUntil {
            XCTAssertLessThan(scrapes(), requests / 2, "replies were produced for a client that does not read")
            try await Task.sleep(for: .milliseconds(50))
        }
        for _ in 0..<requests {
            XCTAssertEqual(try greedy.readReply().status, 200)
        }
        XCTAssertEqual(scrapes(), requests)
    }

    func testHealthIsFalseWhileAnAlarmIsRaisedUnlessExcluded() async throws {
        let harness = ServerHarness()
        try await harness.start()
        defer { Task { try? await harness.stop() } }
        let port = harness.server.clientAddresses[0].port!
        harness.server.alarms.activate(.noSpace)
        let health = try httpGet(port: port, "/health")
        XCTAssertEqual(health.status, 503)
        XCTAssertEqual(health.body, #"{"health":"false","reason":"ALARM NOSPACE"}"#)
        XCTAssertEqual(try httpGet(port: port, "/readyz").status, 503)
        XCTAssertEqual(try httpGet(port: port, "/livez").status, 200)
        let excluded = try httpGet(port: port, "/health?exclude=NOSPACE")
        XCTAssertEqual(excluded.status, 200)
        XCTAssertEqual(excluded.body, #"{"health":"true","reason":""}"#)
        let metrics = try httpGet(port: port, "/metrics").body
        XCTAssertTrue(metrics.contains("\netcd_server_health_failures 1\n"), metrics)
    }

    func testMetricsURLsServeOnlyHealthAndMetrics() async throws {
        let harness = ServerHarness()
        try await harness.start { $0.listenMetricsURLs = [try! ServerURL(parsing: "http://127.0.0.1:0")] }
        defer { Task { try? await harness.stop() } }
        let port = harness.server.metricsAddresses[0].port!
        XCTAssertNotEqual(port, harness.server.clientAddresses[0].port!)
        let health = try httpGet(port: port, "/health")
        XCTAssertEqual(health.status, 200)
        XCTAssertNil(health.headers["access-control-allow-origin"])
        XCTAssertEqual(try httpGet(port: port, "/metrics").status, 200)
        XCTAssertEqual(try httpGet(port: port, "/version").status, 404)
        // No gRPC there.
        let client = try await GRPCClient.connect(host: "127.0.0.1", port: port, group: harness.group)
        defer { Task { await client.close() } }
        // The call must fail, and promptly: the connection is closed, not left waiting.
        let started = ContinuousClock.now
        do {
            _ = try await client.unary(path: "/etcdserverpb.KV/Range", request: RangeRequest(key: Array("a".utf8)).protoBytes(),
                                       timeout: .seconds(5))
            XCTFail("a gRPC call was answered on a metrics URL")
        } catch {}
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(5))
    }

    /// The exposition parses with Prometheus' own checker; its only lint findings are about
    /// names etcd uses too (kept so that etcd's dashboards work).
    func testMetricsPassPromtool() async throws {
        guard let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("promtool is not installed (scripts/test installs it)")
        }
        let harness = ServerHarness()
        try await harness.start()
        defer { Task { try? await harness.stop() } }
        try await harness.put("a", "1")
        let body = try httpGet(port: harness.server.clientAddresses[0].port!, "/metrics").body
        let process = Process()
        process.executableURL = URL(fileURLWithPath: promtool)
        process.arguments = ["check", "metrics"]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(body.utf8))
        try input.fileHandleForWriting.close()
        let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertNotEqual(process.terminationStatus, 1, "promtool could not parse the metrics: \(report)")
        let etcdNames: Set<String> = ["etcd_debugging_mvcc_keys_total", "etcd_debugging_mvcc_watch_stream_total",
                                      "etcd_debugging_mvcc_watcher_total", "etcd_disk_wal_write_bytes_total",
                                      "etcd_server_health_failures", "etcd_server_health_success"]
        for line in report.split(separator: "\n") {
            XCTAssertTrue(etcdNames.contains(String(line.split(separator: " ")[0])), "promtool: \(line)")
        }
    }
}
