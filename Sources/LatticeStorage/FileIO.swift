#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The whole contents of the file at `path`, read until its end (files under /proc report no
/// size); more than `limit` bytes is an error.
public func readWholeFile(_ path: String, limit: Int = .max) throws(StorageError) -> [UInt8] {
    let file = try OpenFile.open(path, flags: O_RDONLY)
    defer { file.close() }
    var out: [UInt8] = []
    let chunk = 1 << 20
    while true {
        let bytes = try file.read(count: chunk, at: out.count)
        out += bytes
        guard out.count <= limit else {
            throw StorageError(.invalidArgument, "\(path) is larger than \(limit) bytes")
        }
        if bytes.count < chunk { return out }
    }
}

// Thin wrappers over the POSIX calls LatticeStorage uses. Each retries EINTR, loops over short
// reads and writes, and turns failures into a StorageError naming the path (and offset).

/// An open file descriptor with the path it was opened by, for messages. Closed explicitly.
struct OpenFile {
    let fd: Int32
    let path: String

    static func open(_ path: String, flags: Int32, mode: mode_t = 0o600) throws(StorageError) -> OpenFile {
        while true {
            let fd = systemOpen(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return OpenFile(fd: fd, path: path) }
            if errno != EINTR { throw .system("open", path: path, errno: errno) }
        }
    }

    func close() { _ = systemClose(fd) }

    func size() throws(StorageError) -> Int {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .system("stat", path: path, errno: errno) }
        return Int(info.st_size)
    }

    /// Up to `count` bytes from `offset`; fewer only at the end of the file.
    func read(count: Int, at offset: Int) throws(StorageError) -> [UInt8] {
        var failure: StorageError?
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var done = 0
            while done < count {
                let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(offset + done))
                if n > 0 {
                    done += n
                } else if n == 0 {
                    break
                } else if errno != EINTR {
                    failure = .system("read", path: path, offset: offset + done, errno: errno)
                    break
                }
            }
            initialized = done
        }
        if let failure { throw failure }
        return bytes
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(StorageError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n > 0 {
                done += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                throw .system("write", path: path, offset: offset + done, errno: n < 0 ? errno : EIO)
            }
        }
    }

    func write(_ bytes: [UInt8], at offset: Int) throws(StorageError) {
        var failure: StorageError?
        bytes.withUnsafeBytes { raw in
            do throws(StorageError) { try write(raw, at: offset) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// fdatasync: the data and the metadata needed to read it back (the size) are durable.
    func syncData() throws(StorageError) {
        while systemDataSync(fd) != 0 {
            if errno != EINTR { throw .system("fdatasync", path: path, errno: errno) }
        }
    }

    func sync() throws(StorageError) {
        while systemSync(fd) != 0 {
            if errno != EINTR { throw .system("fsync", path: path, errno: errno) }
        }
    }

    /// Reserves blocks for bytes 0..<length (zero-filled) and makes the file at least that long.
    /// Falls back to a sparse `ftruncate` where the file system cannot preallocate; ENOSPC is an
    /// error, never a reason to fall back.
    func preallocate(length: Int) throws(StorageError) {
        var code: Int32
        repeat { code = systemPreallocate(fd, length) } while code == EINTR
        if code == 0 { return }
        if code == EOPNOTSUPP || code == ENOSYS || code == EINVAL {
            if try size() < length { try truncate(length: length) }
            return
        }
        throw .system("preallocate \(length) bytes for", path: path, errno: code)
    }

    func truncate(length: Int) throws(StorageError) {
        while ftruncate(fd, off_t(length)) != 0 {
            if errno != EINTR { throw .system("truncate to \(length) bytes", path: path, errno: errno) }
        }
    }
}

enum FileSystem {
    static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    static func parent(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    /// The names in `directory` (without "." and "..").
    static func list(_ directory: String) throws(StorageError) -> [String] {
        guard let handle = opendir(directory) else { throw .system("list directory", path: directory, errno: errno) }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: tuple.pointee)) {
                    String(cString: $0)
                }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Makes the entries of `directory` (creations, renames, deletions) durable.
    static func syncDirectory(_ directory: String) throws(StorageError) {
        let file = try OpenFile.open(directory, flags: O_RDONLY | O_DIRECTORY)
        defer { file.close() }
        try file.sync()
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    static func size(_ path: String) -> Int? {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : nil
    }

    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// Creates `path` and any missing parents with `mode`, fsyncing each parent that gained an
    /// entry. An existing directory is left as it is.
    static func createDirectories(_ path: String, mode: mode_t = 0o700) throws(StorageError) {
        if isDirectory(path) { return }
        let parentPath = parent(of: path)
        if parentPath != path { try createDirectories(parentPath, mode: mode) }
        if mkdir(path, mode) != 0 {
            let code = errno
            if code == EEXIST && isDirectory(path) { return }
            throw .system("create directory", path: path, errno: code == EEXIST ? ENOTDIR : code)
        }
        try syncDirectory(parentPath)
    }

    /// Removes the file at `path` (a missing file is not an error). Its name goes at once; a
    /// large file's blocks are freed in steps in the background (`FileReclaimer`).
    static func remove(_ path: String) throws(StorageError) {
        try FileReclaimer.shared.remove(path)
    }

    static func rename(_ from: String, to: String) throws(StorageError) {
        if systemRename(from, to) != 0 { throw .system("rename to \(to):", path: from, errno: errno) }
    }
}

// File-scope names for the C functions that OpenFile and FileSystem shadow with their own
// members, and the Linux-only calls with their nearest equivalents elsewhere.
private func systemOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
private func systemClose(_ fd: Int32) -> Int32 { close(fd) }
private func systemRename(_ from: String, _ to: String) -> Int32 { rename(from, to) }

private func systemDataSync(_ fd: Int32) -> Int32 {
    #if os(Linux)
    fdatasync(fd)
    #else
    systemSync(fd)
    #endif
}

/// fsync. On Darwin fsync only hands the data to the drive, whose cache can still lose it, so
/// F_FULLFSYNC is used (with fsync only where the file system does not support it).
private func systemSync(_ fd: Int32) -> Int32 {
    #if canImport(Darwin)
    if fcntl(fd, F_FULLFSYNC) == 0 { return 0 }
    if errno != ENOTSUP && errno != EINVAL { return -1 }
    return fsync(fd)
    #else
    fsync(fd)
    #endif
}

/// 0 or an errno value, like posix_fallocate.
private func systemPreallocate(_ fd: Int32, _ length: Int) -> Int32 {
    #if os(Linux)
    posix_fallocate(fd, 0, off_t(length))
    #else
    EOPNOTSUPP
    #endif
}

/// Sixteen lowercase hex digits, the index part of WAL segment and snapshot file names.
func hex16(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}

/// The value of exactly sixteen hex digits, or nil.
func parseHex16<S: StringProtocol>(_ text: S) -> UInt64? {
    guard text.utf8.count == 16, text.utf8.allSatisfy({ isHexDigit($0) }) else { return nil }
    return UInt64(text, radix: 16)
}

private func isHexDigit(_ c: UInt8) -> Bool {
    (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46)
}

// Little-endian helpers over byte arrays.
extension Array where Element == UInt8 {
    mutating func appendLE(_ value: UInt32) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    mutating func appendLE(_ value: UInt64) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

extension UnsafeRawBufferPointer {
    func loadLE32(_ offset: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    func loadLE64(_ offset: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }

    /// Whether bytes `range` are all zero.
    func isZero(_ range: Range<Int>) -> Bool {
        var i = range.lowerBound
        while i < range.upperBound && (i & 7) != 0 {
            if self[i] != 0 { return false }
            i += 1
        }
        while range.upperBound - i >= 8 {
            if loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
            i += 8
        }
        while i < range.upperBound {
            if self[i] != 0 { return false }
            i += 1
        }
        return true
    }

    /// One past the last non-zero byte in `0..<end`, or 0 when they are all zero.
    func endOfNonZero(before end: Int) -> Int {
        var i = end
        while i > 0 && (i & 7) != 0 {
            if self[i - 1] != 0 { return i }
            i -= 1
        }
        while i >= 8 && loadUnaligned(fromByteOffset: i - 8, as: UInt64.self) == 0 { i -= 8 }
        while i > 0 && self[i - 1] == 0 { i -= 1 }
        return i
    }
}
