/// etcd's `--config-file`: the YAML file of `etcd.conf.yml.sample`, turned into the flags it
/// stands for. As in etcd, a configuration file replaces the command line and the `ETCD_*`
/// variables. Keys that mean nothing without Raft are reported and skipped; keys whose value
/// would change behaviour Lattice does not have (a separate WAL directory, discovery, proxy
/// mode, forcing a new cluster) are refused; unknown keys are reported, never silently dropped.
public enum EtcdConfigFile {
    public struct Translation: Sendable, Equatable {
        public var arguments: [String]
        public var warnings: [String]
    }

    /// Keys whose value becomes the flag of the same name.
    static let flagKeys: Set<String> = [
        "name", "data-dir", "snapshot-count", "quota-backend-bytes", "listen-peer-urls", "listen-client-urls",
        "initial-advertise-peer-urls", "advertise-client-urls", "initial-cluster", "initial-cluster-token",
        "initial-cluster-state", "log-level", "auto-compaction-mode", "auto-compaction-retention", "cipher-suites",
        "tls-min-version", "tls-max-version", "max-request-bytes", "max-txn-ops", "listen-metrics-urls",
        "max-concurrent-streams", "experimental-watch-progress-notify-interval", "unsafe-no-fsync",
        "logger", "log-outputs", "self-signed-cert-validity", "auth-token", "auth-token-ttl", "bcrypt-cost",
    ]

    /// Durations: YAML holds them as nanoseconds (etcd's Go types), flags as Go durations.
    static let durationKeys: Set<String> = [
        "grpc-keepalive-min-time", "grpc-keepalive-interval", "grpc-keepalive-timeout",
    ]

    /// Keys of etcd's that have no effect here, with why; reported when given.
    static let inertKeys: [String: String] = [
        "heartbeat-interval": "no leader election", "election-timeout": "no leader election",
        "strict-reconfig-check": "membership changes need no quorum", "max-snapshots": "Lattice keeps two snapshots",
        "max-wals": "Lattice removes WAL segments once a snapshot covers them", "enable-pprof": "no Go profiler",
        "cors": "no CORS restriction is applied",
        "discovery-fallback": "no discovery", "proxy-failure-wait": "no proxy mode", "proxy-refresh-interval": "no proxy mode",
        "proxy-dial-timeout": "no proxy mode", "proxy-write-timeout": "no proxy mode", "proxy-read-timeout": "no proxy mode",
        "enable-v2": "no v2 API", "experimental-initial-corrupt-check": "no cross-member hash check at start",
        "initial-election-tick-advance": "no leader election", "pre-vote": "no leader election",
    ]

    /// Keys that may only keep their default (the value that changes nothing).
    static let refusedUnlessDefault: [String: (isDefault: @Sendable (YAMLValue) -> Bool, why: String)] = [
        "wal-dir": ({ $0.isEmpty }, "the WAL lives in the data directory"),
        "discovery": ({ $0.isEmpty }, "discovery is not supported: list the members in initial-cluster"),
        "discovery-srv": ({ $0.isEmpty }, "DNS discovery is not supported: list the members in initial-cluster"),
        "discovery-proxy": ({ $0.isEmpty }, "discovery is not supported"),
        "proxy": ({ $0.isEmpty || $0.scalar == "off" }, "proxy mode is not supported"),
        "force-new-cluster": ({ $0.isEmpty || $0.scalar == "false" }, "force-new-cluster is not supported"),
    ]

    static let transportKeys: [String: String] = [
        "cert-file": "cert-file", "key-file": "key-file", "client-cert-auth": "client-cert-auth",
        "trusted-ca-file": "trusted-ca-file", "auto-tls": "auto-tls",
    ]

    /// The flags `text` (the file's contents) stands for.
    public static func translate(_ text: String) throws(ConfigFileError) -> Translation {
        let root = try YAMLSubset.parse(text)
        var arguments: [String] = []
        var warnings: [String] = []
        func flag(_ name: String, _ value: YAMLValue, key: String) throws(ConfigFileError) {
            switch value {
            case .null:
                return
            case .scalar(let s):
                if s.isEmpty { return }
                if ["unsafe-no-fsync", "client-cert-auth", "auto-tls", "peer-client-cert-auth", "peer-auto-tls"].contains(name) {
                    switch s.lowercased() {
                    case "true": arguments.append("--\(name)")
                    case "false": break
                    default: throw ConfigFileError("\(key): expected true or false, got \"\(s)\"")
                    }
                } else {
                    arguments += ["--\(name)", s]
                }
            case .list(let items):
                if !items.isEmpty { arguments += ["--\(name)", items.joined(separator: ",")] }
            case .map:
                throw ConfigFileError("\(key): expected a value, got a mapping")
            }
        }
        for (key, value) in root {
            if flagKeys.contains(key) {
                try flag(key, value, key: key)
            } else if durationKeys.contains(key) {
                guard case .scalar(let s) = value, !s.isEmpty else { continue }
                // A number is nanoseconds (Go's time.Duration in YAML); a Go duration is taken as is.
                try flag(key, .scalar(Int64(s).map { "\($0)ns" } ?? s), key: key)
            } else if key == "client-transport-security" || key == "peer-transport-security" {
                guard case .map(let entries) = value else {
                    if value.isEmpty { continue }
                    throw ConfigFileError("\(key): expected a mapping")
                }
                let prefix = key == "peer-transport-security" ? "peer-" : ""
                for (inner, innerValue) in entries {
                    guard let name = transportKeys[inner] else {
                        warnings.append("unknown configuration key \(key).\(inner) (ignored)")
                        continue
                    }
                    try flag(prefix + name, innerValue, key: "\(key).\(inner)")
                }
            } else if let why = inertKeys[key] {
                if !value.isEmpty { warnings.append("configuration key \(key) has no effect in Lattice (\(why))") }
            } else if let rule = refusedUnlessDefault[key] {
                if !rule.isDefault(value) { throw ConfigFileError("configuration key \(key): \(rule.why)") }
            } else {
                warnings.append("unknown configuration key \(key) (ignored)")
            }
        }
        return Translation(arguments: arguments, warnings: warnings)
    }
}

public struct ConfigFileError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A YAML value of the subset etcd's configuration files use.
public enum YAMLValue: Sendable, Equatable {
    case null
    case scalar(String)
    case list([String])
    case map([(String, YAMLValue)])

    public static func == (a: YAMLValue, b: YAMLValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.scalar(let x), .scalar(let y)): return x == y
        case (.list(let x), .list(let y)): return x == y
        case (.map(let x), .map(let y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    var isEmpty: Bool {
        switch self {
        case .null: return true
        case .scalar(let s): return s.isEmpty
        case .list(let l): return l.isEmpty
        case .map(let m): return m.isEmpty
        }
    }

    var scalar: String? { if case .scalar(let s) = self { return s } else { return nil } }
}

/// The YAML subset of etcd's configuration files: `key: value` mappings nested by indentation,
/// plain and quoted scalars, `[a, b]` flow lists (over several lines too), `- item` block lists,
/// and comments. Anything else (anchors, multi-line strings, tabs for indentation) is an error
/// naming its line.
enum YAMLSubset {
    static func parse(_ text: String) throws(ConfigFileError) -> [(String, YAMLValue)] {
        var lines: [(number: Int, indent: Int, content: String)] = []
        var number = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            let line = String(raw.hasSuffix("\r") ? raw.dropLast() : raw)
            let content = stripComment(line)
            if content.trimmingSpaces.isEmpty { continue }
            if line.first == "\t" { throw ConfigFileError("line \(number): tabs cannot indent YAML") }
            let indent = line.prefix { $0 == " " }.count
            lines.append((number, indent, content.trimmingSpaces))
        }
        var index = 0
        return try mapping(&index, lines, indent: lines.first?.indent ?? 0)
    }

    private static func mapping(_ i: inout Int, _ lines: [(number: Int, indent: Int, content: String)],
                                indent: Int) throws(ConfigFileError) -> [(String, YAMLValue)] {
        var out: [(String, YAMLValue)] = []
        while i < lines.count, lines[i].indent >= indent {
            let line = lines[i]
            guard line.indent == indent else { throw ConfigFileError("line \(line.number): unexpected indentation") }
            guard let colon = keyColon(line.content) else {
                throw ConfigFileError("line \(line.number): expected \"key: value\"")
            }
            let key = unquote(String(line.content[..<colon]).trimmingSpaces)
            var rest = String(line.content[line.content.index(after: colon)...]).trimmingSpaces
            i += 1
            if rest.isEmpty {
                if i < lines.count, lines[i].indent > indent {
                    if lines[i].content.hasPrefix("- ") || lines[i].content == "-" {
                        var items: [String] = []
                        let itemIndent = lines[i].indent
                        while i < lines.count, lines[i].indent == itemIndent, lines[i].content.hasPrefix("-") {
                            items.append(unquote(String(lines[i].content.dropFirst()).trimmingSpaces))
                            i += 1
                        }
                        out.append((key, .list(items)))
                    } else {
                        out.append((key, .map(try mapping(&i, lines, indent: lines[i].indent))))
                    }
                } else {
                    out.append((key, .null))
                }
            } else if rest.hasPrefix("[") {
                while !rest.hasSuffix("]") {
                    guard i < lines.count else { throw ConfigFileError("line \(line.number): unterminated [ list") }
                    rest += " " + lines[i].content
                    i += 1
                }
                let inner = rest.dropFirst().dropLast()
                let items = inner.split(separator: ",").map { unquote(String($0).trimmingSpaces) }.filter { !$0.isEmpty }
                out.append((key, .list(items)))
            } else if rest.hasPrefix("&") || rest.hasPrefix("*") || rest.hasPrefix("|") || rest.hasPrefix(">") || rest.hasPrefix("{") {
                throw ConfigFileError("line \(line.number): this YAML construct is not supported in a configuration file")
            } else {
                out.append((key, rest == "~" || rest == "null" ? .null : .scalar(unquote(rest))))
            }
        }
        return out
    }

    /// The colon that ends the key (outside quotes, followed by a space or the end).
    private static func keyColon(_ s: String) -> String.Index? {
        firstUnquoted(s) { c, _, next in c == ":" && (next == nil || next == " ") }
    }

    /// The line without a `#` comment (a `#` at the start or after a space, outside quotes).
    private static func stripComment(_ s: String) -> String {
        firstUnquoted(s) { c, previous, _ in c == "#" && (previous == " " || previous == "\t") }.map { String(s[..<$0]) } ?? s
    }

    /// The first character outside single or double quotes that `matches` (given it, the one
    /// before — a space at the start — and the one after).
    private static func firstUnquoted(_ s: String, _ matches: (Character, Character, Character?) -> Bool) -> String.Index? {
        var quote: Character?
        var previous: Character = " "
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            let next = s.index(after: i)
            if let q = quote {
                if c == q { quote = nil }
            } else if c == "'" || c == "\"" {
                quote = c
            } else if matches(c, previous, next < s.endIndex ? s[next] : nil) {
                return i
            }
            previous = c
            i = next
        }
        return nil
    }

    private static func unquote(_ s: String) -> String {
        if s.count >= 2, s.first == "'", s.last == "'" {
            return String(s.dropFirst().dropLast()).replacingOccurrences("''", "'")
        }
        if s.count >= 2, s.first == "\"", s.last == "\"" {
            var out = ""
            var escaped = false
            for c in s.dropFirst().dropLast() {
                if escaped {
                    switch c {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    default: out.append(c)
                    }
                    escaped = false
                } else if c == "\\" {
                    escaped = true
                } else {
                    out.append(c)
                }
            }
            return out
        }
        return s
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }

    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let range = rest.firstRange(of: target) {
            out += rest[..<range.lowerBound]
            out += replacement
            rest = rest[range.upperBound...]
        }
        return out + rest
    }
}
