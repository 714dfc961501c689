#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A snapshot read back: the WAL index it covers through and the payload the store wrote.
public struct Snapshot: Sendable, Equatable {
    public var index: UInt64
    public var bytes: [UInt8]

    public init(index: UInt64, bytes: [UInt8]) {
        self.index = index
        self.bytes = bytes
    }
}

/// Snapshot files `snap-<16 hex digits of index>.snap` (docs/storage.md "Snapshots"). The payload
/// is opaque here; the store defines it. A file is a 40-byte header and the payload:
///
///      0  8  magic "LTSNAP01"
///      8  4  format version, u32 LE (2; 1 is still read)
///     12  4  flags, u32 LE (0)
///     16  8  index, u64 LE (equal to the one in the name)
///     24  8  payload length, u64 LE (the file is exactly 40 + length bytes)
///     32  4  crc32c of the payload, u32 LE
///     36  4  crc32c of bytes 0..<36, u32 LE
///
/// Not safe to call concurrently on one directory: the store's snapshotting is single-writer.
public enum SnapshotFile {
    public static let headerBytes = 40
    /// Bytes written between two data syncs while saving.
    static let syncStepBytes = 1 << 20
    static let magic: [UInt8] = Array("LTSNAP01".utf8)
    /// 2: the store's payload may write a value once where its index and replicated state share
    /// it (a build that reads only 1 must refuse such a file, not lose the values). The framing
    /// is the same for both.
    static let formatVersion: UInt32 = 2
    static let readableVersions: ClosedRange<UInt32> = 1...2

    public static func fileName(index: UInt64) -> String { "snap-" + hex16(index) + ".snap" }

    static func index(ofFileName name: String) -> UInt64? {
        guard name.hasPrefix("snap-") && name.hasSuffix(".snap") else { return nil }
        return parseHex16(name.dropFirst(5).dropLast(5))
    }

    /// Writes `bytes` as the snapshot at `index`, atomically: a temporary file is written,
    /// fsynced and renamed into place, then the directory is fsynced. Replaces an existing
    /// snapshot with the same index.
    public static func save(directory: String, index: UInt64, bytes: [UInt8]) throws(StorageError) {
        let path = FileSystem.join(directory, fileName(index: index))
        let temporary = path + ".tmp"
        let file = try OpenFile.open(temporary, flags: O_WRONLY | O_CREAT | O_TRUNC)
        do throws(StorageError) {
            defer { file.close() }
            try file.write(header(index: index, payload: bytes), at: 0)
            // In 1 MiB steps, each made durable before the next: the WAL's fdatasync of an
            // acknowledged write waits behind at most one step's flush. A 330 MB snapshot written
            // at once held WAL syncs up for ~100 ms; 8 MiB steps still let 0.5-2.5 % of them take
            // 4-16 ms, 1 MiB steps none over 4 ms.
            var failure: StorageError?
            bytes.withUnsafeBytes { raw in
                var offset = 0
                repeat {
                    let end = min(raw.count, offset + syncStepBytes)
                    do throws(StorageError) {
                        try file.write(UnsafeRawBufferPointer(rebasing: raw[offset..<end]), at: headerBytes + offset)
                        if end < raw.count { try file.syncData() }
                    } catch {
                        failure = error
                        return
                    }
                    offset = end
                } while offset < raw.count
            }
            if let failure { throw failure }
            try file.sync()
        } catch {
            try? FileSystem.remove(temporary)
            throw error
        }
        try FileSystem.rename(temporary, to: path)
        try FileSystem.syncDirectory(directory)
    }

    /// The newest snapshot that validates, or nil when there is none (or the directory does not
    /// exist). A damaged snapshot is renamed to `<name>.broken` — kept for inspection, out of
    /// the way of `prune` — and the next older one is tried; `note` says what was skipped, for
    /// the caller to log. Leftover `.tmp` files of interrupted saves are removed. A read error
    /// (EIO) throws rather than skipping a snapshot that may be fine. So does a snapshot with an
    /// intact header of an unknown format version: it is newer, not damaged.
    public static func loadNewest(directory: String) throws(StorageError) -> (snapshot: Snapshot?, note: String?) {
        guard FileSystem.isDirectory(directory) else { return (nil, nil) }
        var notes: [String] = []
        var changed = false
        for name in try FileSystem.list(directory) where name.hasPrefix("snap-") && name.hasSuffix(".snap.tmp") {
            try FileSystem.remove(FileSystem.join(directory, name))
            changed = true
        }
        defer { if changed { try? FileSystem.syncDirectory(directory) } }
        for (index, path) in try indexedFiles(directory).reversed() {
            switch try read(path, index: index) {
            case .success(let snapshot):
                return (snapshot, notes.isEmpty ? nil : notes.joined(separator: "; "))
            case .failure(let damage):
                try FileSystem.rename(path, to: path + ".broken")
                changed = true
                notes.append("snapshot: \(path) is damaged (\(damage.reason)); renamed it to \(path).broken "
                             + "and tried the next older one")
            }
        }
        return (nil, notes.isEmpty ? nil : notes.joined(separator: "; "))
    }

    /// Keeps the `keep` newest snapshots (≥ 1) and removes the older ones.
    public static func prune(directory: String, keep: Int) throws(StorageError) {
        guard keep >= 1 else {
            throw StorageError(.invalidArgument, "snapshot: prune must keep at least one snapshot (keep \(keep))")
        }
        let files = try indexedFiles(directory)
        guard files.count > keep else { return }
        for (_, path) in files.dropLast(keep) { try FileSystem.remove(path) }
        try FileSystem.syncDirectory(directory)
    }

    /// Indexes of the snapshot files present (not validated), ascending.
    public static func indexes(directory: String) throws(StorageError) -> [UInt64] {
        try indexedFiles(directory).map(\.index)
    }

    private static func indexedFiles(_ directory: String) throws(StorageError) -> [(index: UInt64, path: String)] {
        try FileSystem.list(directory)
            .compactMap { name in index(ofFileName: name).map { ($0, FileSystem.join(directory, name)) } }
            .sorted { $0.index < $1.index }
    }

    static func header(index: UInt64, payload: [UInt8]) -> [UInt8] {
        var header = magic
        header.appendLE(formatVersion)
        header.appendLE(UInt32(0))
        header.appendLE(index)
        header.appendLE(UInt64(payload.count))
        header.appendLE(CRC32C.checksum(payload))
        header.appendLE(CRC32C.checksum(header))
        return header
    }

    struct Damage: Error { var reason: String }

    /// Reads and validates one snapshot file. Validation failures are `.failure`; I/O errors
    /// and unknown format versions throw.
    static func read(_ path: String, index: UInt64) throws(StorageError) -> Result<Snapshot, Damage> {
        let file = try OpenFile.open(path, flags: O_RDONLY)
        defer { file.close() }
        let fileBytes = try file.size()
        guard fileBytes >= headerBytes else {
            return .failure(Damage(reason: "\(fileBytes) bytes, shorter than the \(headerBytes)-byte header"))
        }
        let header = try file.read(count: headerBytes, at: 0)
        let parsed = header.withUnsafeBytes { raw in
            (magic: Array(raw.prefix(8)), version: raw.loadLE32(8), flags: raw.loadLE32(12),
             index: raw.loadLE64(16), length: raw.loadLE64(24), payloadCRC: raw.loadLE32(32),
             headerCRC: raw.loadLE32(36), computed: CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<36])))
        }
        guard parsed.magic == magic else { return .failure(Damage(reason: "bad magic")) }
        guard parsed.headerCRC == parsed.computed else {
            return .failure(Damage(reason: "header checksum mismatch (stored \(hex8(parsed.headerCRC)), "
                                   + "computed \(hex8(parsed.computed)))"))
        }
        guard readableVersions.contains(parsed.version) && parsed.flags == 0 else {
            throw StorageError(.corruption,
                               "snapshot: \(path) has format version \(parsed.version) (flags \(parsed.flags)); "
                               + "this build reads versions \(readableVersions.lowerBound) to \(readableVersions.upperBound)",
                               path: path, offset: 8)
        }
        guard parsed.index == index else {
            return .failure(Damage(reason: "its header says index \(parsed.index)"))
        }
        guard parsed.length == UInt64(fileBytes - headerBytes) else {
            return .failure(Damage(reason: "\(fileBytes) bytes, but the header says \(headerBytes) + \(parsed.length)"))
        }
        let payload = try file.read(count: fileBytes - headerBytes, at: headerBytes)
        guard payload.count == fileBytes - headerBytes else {
            return .failure(Damage(reason: "the file shrank while being read"))
        }
        let computed = CRC32C.checksum(payload)
        guard computed == parsed.payloadCRC else {
            return .failure(Damage(reason: "payload checksum mismatch (stored \(hex8(parsed.payloadCRC)), "
                                   + "computed \(hex8(computed)))"))
        }
        return .success(Snapshot(index: index, bytes: payload))
    }
}
