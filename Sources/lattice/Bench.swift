import ArgumentParser
import EtcdAPI
import GRPCWire
import NIOCore
import NIOPosix
import ProtoWire
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// `lattice bench`: load generator for any etcd v3 API server, on Lattice's own gRPC client.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Benchmark an etcd-API server (Lattice or etcd).")

    enum Workload: String, ExpressibleByArgument, CaseIterable { case put, range, txnPut = "txn-put" }

    @Argument(help: "Workload: put, range or txn-put.")
    var workload: Workload

    @Option(help: "Comma-separated host:port endpoints.")
    var endpoints = "127.0.0.1:2379"

    @Option(help: "Number of gRPC connections.")
    var conns = 1

    @Option(help: "Number of concurrent clients (spread over the connections).")
    var clients = 1

    @Option(help: "Total number of requests.")
    var total = 10_000

    @Option(help: "Key size in bytes.")
    var keySize = 8

    @Option(help: "Value size in bytes.")
    var valSize = 8

    @Option(help: "Number of distinct keys.")
    var keySpaceSize = 1

    @Option(help: "Prefix prepended to every key.")
    var keyPrefix = ""

    @Flag(help: "Use sequential keys instead of random ones.")
    var sequentialKeys = false

    @Option(help: "Range consistency: l (linearizable) or s (serializable).")
    var consistency = "l"

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard conns > 0, clients > 0, total > 0, keySize > 0, keySpaceSize > 0 else {
            throw ValidationError("--conns, --clients, --total, --key-size and --key-space-size must be positive")
        }
        guard consistency == "l" || consistency == "s" else { throw ValidationError("--consistency must be l or s") }
    }

    func key(_ i: Int) -> [UInt8] {
        keyForIndex(sequentialKeys ? i % keySpaceSize : Int.random(in: 0..<keySpaceSize))
    }

    func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let targets = endpoints.split(separator: ",").map { part -> (String, Int) in
            let pieces = part.split(separator: ":")
            return (String(pieces.dropLast().joined(separator: ":")), Int(pieces.last!) ?? 2379)
        }
        var connections: [GRPCClient] = []
        for i in 0..<conns {
            let (host, port) = targets[i % targets.count]
            connections.append(try await GRPCClient.connect(host: host, port: port, group: group))
        }
        let value = [UInt8](repeating: 0x76, count: valSize)
        if workload == .range {
            // Make sure the keys exist.
            for i in 0..<min(keySpaceSize, 10_000) {
                _ = try await connections[0].unary(path: "/etcdserverpb.KV/Put", request: PutRequest(key: keyForIndex(i), value: value).protoBytes())
            }
        }
        let issued = Counter()
        let start = monotonicNanoseconds()
        let latencies = try await withThrowingTaskGroup(of: [Int64].self) { tasks in
            for c in 0..<clients {
                let connection = connections[c % connections.count]
                tasks.addTask {
                    var mine: [Int64] = []
                    while true {
                        let i = issued.next()
                        if i >= total { break }
                        let (path, bytes) = request(i, value: value)
                        let t0 = monotonicNanoseconds()
                        _ = try await connection.unary(path: path, request: bytes)
                        mine.append(monotonicNanoseconds() - t0)
                    }
                    return mine
                }
            }
            var all: [Int64] = []
            for try await part in tasks { all += part }
            return all
        }
        let elapsed = Double(monotonicNanoseconds() - start) / 1e9
        for c in connections { await c.close() }
        report(latencies.sorted(), seconds: elapsed)
    }

    private func keyForIndex(_ i: Int) -> [UInt8] {
        // Fixed width: "aaaa0042", so sequential keys sort in index order.
        var bytes = [UInt8](repeating: 0x61, count: keySize)
        var v = i
        var p = keySize - 1
        while v > 0 && p >= 0 { bytes[p] = UInt8(0x30 + v % 10); v /= 10; p -= 1 }
        return Array(keyPrefix.utf8) + bytes
    }

    private func request(_ i: Int, value: [UInt8]) -> (String, [UInt8]) {
        switch workload {
        case .put:
            return ("/etcdserverpb.KV/Put", PutRequest(key: key(i), value: value).protoBytes())
        case .range:
            var r = RangeRequest(key: key(i))
            r.serializable = consistency == "s"
            return ("/etcdserverpb.KV/Range", r.protoBytes())
        case .txnPut:
            let k = key(i)
            let t = TxnRequest(
                compare: [Compare(key: k, target: .mod, result: .greater, .modRevision(-1))],
                success: [RequestOp(.put(PutRequest(key: k, value: value)))],
                failure: [RequestOp(.range(RangeRequest(key: k)))])
            return ("/etcdserverpb.KV/Txn", t.protoBytes())
        }
    }

    private func report(_ sorted: [Int64], seconds: Double) {
        func pct(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let idx = min(sorted.count - 1, Int((p / 100) * Double(sorted.count)))
            return Double(sorted[idx]) / 1e6
        }
        let throughput = Double(sorted.count) / seconds
        if json {
            print("""
            {"workload":"\(workload.rawValue)","requests":\(sorted.count),"seconds":\(seconds),"ops_per_second":\(throughput),\
            "latency_ms":{"min":\(pct(0)),"p50":\(pct(50)),"p90":\(pct(90)),"p99":\(pct(99)),"p999":\(pct(99.9)),"max":\(Double(sorted.last ?? 0) / 1e6)}}
            """)
        } else {
            print("workload \(workload.rawValue): \(sorted.count) requests in \(fixed(seconds, 2)) s = \(fixed(throughput, 0)) ops/s")
            let max = Double(sorted.last ?? 0) / 1e6
            print("latency ms: min \(fixed(pct(0), 3))  p50 \(fixed(pct(50), 3))  p90 \(fixed(pct(90), 3))  p99 \(fixed(pct(99), 3))  p99.9 \(fixed(pct(99.9), 3))  max \(fixed(max, 3))")
        }
    }
}

private final class Counter: @unchecked Sendable {
    // @unchecked: the value is only touched under `lock`.
    private let lock = NIOLock()
    private var value = 0
    func next() -> Int { lock.withLock { defer { value += 1 }; return value } }
}

func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// `x` with `digits` decimals (no Foundation formatting on Linux servers).
func fixed(_ x: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (x * scale).rounded()
    let whole = Int64(scaled / scale)
    let frac = Int64(abs(scaled) - abs(Double(whole)) * scale)
    if digits == 0 { return String(whole) }
    let fracText = String(frac)
    return "\(whole).\(String(repeating: "0", count: max(0, digits - fracText.count)))\(fracText)"
}
