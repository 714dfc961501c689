import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// etcd's log lines (its zap logger's JSON encoder), so log pipelines built for etcd parse
/// Lattice's: one JSON object per line,
///
/// ```
/// {"level":"info","ts":"2026-12-04T17:47:34.269Z","caller":"LatticeServer/LatticeServer.swift:131","msg":"…","key":"value"}
/// ```
///
/// `level` is debug, info, warn, error or fatal; `ts` is UTC ISO 8601 with milliseconds; the
/// message's metadata follows as fields (strings as strings, integers, floats and booleans as
/// numbers and booleans, lists as arrays, dictionaries as objects).
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let outputs: LogOutputs

    public init(outputs: LogOutputs, level: Logger.Level) {
        self.outputs = outputs
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?,
                    source: String, file: String, function: String, line: UInt) {
        var merged = metadata
        if let extra { merged.merge(extra) { _, new in new } }
        outputs.write(Self.line(level: level, timestamp: Self.now(), caller: Self.caller(file, line),
                                message: "\(message)", metadata: merged))
    }

    /// One encoded line (with its newline). Fields keep etcd's order: level, ts, caller, msg,
    /// then the metadata sorted by key.
    public static func line(level: Logger.Level, timestamp: String, caller: String, message: String,
                            metadata: Logger.Metadata) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128 + message.utf8.count)
        out += Array("{\"level\":\"\(name(of: level))\",\"ts\":\"\(timestamp)\",\"caller\":".utf8)
        appendString(caller, to: &out)
        out += Array(",\"msg\":".utf8)
        appendString(message, to: &out)
        for key in metadata.keys.sorted() {
            out.append(UInt8(ascii: ","))
            appendString(key, to: &out)
            out.append(UInt8(ascii: ":"))
            appendValue(metadata[key]!, to: &out)
        }
        out += Array("}\n".utf8)
        return out
    }

    /// zap's level names.
    static func name(of level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: return "debug"
        case .info, .notice: return "info"
        case .warning: return "warn"
        case .error: return "error"
        case .critical: return "fatal"
        }
    }

    /// "Module/File.swift:LINE", as etcd's "package/file.go:LINE".
    static func caller(_ file: String, _ line: UInt) -> String {
        let parts = file.split(separator: "/")
        return "\(parts.suffix(2).joined(separator: "/")):\(line)"
    }

    /// The wall clock as "YYYY-MM-DDTHH:MM:SS.mmmZ".
    static func now() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(ts.tv_nsec / 1_000_000), 3))Z"
    }

    static func appendValue(_ value: Logger.Metadata.Value, to out: inout [UInt8]) {
        switch value {
        case .string(let s):
            appendString(s, to: &out)
        case .stringConvertible(let c):
            switch c {
            case let b as Bool: out += Array((b ? "true" : "false").utf8)
            case let i as any BinaryInteger: out += Array("\(i)".utf8)
            case let d as Double where d.isFinite: out += Array("\(d)".utf8)
            default: appendString(c.description, to: &out)
            }
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                appendValue(item, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .dictionary(let entries):
            out.append(UInt8(ascii: "{"))
            for (i, key) in entries.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                appendString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                appendValue(entries[key]!, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped (Swift strings are
    /// valid Unicode, so the UTF-8 needs no repair).
    static func appendString(_ s: String, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out += [0x5C, 0x22]
            case UInt8(ascii: "\\"): out += [0x5C, 0x5C]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0x0D: out += [0x5C, UInt8(ascii: "r")]
            case 0x09: out += [0x5C, UInt8(ascii: "t")]
            case 0..<0x20: out += Array("\\u00".utf8) + [hex[Int(b >> 4)], hex[Int(b & 15)]]
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// Where log lines go: etcd's `--log-outputs` (a comma-separated list of `default`, `stderr`,
/// `stdout` or file paths; `default` is stderr, which systemd's journal collects). Files are
/// opened for appending (created 0600). Each line is written whole, one line at a time.
public final class LogOutputs: Sendable {
    private let descriptors: Mutex<[Int32]>

    /// Opens every target; a target that cannot be opened is etcd's error.
    public init(_ list: String) throws(LogOutputError) {
        var fds: [Int32] = []
        let targets = list.split(separator: ",").map { String($0.filter { $0 != " " }) }.filter { !$0.isEmpty }
        for target in targets.isEmpty ? ["default"] : targets {
            switch target {
            case "default", "stderr": if !fds.contains(2) { fds.append(2) }
            case "stdout": if !fds.contains(1) { fds.append(1) }
            default:
                let fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
                guard fd >= 0 else {
                    let code = errno
                    for opened in fds where opened > 2 { close(opened) }
                    throw LogOutputError("couldn't open sink \"\(target)\": open \(target): \(String(cString: strerror(code)).lowercased())")
                }
                fds.append(fd)
            }
        }
        descriptors = Mutex(fds)
    }

    public func write(_ line: [UInt8]) {
        descriptors.withLock { fds in
            for fd in fds {
                line.withUnsafeBytes { raw in
                    var offset = 0
                    while offset < raw.count {
                        let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                        if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { break }
                    }
                }
            }
        }
    }
}

public struct LogOutputError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
