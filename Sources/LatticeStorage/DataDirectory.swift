#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The data directory: `wal/` and `snap/` (mode 0700) and the `lock` file, held with an exclusive
/// `flock` for as long as this object lives, so two lattice processes never share one directory.
///
/// `flock` locks belong to an open file description, so a second `open` of the same directory
/// fails in the same process too. The lock file holds the owner's pid, for operators; the lock
/// is what counts. Not `Sendable`: owned by whoever starts the store.
public final class DataDirectory {
    public let path: String
    public var walPath: String { FileSystem.join(path, "wal") }
    public var snapPath: String { FileSystem.join(path, "snap") }
    public var lockPath: String { FileSystem.join(path, "lock") }
    private var lockFile: OpenFile?

    private init(path: String, lockFile: OpenFile) {
        self.path = path
        self.lockFile = lockFile
    }

    deinit { lockFile?.close() }

    /// Creates the directory and its `wal/` and `snap/` if missing, then takes the lock. Throws
    /// `.dataDirectoryInUse` at once (no waiting) when another process holds it.
    public static func open(_ path: String) throws(StorageError) -> DataDirectory {
        try FileSystem.createDirectories(path)
        let lockPath = FileSystem.join(path, "lock")
        let file = try OpenFile.open(lockPath, flags: O_RDWR | O_CREAT)
        while flock(file.fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            file.close()
            if code == EWOULDBLOCK {
                throw StorageError(.dataDirectoryInUse,
                                   "data directory \(path) is in use by another lattice process (lock file \(lockPath))",
                                   path: lockPath)
            }
            throw .system("lock", path: lockPath, errno: code)
        }
        do throws(StorageError) {
            try FileSystem.createDirectories(FileSystem.join(path, "wal"))
            try FileSystem.createDirectories(FileSystem.join(path, "snap"))
            try file.truncate(length: 0)
            try file.write(Array("\(getpid())\n".utf8), at: 0)
        } catch {
            file.close()
            throw error
        }
        return DataDirectory(path: path, lockFile: file)
    }

    public var incarnationPath: String { FileSystem.join(path, "incarnation") }

    /// The data directory's incarnation id (16 hex digits in the file `incarnation`), nil when
    /// it has none yet.
    public func readIncarnation() throws(StorageError) -> UInt64? {
        guard FileSystem.exists(incarnationPath) else { return nil }
        let file = try OpenFile.open(incarnationPath, flags: O_RDONLY)
        defer { file.close() }
        let bytes = try file.read(count: 64, at: 0)
        let text = String(decoding: bytes, as: UTF8.self).trimmingWhitespace
        guard let id = parseHex16(text), id != 0 else {
            throw StorageError(.corruption, "incarnation file \(incarnationPath) is damaged", path: incarnationPath)
        }
        return id
    }

    /// Whether any WAL segment or snapshot exists (a directory written before).
    public func holdsData() throws(StorageError) -> Bool {
        if !(try FileSystem.list(walPath)).isEmpty { return true }
        return !(try FileSystem.list(snapPath)).isEmpty
    }

    /// Writes the incarnation id durably (temp file, fsync, rename, directory fsync).
    public func writeIncarnation(_ id: UInt64) throws(StorageError) {
        try writeDurably(incarnationPath, hex16(id) + "\n")
    }

    /// The member and cluster ids the directory belongs to (file `member`): fixed when the
    /// directory is created, so a member keeps them when `--initial-cluster` later lists other
    /// members (the cluster id is derived from the initial members, and a member that joined
    /// an existing cluster got both from its peers).
    public static func identityPath(_ path: String) -> String { FileSystem.join(path, "member") }

    /// Reads `member` without taking the directory's lock; nil when the directory has none.
    public static func readIdentity(_ path: String) throws(StorageError) -> (memberID: UInt64, clusterID: UInt64)? {
        let file = identityPath(path)
        guard FileSystem.exists(file) else { return nil }
        let handle = try OpenFile.open(file, flags: O_RDONLY)
        defer { handle.close() }
        let text = String(decoding: try handle.read(count: 256, at: 0), as: UTF8.self)
        var values: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let v = parseHex16(String(parts[1])) { values[String(parts[0])] = v }
        }
        guard let member = values["member-id"], let cluster = values["cluster-id"], member != 0, cluster != 0 else {
            throw StorageError(.corruption, "member file \(file) is damaged", path: file)
        }
        return (member, cluster)
    }

    /// Writes `member` durably (temp file, fsync, rename, directory fsync). The caller holds the
    /// directory (its store is open).
    public static func writeIdentity(_ path: String, memberID: UInt64, clusterID: UInt64) throws(StorageError) {
        try writeDurably(identityPath(path), in: path, "member-id \(hex16(memberID))\ncluster-id \(hex16(clusterID))\n")
    }

    /// The alarms (NOSPACE, CORRUPT) raised on this member, one name per line in `alarms`, so
    /// that they survive a restart as etcd's do. Empty when there is no file.
    public static func readAlarms(_ path: String) -> [String] {
        let file = FileSystem.join(path, "alarms")
        guard FileSystem.exists(file), let handle = try? OpenFile.open(file, flags: O_RDONLY),
              let bytes = try? handle.read(count: 4096, at: 0) else { return [] }
        handle.close()
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    /// Writes `alarms` durably (the caller holds the directory).
    public static func writeAlarms(_ path: String, _ names: [String]) throws(StorageError) {
        try writeDurably(FileSystem.join(path, "alarms"), in: path, names.map { $0 + "\n" }.joined())
    }

    /// Whether the directory holds any WAL segment or snapshot, without taking its lock.
    public static func holdsData(_ path: String) -> Bool {
        let wal = (try? FileSystem.list(FileSystem.join(path, "wal"))) ?? []
        let snap = (try? FileSystem.list(FileSystem.join(path, "snap"))) ?? []
        return !wal.isEmpty || !snap.isEmpty
    }

    private func writeDurably(_ target: String, _ text: String) throws(StorageError) {
        try Self.writeDurably(target, in: path, text)
    }

    private static func writeDurably(_ target: String, in path: String, _ text: String) throws(StorageError) {
        let temp = target + ".tmp"
        let file = try OpenFile.open(temp, flags: O_RDWR | O_CREAT | O_TRUNC)
        do throws(StorageError) {
            try file.write(Array(text.utf8), at: 0)
            try file.sync()
        } catch {
            file.close()
            throw error
        }
        file.close()
        try FileSystem.rename(temp, to: target)
        try FileSystem.syncDirectory(path)
    }

    /// Releases the lock now (also done when the object goes away).
    public func close() {
        lockFile?.close()
        lockFile = nil
    }
}

extension String {
    fileprivate var trimmingWhitespace: String {
        String(self.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
