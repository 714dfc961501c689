#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every failure of LatticeStorage. `description` is a complete sentence for an operator: it names
/// the file (and the byte offset, for damaged data) and says what happened.
public struct StorageError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// A system call failed with this errno (ENOSPC, EIO, EACCES, …).
        case io(errno: Int32)
        /// Bytes on disk fail validation where truncating them would lose acknowledged data
        /// (or where no safe repair exists). Startup must stop.
        case corruption
        /// Another process holds the data directory's lock.
        case dataDirectoryInUse
        /// The caller passed something this module rejects (a payload over the size bound, …).
        case invalidArgument
        /// The write-ahead log failed earlier (or was closed) and accepts no more appends.
        case logUnusable
    }

    public var kind: Kind
    public var message: String
    /// The file or directory concerned, when there is one.
    public var path: String?
    /// The byte offset in `path`, for damaged data and failed positioned I/O.
    public var offset: Int?

    public init(_ kind: Kind, _ message: String, path: String? = nil, offset: Int? = nil) {
        self.kind = kind
        self.message = message
        self.path = path
        self.offset = offset
    }

    public var description: String { message }

    /// A failed system call: "<what> <path>[ at offset N] failed: <strerror> (errno N)".
    public static func system(_ what: String, path: String, offset: Int? = nil, errno code: Int32) -> StorageError {
        let at = offset.map { " at offset \($0)" } ?? ""
        return StorageError(.io(errno: code),
                            "\(what) \(path)\(at) failed: \(errorText(code)) (errno \(code))",
                            path: path, offset: offset)
    }

    static func corruption(_ message: String, path: String, offset: Int) -> StorageError {
        StorageError(.corruption, message, path: path, offset: offset)
    }
}

/// The C library's text for an errno value.
func errorText(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "error \(code)" }
    return String(cString: text)
}
