import ArgumentParser

@main
struct Lattice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lattice",
        abstract: "An etcd v3 API server whose keyspace is a CRDT, for Kubernetes at the edge.",
        version: LatticeVersion.string,
        subcommands: [Serve.self, Bench.self, ClusterStatus.self],
        defaultSubcommand: Serve.self
    )
}

enum LatticeVersion {
    /// The Lattice release.
    static let string = "0.1.0"
}
