import ArgumentParser
import LatticeCore
import LatticeServer
import LatticeStorage

/// `lattice snapshot restore|status`, with etcdutl's flags where they apply. Both read a
/// Lattice snapshot or an etcd one (so restoring an etcd snapshot migrates it).
struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Restore or inspect a snapshot (Lattice's, or etcd 3.4/3.5's bbolt database).",
        subcommands: [Restore.self, Status.self])
}

/// `lattice migrate --from-etcd-snapshot etcd.db --data-dir DIR`: `snapshot restore` of an etcd
/// snapshot, under the name an operator moving from etcd looks for.
struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Build a Lattice data directory from an etcd 3.4/3.5 snapshot, keeping keys, values, leases, revisions and versions.")

    @Option(help: "The etcd snapshot (etcdctl snapshot save, or etcd's member/snap/db).")
    var fromEtcdSnapshot: String

    @OptionGroup var target: RestoreTarget

    func run() throws { try target.restore(fromEtcdSnapshot, requiring: .etcd) }
}

/// Where and as which member a snapshot is restored (etcdutl's flags).
struct RestoreTarget: ParsableArguments {
    @Option(help: "Path to the data directory to create (must not hold data).")
    var dataDir: String?

    @Option(help: "Human-readable name for this member.")
    var name = "default"

    @Option(help: "Initial cluster configuration for restore bootstrap.")
    var initialCluster: String?

    @Option(help: "Initial cluster token for the cluster during restore bootstrap.")
    var initialClusterToken = "etcd-cluster"

    @Option(help: "List of this member's peer URLs to advertise to the rest of the cluster.")
    var initialAdvertisePeerUrls = "http://localhost:2380"

    @Flag(help: "Ignore the snapshot's integrity hash (a Lattice snapshot's SHA-256 trailer).")
    var skipHashCheck = false

    @Option(help: "TTL in seconds for leases a Lattice snapshot names (it holds no TTLs; etcd snapshots do).")
    var leaseTtl: Int64 = 3600

    func restore(_ file: String, requiring format: SnapshotContents.Format? = nil) throws {
        let contents = try SnapshotContents.parse(try readWholeFile(file), skipHashCheck: skipHashCheck)
        if let format, contents.format != format {
            throw ValidationError("\(file) is a \(contents.format.rawValue) snapshot, not an \(format.rawValue) one")
        }
        let dir = dataDir ?? "\(name).lattice"
        let peers = initialAdvertisePeerUrls.split(separator: ",").map(String.init)
        var members: [(name: String, peerURLs: [String])] = [(name, peers)]
        if let initialCluster {
            members = try Serve.parseInitialCluster(initialCluster)
            guard members.contains(where: { $0.name == name }) else {
                throw ValidationError("couldn't find local name \"\(name)\" in the initial cluster configuration")
            }
        }
        let ids = members.map { ClusterIdentity.memberID(peerURLs: $0.peerURLs, clusterToken: initialClusterToken) }
        let memberID = ids[members.firstIndex { $0.name == name }!]
        let leases = try contents.restore(into: dir, memberID: memberID, clusterID: ClusterIdentity.clusterID(memberIDs: ids),
                                          defaultLeaseTTL: leaseTtl)
        print("restored \(contents.kvs.count) keys and \(leases) leases from a \(contents.format.rawValue) snapshot (revision \(contents.revision)) into \(dir)")
    }
}

extension SnapshotCommand {

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build a new data directory from a snapshot file (Lattice or etcd).")

        @Argument(help: "The snapshot file (etcdctl snapshot save, or etcd's member/snap/db).")
        var file: String

        @OptionGroup var target: RestoreTarget

        func run() throws { try target.restore(file) }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a snapshot's hash, revision, key count and size (etcdutl's columns).")

        @Argument(help: "The snapshot file.")
        var file: String

        @Option(name: [.customShort("w"), .customLong("write-out")], help: "simple, table or json.")
        var writeOut = "simple"

        func run() throws {
            let c = try SnapshotContents.parse(try readWholeFile(file))
            let hash = String(c.hash, radix: 16)
            switch writeOut {
            case "json":
                print("{\"hash\":\(c.hash),\"revision\":\(c.revision),\"totalKey\":\(c.totalKeys),\"totalSize\":\(c.totalBytes),\"format\":\"\(c.format.rawValue)\"}")
            case "table":
                let row = [hash, String(c.revision), String(c.totalKeys), Self.size(c.totalBytes)]
                let header = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"]
                let widths = zip(header, row).map { max($0.count, $1.count) }
                func line(_ cells: [String]) -> String {
                    "| " + zip(cells, widths).map { $0 + String(repeating: " ", count: $1 - $0.count) }.joined(separator: " | ") + " |"
                }
                let rule = "+" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "+") + "+"
                print([rule, line(header), rule, line(row), rule].joined(separator: "\n"))
            default:
                print("\(hash), \(c.revision), \(c.totalKeys), \(Self.size(c.totalBytes))")
            }
        }

        /// Go's humanize.Bytes, as etcdutl prints sizes: SI units, one decimal under 10.
        static func size(_ n: Int) -> String {
            if n < 10 { return "\(n) B" }
            let units = ["B", "kB", "MB", "GB", "TB", "PB"]
            var e = 0
            var value = Double(n)
            while value >= 1000 && e < units.count - 1 {
                value /= 1000
                e += 1
            }
            let rounded = (value * 10).rounded() / 10
            return rounded < 10 ? "\(String(format1: rounded)) \(units[e])" : "\(Int(value.rounded())) \(units[e])"
        }
    }
}

extension String {
    /// One decimal place, without Foundation's formatter ("1.5", "2.0").
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(tenths % 10)"
    }
}
