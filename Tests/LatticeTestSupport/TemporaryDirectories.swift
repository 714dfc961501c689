import Foundation

/// Unique temporary directory paths for one test case, removed together at its end.
public final class TemporaryDirectories {
    private let prefix: String
    private var paths: [String] = []

    public init(prefix: String) { self.prefix = prefix }

    /// A fresh path (not created) under the system's temporary directory.
    public func make() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
        paths.append(path)
        return path
    }

    public func removeAll() {
        for p in paths { try? FileManager.default.removeItem(atPath: p) }
        paths = []
    }
}
