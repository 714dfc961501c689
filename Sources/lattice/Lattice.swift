import ArgumentParser
import LatticeServer
import LatticeStorage
#if canImport(Glibc)
import Glibc
#endif

@main
struct Lattice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lattice",
        abstract: "An etcd v3 API server whose keyspace is a CRDT, for Kubernetes at the edge.",
        version: LatticeVersion.string,
        subcommands: [Serve.self, Bench.self, ClusterStatus.self, SnapshotCommand.self, MigrateCommand.self],
        defaultSubcommand: Serve.self
    )

    /// Serving takes etcd's `ETCD_<FLAG>` environment variables too (see `EtcdEnvironment`).
    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        let subcommands: Set<String> = ["bench", "cluster-status", "snapshot", "migrate", "help"]
        if arguments.first.map({ !subcommands.contains($0) }) ?? true {
            let environment = EtcdEnvironment.current()
            if let path = configFilePath(arguments, environment) {
                // As in etcd, a configuration file replaces the command line and ETCD_* variables.
                do {
                    let text = String(decoding: try readWholeFile(path, limit: 1 << 20), as: UTF8.self)
                    let translation = try EtcdConfigFile.translate(text)
                    let ignored = arguments.filter { $0.hasPrefix("--") && !$0.hasPrefix("--config-file") && $0 != "serve" }
                    for flag in ignored {
                        FileHandleStderr.write("[WARNING] \(flag) is ignored: --config-file \(path) is given\n")
                    }
                    for warning in translation.warnings { FileHandleStderr.write("[WARNING] \(path): \(warning)\n") }
                    arguments = translation.arguments
                } catch {
                    FileHandleStderr.write("Error: --config-file \(path): \(error)\n")
                    Glibc.exit(1)
                }
            } else {
                let (merged, warnings) = EtcdEnvironment.apply(to: arguments, environment: environment)
                for warning in warnings { FileHandleStderr.write("[WARNING] \(warning)\n") }
                arguments = merged
            }
        }
        // A bad flag is a configuration error: one line and status 1, as etcd exits (the
        // parser's own convention would be 64 and a usage text).
        let command: any ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            if exitCode(for: error) == .success {
                print(fullMessage(for: error))
                Glibc.exit(0)
            }
            FileHandleStderr.write("Error: \(message(for: error))\n")
            Glibc.exit(1)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var syncCommand = command
                try syncCommand.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                FileHandleStderr.write("Error: \(message(for: error))\n")
                Glibc.exit(1)
            }
            exit(withError: error)
        }
    }
}

/// `--config-file PATH` (or `=PATH`), else `ETCD_CONFIG_FILE`.
func configFilePath(_ arguments: [String], _ environment: [String: String]) -> String? {
    for (i, argument) in arguments.enumerated() {
        if argument == "--config-file", i + 1 < arguments.count { return arguments[i + 1] }
        if argument.hasPrefix("--config-file=") { return String(argument.dropFirst("--config-file=".count)) }
    }
    return environment["ETCD_CONFIG_FILE"].flatMap { $0.isEmpty ? nil : $0 }
}

enum LatticeVersion {
    /// The Lattice release and the etcd API version it serves.
    static let release = "0.1.0"
    static let etcdAPI = "3.5"
    static let string = "lattice Version: \(release)\netcd API Version: \(etcdAPI)"
}

/// etcd reads every flag also from `ETCD_<FLAG>` (upper case, dashes as underscores); a flag
/// on the command line wins, with a warning, and an `ETCD_` variable that names no flag is
/// reported rather than silently ignored.
enum EtcdEnvironment {
    /// The serving flags, from `Serve`'s options (so the list cannot drift from them), with
    /// whether each is a boolean flag.
    static let flags: [(name: String, isBoolean: Bool)] = Mirror(reflecting: Serve()).children.compactMap { child in
        guard let label = child.label else { return nil }
        let property = label.hasPrefix("_") ? String(label.dropFirst()) : label
        var dashed = ""
        for c in property {
            if c.isUppercase { dashed += "-" + c.lowercased() } else { dashed.append(c) }
        }
        return (dashed, String(describing: type(of: child.value)).hasPrefix("Flag"))
    }

    /// Variables etcd itself sets or reads that are not flags.
    static let notFlags: Set<String> = ["ETCD_UNSUPPORTED_ARCH", "ETCD_VERIFY"]

    static func current() -> [String: String] {
        var out: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let text = String(cString: entry)
            if text.hasPrefix("ETCD_"), let eq = text.firstIndex(of: "=") {
                out[String(text[..<eq])] = String(text[text.index(after: eq)...])
            }
            p += 1
        }
        return out
    }

    static func apply(to arguments: [String], environment: [String: String]) -> (arguments: [String], warnings: [String]) {
        // Go's flag package takes booleans as `--flag=true|false` too (kubeadm writes
        // `--client-cert-auth=true`).
        let booleans = Set(flags.filter(\.isBoolean).map { "--" + $0.name })
        var out: [String] = []
        for argument in arguments {
            if let eq = argument.firstIndex(of: "="), booleans.contains(String(argument[..<eq])) {
                let value = argument[argument.index(after: eq)...].lowercased()
                if ["true", "1", "t"].contains(value) { out.append(String(argument[..<eq])); continue }
                if ["false", "0", "f"].contains(value) { continue }
            }
            out.append(argument)
        }
        var warnings: [String] = []
        let known = Dictionary(uniqueKeysWithValues: flags.map { ("ETCD_" + String($0.name.uppercased().map { $0 == "-" ? "_" : $0 }), $0) })
        for (variable, value) in environment.sorted(by: { $0.key < $1.key }) where !notFlags.contains(variable) {
            guard let flag = known[variable] else {
                warnings.append("unrecognized environment variable \(variable)=\(value)")
                continue
            }
            let option = "--" + flag.name
            if arguments.contains(where: { $0 == option || $0.hasPrefix(option + "=") }) {
                warnings.append("recognized environment variable \(variable), but unused: shadowed by corresponding flag")
                continue
            }
            if flag.isBoolean {
                if ["true", "1"].contains(value.lowercased()) { out.append(option) }
            } else {
                out += [option, value]
            }
        }
        return (out, warnings)
    }
}

