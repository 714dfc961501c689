/// A listen or advertise URL: `scheme://host:port` (IPv6 hosts in brackets).
public struct ServerURL: Hashable, Sendable, CustomStringConvertible {
    public var scheme: String
    public var host: String
    public var port: Int

    public init(parsing text: String) throws(ConfigurationError) {
        let parts = text.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw ConfigurationError("URL \"\(text)\" has no scheme (expected http://host:port)") }
        scheme = String(parts[0])
        guard scheme == "http" || scheme == "unix" || scheme == "https" else {
            throw ConfigurationError("URL scheme must be http or https (\"\(text)\")")
        }
        var rest = String(parts[1])
        if rest.hasSuffix("/") { rest.removeLast() }
        let hostPart: Substring, portPart: Substring
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            hostPart = rest[rest.index(after: rest.startIndex)..<close]
            let afterClose = rest[rest.index(after: close)...]
            guard afterClose.hasPrefix(":") else { throw ConfigurationError("URL \"\(text)\" has no port") }
            portPart = afterClose.dropFirst()
        } else {
            guard let colon = rest.lastIndex(of: ":") else { throw ConfigurationError("URL \"\(text)\" has no port") }
            hostPart = rest[..<colon]
            portPart = rest[rest.index(after: colon)...]
        }
        guard let port = Int(portPart), (0...65535).contains(port) else { throw ConfigurationError("URL \"\(text)\" has an invalid port") }
        host = String(hostPart)
        self.port = port
    }

    public var description: String {
        host.contains(":") ? "\(scheme)://[\(host)]:\(port)" : "\(scheme)://\(host):\(port)"
    }
}

public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
