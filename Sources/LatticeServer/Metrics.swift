#if canImport(Glibc)
import Glibc
#endif
import GRPCWire
import LatticeReplication
import LatticeStorage
import LatticeStore
import Prometheus
import Synchronization

/// A member's metrics in Prometheus' text format, under etcd's names where they mean the same
/// thing (so etcd's dashboards and alerts work), plus `lattice_*` for replication.
///
/// Counters are atomics bumped where things happen (gRPC calls on event loops, WAL syncs on the
/// writer thread); gauges are read from the store when scraped.
public final class LatticeMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()

    private struct MethodCounters: Sendable {
        let started: Counter
        /// By `GRPCStatus.Code.rawValue`.
        let handled: [Counter]
    }

    /// Every etcd RPC, as etcd's gRPC interceptor pre-registers them (all codes at 0).
    static let methods: [(service: String, method: String, type: String)] = {
        var m: [(String, String, String)] = []
        for name in ["AuthDisable", "AuthEnable", "AuthStatus", "Authenticate", "RoleAdd", "RoleDelete", "RoleGet",
                     "RoleGrantPermission", "RoleList", "RoleRevokePermission", "UserAdd", "UserChangePassword",
                     "UserDelete", "UserGet", "UserGrantRole", "UserList", "UserRevokeRole"] {
            m.append(("etcdserverpb.Auth", name, "unary"))
        }
        for name in ["MemberAdd", "MemberList", "MemberPromote", "MemberRemove", "MemberUpdate"] {
            m.append(("etcdserverpb.Cluster", name, "unary"))
        }
        for name in ["Compact", "DeleteRange", "Put", "Range", "Txn"] { m.append(("etcdserverpb.KV", name, "unary")) }
        m.append(("etcdserverpb.Lease", "LeaseGrant", "unary"))
        m.append(("etcdserverpb.Lease", "LeaseKeepAlive", "bidi_stream"))
        for name in ["LeaseLeases", "LeaseRevoke", "LeaseTimeToLive"] { m.append(("etcdserverpb.Lease", name, "unary")) }
        for name in ["Alarm", "Defragment", "Downgrade", "Hash", "HashKV", "MoveLeader", "Status"] {
            m.append(("etcdserverpb.Maintenance", name, "unary"))
        }
        m.append(("etcdserverpb.Maintenance", "Snapshot", "server_stream"))
        m.append(("etcdserverpb.Watch", "Watch", "bidi_stream"))
        return m
    }()

    /// grpc-go's names of the status codes, as etcd's metrics label them.
    static let codeNames = ["OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
                            "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
                            "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"]

    private let calls: [String: MethodCounters]
    let receivedBytes: Counter
    let sentBytes: Counter
    let puts: Counter
    let deletes: Counter
    let ranges: Counter
    let txns: Counter
    let walFsync: ValueHistogram
    let walWriteBytes: Gauge
    private let walBytesTotal = Atomic<Int>(0)
    let snapshotSave: ValueHistogram
    /// Scrapes answered (Prometheus' Go handler's own counter, which etcd exposes).
    let scrapes: Counter
    /// The same count, readable (tests).
    let scrapesServed = Atomic<Int>(0)
    let healthSuccess: Counter
    let healthFailures: Counter
    /// Totals read at scrape time already added to their counters, by metric name.
    private let totalsSeen = Mutex([String: Double]())

    /// A counter whose total is read elsewhere (the store's, the kernel's): adds what it grew.
    private func counter(_ name: String, _ help: String, total: Double, labels: [(String, String)] = []) {
        let key = name + labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
        let added = totalsSeen.withLock { seen -> Double in
            defer { seen[key] = max(seen[key] ?? 0, total) }
            return total - (seen[key] ?? 0)
        }
        let c = registry.makeCounter(descriptor: .named(name, help), labels: labels)
        if added > 0 { c.increment(by: added) }
    }

    public init() {
        let registry = self.registry
        var calls: [String: MethodCounters] = [:]
        for m in Self.methods {
            let labels = [("grpc_method", m.method), ("grpc_service", m.service), ("grpc_type", m.type)]
            let started = registry.makeCounter(descriptor: .named("grpc_server_started_total", "Total number of RPCs started on the server."), labels: labels)
            let handled = Self.codeNames.map { code in
                registry.makeCounter(descriptor: .named("grpc_server_handled_total", "Total number of RPCs completed on the server, regardless of success or failure."), labels: [("grpc_code", code)] + labels)
            }
            calls["/\(m.service)/\(m.method)"] = MethodCounters(started: started, handled: handled)
        }
        self.calls = calls
        receivedBytes = registry.makeCounter(descriptor: .named("etcd_network_client_grpc_received_bytes_total", "The total number of bytes received from grpc clients."))
        sentBytes = registry.makeCounter(descriptor: .named("etcd_network_client_grpc_sent_bytes_total", "The total number of bytes sent to grpc clients."))
        puts = registry.makeCounter(descriptor: .named("etcd_mvcc_put_total", "Total number of puts seen by this member."))
        deletes = registry.makeCounter(descriptor: .named("etcd_mvcc_delete_total", "Total number of deletes seen by this member."))
        ranges = registry.makeCounter(descriptor: .named("etcd_mvcc_range_total", "Total number of ranges seen by this member."))
        txns = registry.makeCounter(descriptor: .named("etcd_mvcc_txn_total", "Total number of txns seen by this member."))
        // etcd's buckets: 1 ms doubling to 8.192 s.
        let buckets = (0..<14).map { 0.001 * Double(1 << $0) }
        walFsync = registry.makeValueHistogram(descriptor: .named("etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL."), buckets: buckets)
        walWriteBytes = registry.makeGauge(descriptor: .named("etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL."))
        snapshotSave = registry.makeValueHistogram(descriptor: .named("etcd_disk_backend_commit_duration_seconds", "The latency distributions of commit called by backend."), buckets: buckets)
        for code in ["500", "503"] {
            _ = registry.makeCounter(descriptor: .named("promhttp_metric_handler_requests_total",
                                                        "Total number of scrapes by HTTP status code."), labels: [("code", code)])
        }
        scrapes = registry.makeCounter(descriptor: .named("promhttp_metric_handler_requests_total",
                                                          "Total number of scrapes by HTTP status code."), labels: [("code", "200")])
        healthSuccess = registry.makeCounter(descriptor: .named("etcd_server_health_success", "The total number of successful health checks"))
        healthFailures = registry.makeCounter(descriptor: .named("etcd_server_health_failures", "The total number of failed health checks"))
    }

    /// What the store reports to the WAL and snapshot histograms.
    public var storageObserver: StorageObserver {
        StorageObserver(
            walSynced: { [self] fsync, bytes in
                walFsync.record(Self.seconds(fsync))
                walWriteBytes.set(Double(walBytesTotal.add(bytes, ordering: .relaxed).newValue))
            },
            snapshotSaved: { [self] duration in snapshotSave.record(Self.seconds(duration)) })
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// What the gauges are read from.
    struct Sources: Sendable {
        let store: MVCCStore
        let replication: ReplicationNode
        let memberID: UInt64
        let quotaBytes: Int64
    }

    /// Renders every metric, the gauges read now from `server`.
    func render(_ server: Sources) -> [UInt8] {
        let store = server.store
        func gauge(_ name: String, _ help: String, _ value: Double, labels: [(String, String)] = []) {
            registry.makeGauge(descriptor: .named(name, help), labels: labels).set(value)
        }
        gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", 1)
        gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", 1)
        gauge("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.", 0)
        gauge("etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.", 1,
              labels: [("server_id", String(server.memberID, radix: 16))])
        gauge("etcd_server_version", "Which version is running. 1 for 'server_version' label with current version.", 1,
              labels: [("server_version", EtcdCompatibility.version)])
        gauge("etcd_cluster_version", "Which version is running. 1 for 'cluster_version' label with current cluster version", 1,
              labels: [("cluster_version", "3.5")])
        gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.",
              Double(server.quotaBytes))
        let size = Double(store.approximateSizeBytes)
        gauge("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.", size)
        gauge("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.", size)
        gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", Double(store.keyCount))
        gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.", Double(store.currentRevision))
        gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.", Double(store.compactRevision))
        gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", Double(store.hub.watchedRangeCount))
        gauge("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.", Double(store.hub.subscriberCount))
        renderReplication(server)
        renderProcess()
        defer {
            scrapes.increment()
            scrapesServed.add(1, ordering: .relaxed)
        }
        return registry.emitToBuffer()
    }

    private func renderReplication(_ server: Sources) {
        let status = server.replication.status(stateHash: false)
        registry.makeGauge(descriptor: .named("lattice_replication_pending_changes", "Changes received from peers and held until the changes they depend on arrive."))
            .set(Double(status.pendingChanges))
        registry.makeGauge(descriptor: .named("lattice_replication_log_entries", "Changes kept for peers that have not acknowledged them yet."))
            .set(Double(status.logEntries))
        counter("lattice_replication_merges_total", "Concurrent writes to one key resolved by a field-level merge.",
                total: Double(status.merges))
        counter("lattice_replication_last_writer_wins_total",
                "Concurrent writes to one key resolved by last writer wins (whole values).", total: Double(status.lastWriterWins))
        counter("lattice_replication_merge_conflicts_total",
                "Values inside merges changed differently by several writers (the winner's kept).", total: Double(status.mergeConflicts))
        counter("lattice_replication_changes_received_total", "Changes received from peers.", total: Double(status.changesReceived))
        counter("lattice_replication_duplicate_changes_received_total",
                "Changes received from peers that this member already held (a change relayed by several members).",
                total: Double(status.duplicatesReceived))
        for peer in status.peers {
            let labels = [("peer", peer.name.isEmpty ? String(peer.memberID, radix: 16) : peer.name)]
            registry.makeGauge(descriptor: .named("lattice_peer_connected", "Whether a replication link to the peer is up. 1 if it is, 0 otherwise."), labels: labels)
                .set(Double(peer.connected ? 1 : 0))
            registry.makeGauge(descriptor: .named("lattice_peer_lag_changes", "Changes this member holds that the peer has not acknowledged."), labels: labels)
                .set(Double(peer.lagChanges))
            registry.makeGauge(descriptor: .named("lattice_peer_lag_seconds", "Seconds since the peer last had every change this member holds (0: caught up)."), labels: labels)
                .set(peer.lagSeconds)
        }
    }

    /// `process_*` as Prometheus' Go client reports them, from /proc.
    private func renderProcess() {
        #if os(Linux)
        guard let stat = Self.readFile("/proc/self/stat"),
              let paren = stat.lastIndex(of: UInt8(ascii: ")")) else { return }
        // Fields after "(comm)": state is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24.
        let fields = stat[(paren + 2)...].split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
        func field(_ n: Int) -> Double { fields.count > n - 3 ? Double(fields[n - 3]) ?? 0 : 0 }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = Double(sysconf(Int32(_SC_PAGESIZE)))
        counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                total: (field(14) + field(15)) / ticks)
        registry.makeGauge(descriptor: .named("process_resident_memory_bytes", "Resident memory size in bytes."))
            .set(field(24) * page)
        registry.makeGauge(descriptor: .named("process_virtual_memory_bytes", "Virtual memory size in bytes."))
            .set(field(23))
        if let boot = Self.bootTime() {
            registry.makeGauge(descriptor: .named("process_start_time_seconds", "Start time of the process since unix epoch in seconds."))
                .set(boot + field(22) / ticks)
        }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            registry.makeGauge(descriptor: .named("process_max_fds", "Maximum number of open file descriptors."))
                .set(Double(limit.rlim_cur))
        }
        if let dir = opendir("/proc/self/fd") {
            var n = 0
            while readdir(dir) != nil { n += 1 }
            closedir(dir)
            registry.makeGauge(descriptor: .named("process_open_fds", "Number of open file descriptors."))
                .set(Double(max(0, n - 3)))  // ".", ".." and the directory's own descriptor
        }
        #endif
    }

    private static func bootTime() -> Double? {
        guard let text = readFile("/proc/stat") else { return nil }
        for line in text.split(separator: UInt8(ascii: "\n")) where line.starts(with: Array("btime ".utf8)) {
            return Double(String(decoding: line.dropFirst(6), as: UTF8.self))
        }
        return nil
    }

    private static func readFile(_ path: String) -> [UInt8]? { try? readWholeFile(path, limit: 1 << 20) }
}

extension LatticeMetrics: GRPCCallObserver {
    public func started(path: String) {
        calls[path]?.started.increment()
    }

    public func handled(path: String, code: GRPCStatus.Code) {
        calls[path]?.handled[code.rawValue].increment()
    }

    public func received(bytes: Int) { receivedBytes.increment(by: Int64(bytes)) }
    public func sent(bytes: Int) { sentBytes.increment(by: Int64(bytes)) }
}

extension MetricNameDescriptor {
    /// A descriptor for a name given whole (etcd's names do not all follow the unit-suffix rule).
    static func named(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }
}
