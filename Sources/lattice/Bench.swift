import ArgumentParser
import EtcdAPI
import GRPCWire
import Histogram
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ProtoWire

#if canImport(Glibc)
import Glibc
#endif

/// `lattice bench`: a load generator for any etcd v3 API server (Lattice or etcd), on Lattice's
/// own gRPC client. Latencies go into HdrHistograms (microsecond resolution).
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Benchmark an etcd-API server (Lattice or etcd).")

    enum Workload: String, ExpressibleByArgument, CaseIterable {
        case put, range, txnPut = "txn-put", mixed, watch, watchFanout = "watch-fanout", list
    }

    @Argument(help: "Workload: put, range, txn-put, mixed, watch, watch-fanout or list (paginated LIST of --key-prefix, as kube-apiserver lists).")
    var workload: Workload

    @Option(help: "Comma-separated host:port endpoints.")
    var endpoints = "127.0.0.1:2379"

    @Option(help: "Number of gRPC connections.")
    var conns = 1

    @Option(help: "Number of concurrent clients (spread over the connections).")
    var clients = 1

    @Option(help: "Total number of requests (puts for the watch workloads).")
    var total = 10_000

    @Option(help: "Run for this many seconds instead of a fixed total.")
    var duration: Double?

    @Option(help: "Requests per second across all clients (0 = as fast as possible; watch default 1000).")
    var rate: Int?

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

    @Option(help: "mixed: fraction of requests that are ranges (the rest are puts).")
    var readRatio = 0.9

    @Option(help: "watch: number of watchers (each on its own stream for watch, on shared streams for watch-fanout).")
    var watchers = 100

    @Option(help: "watch: number of distinct keys watched; watcher w watches key w mod N and the writer cycles over the N keys (1: every watcher sees every put).")
    var watchKeys = 1

    @Option(help: "list: keys per page (kube-apiserver asks for 500).")
    var pageSize = 500

    @Option(help: "Authenticate as name:password (auth enabled); every request carries the token.")
    var user: String?

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard conns > 0, clients > 0, total > 0, keySize > 0, keySpaceSize > 0, watchers > 0, watchKeys > 0 else {
            throw ValidationError("--conns, --clients, --total, --key-size, --key-space-size, --watchers and --watch-keys must be positive")
        }
        guard consistency == "l" || consistency == "s" else { throw ValidationError("--consistency must be l or s") }
        guard (0...1).contains(readRatio) else { throw ValidationError("--read-ratio must be between 0 and 1") }
        if let duration, duration <= 0 { throw ValidationError("--duration must be positive") }
        if (workload == .watch || workload == .watchFanout) && valSize < 8 {
            throw ValidationError("watch workloads need --val-size of at least 8 (the value carries the send time)")
        }
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
        defer { for c in connections { Task { await c.close() } } }
        let metadata = try await tokenMetadata(user: user, client: connections[0])
        let result: BenchResult
        switch workload {
        case .watch, .watchFanout:
            guard user == nil else { throw ValidationError("--user works with the put, range, mixed and txn workloads") }
            result = try await runWatch(connections)
        case .list:
            guard user == nil else { throw ValidationError("--user works with the put, range, mixed and txn workloads") }
            result = try await runList(connections)
        default:
            result = try await runRequests(connections, metadata: metadata)
        }
        report(result)
    }

    // MARK: request workloads

    private func runRequests(_ connections: [GRPCClient], metadata: [(String, String)]) async throws -> BenchResult {
        let value = [UInt8](repeating: 0x76, count: valSize)
        if workload == .range || workload == .mixed {
            for i in 0..<min(keySpaceSize, 10_000) {
                _ = try await connections[0].unary(path: "/etcdserverpb.KV/Put", request: PutRequest(key: keyForIndex(i), value: value).protoBytes(),
                                                   metadata: metadata)
            }
        }
        let plan = LoadPlan(total: duration == nil ? total : Int.max, seconds: duration, rate: rate ?? 0)
        let progress = ProgressReporter(enabled: !json)
        let start = monotonicNanoseconds()
        let histogram = try await runClientsOnEventLoops(connections, plan: plan, value: value, metadata: metadata, progress: progress)
        progress.stop()
        return BenchResult(histogram: histogram, seconds: Double(monotonicNanoseconds() - start) / 1e9)
    }

    /// The clients, each driven on its connection's event loop: the next request is sent from
    /// the previous one's completion callback (or, with `--rate`, from a timer at its scheduled
    /// time), with no task switch or thread hop in between, so the load generator spends as
    /// little CPU as it can on the machine it shares with the server it measures.
    private func runClientsOnEventLoops(_ connections: [GRPCClient], plan: LoadPlan, value: [UInt8], metadata: [(String, String)],
                                        progress: ProgressReporter) async throws -> Histogram<UInt64> {
        var results: [EventLoopFuture<Histogram<UInt64>>] = []
        for c in 0..<clients {
            let connection = connections[c % connections.count]
            let client = LoopClient(promise: connection.eventLoop.makePromise())
            results.append(client.promise.futureResult)
            connection.eventLoop.execute { step(client, connection) }
        }
        @Sendable func step(_ client: LoopClient, _ connection: GRPCClient) {
            guard let slot = plan.next() else { return client.promise.succeed(client.histogram) }
            let wait = slot.scheduledNanoseconds - monotonicNanoseconds()
            if slot.scheduledNanoseconds > 0 && wait > 0 {
                connection.eventLoop.scheduleTask(in: .nanoseconds(wait)) { send(slot, client, connection) }
            } else {
                send(slot, client, connection)
            }
        }
        @Sendable func send(_ slot: LoadPlan.Slot, _ client: LoopClient, _ connection: GRPCClient) {
            let (path, bytes) = request(slot.index, value: value)
            // Rate-limited runs measure from the scheduled start (no coordinated omission).
            let t0 = slot.scheduledNanoseconds > 0 ? slot.scheduledNanoseconds : monotonicNanoseconds()
            connection.unary(path: path, request: bytes, metadata: metadata).whenComplete { result in
                if case .failure(let error) = result { return client.promise.fail(error) }
                _ = client.histogram.record(UInt64(max(1, (monotonicNanoseconds() - t0) / 1000)))
                progress.tick()
                step(client, connection)
            }
        }
        var all = latencyHistogram()
        for result in results { all.add(try await result.get()) }
        return all
    }

    private func request(_ i: Int, value: [UInt8]) -> (String, [UInt8]) {
        let k = key(i)
        switch workload {
        case .put:
            return ("/etcdserverpb.KV/Put", PutRequest(key: k, value: value).protoBytes())
        case .range:
            return rangeRequest(k)
        case .mixed:
            return Double.random(in: 0..<1) < readRatio ? rangeRequest(k) : ("/etcdserverpb.KV/Put", PutRequest(key: k, value: value).protoBytes())
        case .txnPut:
            // kube-apiserver's optimistic update shape: compare mod_revision, put, else range.
            let t = TxnRequest(
                compare: [Compare(key: k, target: .mod, result: .greater, .modRevision(-1))],
                success: [RequestOp(.put(PutRequest(key: k, value: value)))],
                failure: [RequestOp(.range(RangeRequest(key: k)))])
            return ("/etcdserverpb.KV/Txn", t.protoBytes())
        case .watch, .watchFanout, .list:
            fatalError("not a request workload")
        }
    }

    private func rangeRequest(_ k: [UInt8]) -> (String, [UInt8]) {
        var r = RangeRequest(key: k)
        r.serializable = consistency == "s"
        return ("/etcdserverpb.KV/Range", r.protoBytes())
    }

    // MARK: paginated LIST

    /// `list`: each client lists every key under `--key-prefix` page by page, as kube-apiserver
    /// does: `--page-size` keys per Range, the first at the current revision and the rest pinned
    /// to it, each next page starting after the last key. One sample per page; `--total` pages
    /// in all (or `--duration`).
    private func runList(_ connections: [GRPCClient]) async throws -> BenchResult {
        let prefix = Array(keyPrefix.utf8)
        var end = prefix
        while let last = end.last, last == 0xFF { end.removeLast() }
        if end.isEmpty { end = [0] } else { end[end.count - 1] += 1 }
        let rangeEnd = end
        let plan = LoadPlan(total: duration == nil ? total : Int.max, seconds: duration, rate: 0)
        let progress = ProgressReporter(enabled: !json)
        let start = monotonicNanoseconds()
        let histogram = try await withThrowingTaskGroup(of: Histogram<UInt64>.self) { group in
            for c in 0..<clients {
                let connection = connections[c % connections.count]
                group.addTask { [pageSize, consistency] in
                    var histogram = latencyHistogram()
                    var next = prefix.isEmpty ? [0] : prefix
                    var revision: Int64 = 0
                    while plan.next() != nil {
                        var r = RangeRequest(key: next, rangeEnd: rangeEnd, limit: Int64(pageSize), revision: revision)
                        r.serializable = consistency == "s"
                        let t0 = monotonicNanoseconds()
                        let page = try RangeResponse(protoBytes: try await connection.unary(path: "/etcdserverpb.KV/Range", request: r.protoBytes()))
                        _ = histogram.record(UInt64(max(1, (monotonicNanoseconds() - t0) / 1000)))
                        progress.tick()
                        if page.more, let last = page.kvs.last {
                            next = last.key + [0]
                            if revision == 0 { revision = page.header?.revision ?? 0 }
                        } else {
                            next = prefix.isEmpty ? [0] : prefix
                            revision = 0
                        }
                    }
                    return histogram
                }
            }
            var all = latencyHistogram()
            for try await h in group { all.add(h) }
            return all
        }
        progress.stop()
        return BenchResult(histogram: histogram, seconds: Double(monotonicNanoseconds() - start) / 1e9)
    }

    // MARK: watch workloads

    /// `watch`: one stream per watcher; `watch-fanout`: the watchers share `--conns` streams.
    /// Watcher w watches key w mod `--watch-keys`; a writer puts at `--rate` (default 1000/s),
    /// cycling over the keys; each value carries its send time and each received event records
    /// put→event latency. Responses are scanned on the connection's event loop as they arrive
    /// (no queue in the load generator, so the latency measured is the server's).
    private func runWatch(_ connections: [GRPCClient]) async throws -> BenchResult {
        let keys: [[UInt8]] = watchKeys == 1 ? [Array((keyPrefix + "bench-watch").utf8)]
            : (0..<watchKeys).map { Array((keyPrefix + "bench-watch-\($0)").utf8) }
        let streamCount = workload == .watch ? watchers : min(watchers, connections.count)
        let state = NIOLockedValueBox((created: 0, count: 0, failure: nil as String?, histogram: latencyHistogram()))
        let progress = ProgressReporter(enabled: !json)
        let onMessage: @Sendable ([UInt8]) -> Void = { bytes in
            let now = monotonicNanoseconds()
            var created = 0
            var latencies: [Int64] = []
            var failure: String?
            do {
                var r = ProtoReader(bytes)
                while let (field, wt) = try r.nextTag() {
                    switch field {
                    case 3: if try r.readBool(wt, field: 3) { created += 1 }
                    case 11 where wt == .lengthDelimited:
                        var event = try r.readNested()
                        var sent = now
                        while let (ef, ewt) = try event.nextTag() {
                            guard ef == 2, ewt == .lengthDelimited else { try event.skip(ewt, field: ef); continue }
                            var kv = try event.readNested()
                            while let (kf, kwt) = try kv.nextTag() {
                                if kf == 5, kwt == .lengthDelimited { sent = readInt64(try kv.readBytesPrefix(8)) } else { try kv.skip(kwt, field: kf) }
                            }
                        }
                        latencies.append(now - sent)
                    default: try r.skip(wt, field: field)
                    }
                }
            } catch {
                failure = "undecodable WatchResponse: \(error)"
            }
            state.withLockedValue { st in
                st.created += created
                for l in latencies { _ = st.histogram.record(UInt64(max(1, l / 1000))) }
                st.count += latencies.count
                if st.failure == nil { st.failure = failure }
            }
            if !latencies.isEmpty { progress.tick(latencies.count) }
        }
        let startRevision: Int64 = try RangeResponse(protoBytes: try await connections[0].unary(
            path: "/etcdserverpb.KV/Range", request: RangeRequest(key: keys[0]).protoBytes())).header!.revision + 1
        var streams: [GRPCClientStream] = []
        var enders: [Task<Void, any Error>] = []
        var watcher = 0
        for s in 0..<streamCount {
            let stream = try await connections[s % connections.count].openStream(path: "/etcdserverpb.Watch/Watch", onMessage: onMessage)
            let perStream = workload == .watch ? 1 : (watchers / streamCount + (s < watchers % streamCount ? 1 : 0))
            for _ in 0..<perStream {
                var c = WatchCreateRequest()
                c.key = keys[watcher % keys.count]
                c.startRevision = startRevision
                stream.send(WatchRequest(.createRequest(c)).protoBytes())
                watcher += 1
            }
            streams.append(stream)
            let responses = stream.responses
            enders.append(Task { for try await _ in responses {} })
        }
        let createDeadline = monotonicNanoseconds() + 60_000_000_000
        while state.withLockedValue({ $0.created }) < watchers {
            guard monotonicNanoseconds() < createDeadline else {
                throw ValidationError("only \(state.withLockedValue { $0.created }) of \(watchers) watches were created within 60 s")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        // Watchers per key: key k is watched by the watchers w with w mod keys == k.
        let watchersOfKey = (0..<keys.count).map { watchers / keys.count + ($0 < watchers % keys.count ? 1 : 0) }
        let plan = LoadPlan(total: duration == nil ? total : Int.max, seconds: duration, rate: rate ?? 1000)
        let start = monotonicNanoseconds()
        var puts = 0
        var want = 0
        while let slot = plan.next() {
            let wait = slot.scheduledNanoseconds - monotonicNanoseconds()
            if wait > 0 { try await Task.sleep(for: .nanoseconds(wait)) }
            var value = [UInt8](repeating: 0x76, count: max(8, valSize))
            writeInt64(monotonicNanoseconds(), into: &value)
            let k = puts % keys.count
            _ = try await connections[0].unary(path: "/etcdserverpb.KV/Put", request: PutRequest(key: keys[k], value: value).protoBytes())
            want += watchersOfKey[k]
            puts += 1
        }
        let deadline = monotonicNanoseconds() + 30_000_000_000
        while state.withLockedValue({ $0.count }) < want && monotonicNanoseconds() < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        progress.stop()
        for s in streams { s.cancel() }
        for e in enders { e.cancel() }
        let (count, histogram, failure) = state.withLockedValue { ($0.count, $0.histogram, $0.failure) }
        if let failure { throw ValidationError(failure) }
        if count < want {
            FileHandleStderr.write("warning: received \(count) of \(want) events\n")
        }
        return BenchResult(histogram: histogram, seconds: Double(monotonicNanoseconds() - start) / 1e9)
    }

    // MARK: keys and output

    func key(_ i: Int) -> [UInt8] {
        keyForIndex(sequentialKeys ? i % keySpaceSize : Int.random(in: 0..<keySpaceSize))
    }

    private func keyForIndex(_ i: Int) -> [UInt8] {
        // Fixed width: "aaaa0042", so sequential keys sort in index order.
        var bytes = [UInt8](repeating: 0x61, count: keySize)
        var v = i
        var p = keySize - 1
        while v > 0 && p >= 0 { bytes[p] = UInt8(0x30 + v % 10); v /= 10; p -= 1 }
        return Array(keyPrefix.utf8) + bytes
    }

    private func report(_ r: BenchResult) {
        let h = r.histogram
        func ms(_ us: UInt64) -> Double { Double(us) / 1000 }
        let count = h.totalCount
        let throughput = Double(count) / r.seconds
        let p = (min: ms(h.min), p50: ms(h.valueAtPercentile(50)), p90: ms(h.valueAtPercentile(90)),
                 p99: ms(h.valueAtPercentile(99)), p999: ms(h.valueAtPercentile(99.9)), max: ms(h.max))
        if json {
            print("""
            {"workload":"\(workload.rawValue)","requests":\(count),"seconds":\(r.seconds),"ops_per_second":\(throughput),\
            "latency_ms":{"min":\(p.min),"p50":\(p.p50),"p90":\(p.p90),"p99":\(p.p99),"p999":\(p.p999),"max":\(p.max)}}
            """)
        } else {
            let unit = workload == .watch || workload == .watchFanout ? "events" : "requests"
            print("workload \(workload.rawValue): \(count) \(unit) in \(fixed(r.seconds, 2)) s = \(fixed(throughput, 0))/s")
            print("latency ms: min \(fixed(p.min, 3))  p50 \(fixed(p.p50, 3))  p90 \(fixed(p.p90, 3))  p99 \(fixed(p.p99, 3))  p99.9 \(fixed(p.p999, 3))  max \(fixed(p.max, 3))")
        }
    }
}

/// One client of `runClientsOnEventLoops`. Unchecked Sendable: it is only touched
/// on its connection's event loop (the callbacks of that connection's futures).
final class LoopClient: @unchecked Sendable {
    var histogram = latencyHistogram()
    let promise: EventLoopPromise<Histogram<UInt64>>
    init(promise: EventLoopPromise<Histogram<UInt64>>) { self.promise = promise }
}

/// Latencies in microseconds, up to 60 s, three significant digits.
func latencyHistogram() -> Histogram<UInt64> {
    Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
}

struct BenchResult {
    let histogram: Histogram<UInt64>
    let seconds: Double
}

/// Hands out request slots: a fixed total or a deadline, optionally paced at a fixed rate.
final class LoadPlan: Sendable {
    struct Slot { let index: Int; let scheduledNanoseconds: Int64 }

    private let state = NIOLockedValueBox(0)
    private let total: Int
    private let deadline: Int64?
    private let intervalNanoseconds: Int64
    private let start = monotonicNanoseconds()

    init(total: Int, seconds: Double?, rate: Int) {
        self.total = total
        self.deadline = seconds.map { monotonicNanoseconds() + Int64($0 * 1e9) }
        self.intervalNanoseconds = rate > 0 ? 1_000_000_000 / Int64(rate) : 0
    }

    func next() -> Slot? {
        let i: Int = state.withLockedValue { v in defer { v += 1 }; return v }
        if i >= total { return nil }
        let scheduled = intervalNanoseconds > 0 ? start + Int64(i) * intervalNanoseconds : 0
        if let deadline, max(scheduled, monotonicNanoseconds()) >= deadline { return nil }
        return Slot(index: i, scheduledNanoseconds: scheduled)
    }
}

/// Completed-operation count on stderr once a second.
final class ProgressReporter: Sendable {
    private let count = NIOLockedValueBox(0)
    private let task: Task<Void, Never>?

    init(enabled: Bool) {
        guard enabled else { task = nil; return }
        let count = self.count
        task = Task {
            var last = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let now = count.withLockedValue { $0 }
                FileHandleStderr.write("  \(now) done (\(now - last)/s)\n")
                last = now
            }
        }
    }

    func tick(_ n: Int = 1) { count.withLockedValue { $0 += n } }
    func stop() { task?.cancel() }
}

enum FileHandleStderr {
    static func write(_ text: String) {
        var t = text
        t.withUTF8 { buffer in _ = Glibc.write(2, buffer.baseAddress, buffer.count) }
    }
}

func writeInt64(_ v: Int64, into bytes: inout [UInt8]) {
    for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: v >> (8 * Int64(i))) }
}

func readInt64(_ bytes: [UInt8]) -> Int64 {
    guard bytes.count >= 8 else { return 0 }
    var v: Int64 = 0
    for i in 0..<8 { v |= Int64(bytes[i]) << (8 * Int64(i)) }
    return v
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
