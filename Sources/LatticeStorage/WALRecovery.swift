#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The startup scan of a WAL directory (docs/storage.md "Recovery"): reads the segments the
/// snapshot does not cover, checks that their indexes are contiguous, truncates a crash's
/// unfinished tail and refuses everything else.
struct WALRecovery {
    struct SegmentFile {
        var firstIndex: UInt64
        var path: String
        var fileBytes: Int
        /// The format (1: bare records, 2: batch frames); appends go to version 2 only.
        var version = 2
    }

    let directory: String
    let snapshotIndex: UInt64
    let segmentBytes: Int
    let fsync: Bool

    var segments: [SegmentFile] = []
    var records: [WALRecord] = []
    var notes: [String] = []
    var writeOffset = WALFormat.segmentHeaderBytes
    var lastIndex: UInt64 = 0

    init(directory: String, snapshotIndex: UInt64, segmentBytes: Int, fsync: Bool) {
        self.directory = directory
        self.snapshotIndex = snapshotIndex
        self.segmentBytes = segmentBytes
        self.fsync = fsync
    }

    mutating func run() throws(StorageError) {
        try FileSystem.createDirectories(directory)
        try listSegments()
        guard !segments.isEmpty else {
            try startFresh(at: snapshotIndex + 1)
            return
        }
        // Segments whose successor starts at or before snapshotIndex + 1 hold nothing to replay.
        var start = 0
        while start + 1 < segments.count && segments[start + 1].firstIndex <= snapshotIndex + 1 { start += 1 }
        if segments[start].firstIndex > snapshotIndex + 1 {
            throw StorageError(.corruption,
                               "wal: the log starts at index \(segments[start].firstIndex) (\(segments[start].path)) "
                               + "but the snapshot covers only through index \(snapshotIndex): entries "
                               + "\(snapshotIndex + 1)…\(segments[start].firstIndex - 1) are missing",
                               path: segments[start].path, offset: 0)
        }
        var next = segments[start].firstIndex
        for i in start..<segments.count {
            if segments[i].firstIndex != next {
                throw StorageError(.corruption,
                                   "wal: \(segments[i].path) starts at index \(segments[i].firstIndex) but the "
                                   + "segment before it, \(segments[i - 1].path), ends at index \(next - 1)",
                                   path: segments[i].path, offset: 0)
            }
            guard let count = try readSegment(i, isLast: i == segments.count - 1) else {
                // The last segment's creation never completed; it was removed.
                try startFresh(at: next)
                return try coverSnapshotIfAhead()
            }
            next += UInt64(count)
        }
        lastIndex = next - 1
        try coverSnapshotIfAhead()
        try leaveVersion1()
    }

    /// Appends are framed (version 2); a version 1 last segment (written by an earlier release)
    /// is kept for reading and a version 2 segment takes the next entries. An empty one is
    /// replaced.
    private mutating func leaveVersion1() throws(StorageError) {
        guard let last = segments.last, last.version == 1 else { return }
        if writeOffset == WALFormat.segmentHeaderBytes {
            segments.removeLast()
            try startFresh(at: last.firstIndex)   // renamed over the empty version 1 segment
        } else {
            try startFresh(at: lastIndex + 1)
        }
        notes.append("wal: \(last.path) is in the version 1 format; new entries go to \(segments[segments.count - 1].path)")
    }

    /// Collects `*.wal` files in index order and removes `*.wal.tmp` leftovers of interrupted
    /// segment creations.
    private mutating func listSegments() throws(StorageError) {
        var removedTemporary = false
        for name in try FileSystem.list(directory) {
            if name.hasSuffix(".wal.tmp") {
                try FileSystem.remove(FileSystem.join(directory, name))
                removedTemporary = true
            } else if let first = WALFormat.firstIndex(ofSegmentName: name) {
                let path = FileSystem.join(directory, name)
                segments.append(SegmentFile(firstIndex: first, path: path, fileBytes: FileSystem.size(path) ?? 0))
            }
        }
        segments.sort { $0.firstIndex < $1.firstIndex }
        if removedTemporary && fsync { try FileSystem.syncDirectory(directory) }
    }

    /// Reads segment `i`: its valid record count, or nil when it was the last segment with a
    /// never-completed header (all zeros) and has been removed.
    private mutating func readSegment(_ i: Int, isLast: Bool) throws(StorageError) -> Int? {
        let path = segments[i].path
        let file = try OpenFile.open(path, flags: isLast ? O_RDWR : O_RDONLY)
        defer { file.close() }
        let fileBytes = try file.size()
        let bytes = try file.read(count: fileBytes, at: 0)
        segments[i].fileBytes = bytes.count

        let header = bytes.withUnsafeBytes { WALFormat.parseSegmentHeaderAndVersion($0) }
        switch header {
        case .failure(let problem):
            if isLast && bytes.allSatisfy({ $0 == 0 }) {
                try FileSystem.remove(path)
                if fsync { try FileSystem.syncDirectory(directory) }
                segments.removeLast()
                notes.append("wal: removed \(path), a segment whose creation never completed (\(problem))")
                return nil
            }
            throw .corruption("wal: \(path) has an invalid segment header: \(problem)", path: path, offset: 0)
        case .success(let h) where h.firstIndex != segments[i].firstIndex:
            throw .corruption("wal: \(path) has first index \(h.firstIndex) in its header, \(segments[i].firstIndex) in its name",
                              path: path, offset: 8)
        case .success(let h):
            segments[i].version = h.version
        }

        let scan = bytes.withUnsafeBytes {
            SegmentScanner.scan($0, firstIndex: segments[i].firstIndex, keepAfter: snapshotIndex)
        }
        records.append(contentsOf: scan.records)
        writeOffset = scan.end
        if let damage = scan.damage {
            let index = segments[i].firstIndex + UInt64(scan.count)
            let unit = segments[i].version == 1 ? "record" : "batch"
            let place = "wal: corrupt \(unit) at offset \(damage.offset) in \(path) (entry \(index)): \(damage.problem)"
            guard isLast else {
                throw .corruption(place + "; later segments hold more entries, so the log is damaged before its end",
                                  path: path, offset: damage.offset)
            }
            guard damage.isTail else {
                let why = segments[i].version == 1
                    ? "; data follows it up to offset \(damage.dataEnd), so the log is damaged before its end and "
                        + "entries after it may have been acknowledged"
                    : "; it is not the unfinished write of a crash, so its entries may have been acknowledged"
                throw .corruption(place + why, path: path, offset: damage.offset)
            }
            try file.truncate(length: damage.offset)
            try file.preallocate(length: max(fileBytes, segmentBytes))
            if fsync { try file.sync() }
            segments[i].fileBytes = try file.size()
            let what = segments[i].version == 2 ? "an unfinished batch (torn write)"
                : damage.torn ? "a torn write" : "a damaged last record"
            notes.append("wal: truncated \(what) at offset \(damage.offset) of \(path) (\(damage.problem)); "
                         + "discarded \(max(damage.dataEnd - damage.offset, 0)) bytes, kept entries through index \(index - 1)")
        }
        if isLast && segments[i].fileBytes < segmentBytes {
            // Cut short (by hand, or by a crash with fsync off): give appends their space back.
            try file.preallocate(length: segmentBytes)
            if fsync { try file.sync() }
            segments[i].fileBytes = try file.size()
        }
        return scan.count
    }

    /// When the snapshot is ahead of everything logged, restarts the log after it.
    private mutating func coverSnapshotIfAhead() throws(StorageError) {
        guard lastIndex < snapshotIndex else { return }
        let logged = lastIndex
        let old = segments
        try startFresh(at: snapshotIndex + 1)
        for segment in old { try FileSystem.remove(segment.path) }
        if fsync { try FileSystem.syncDirectory(directory) }
        segments.removeFirst(old.count)
        records = []
        notes.append("wal: the snapshot at index \(snapshotIndex) covers every logged entry (through index "
                     + "\(logged)); the log restarts at index \(snapshotIndex + 1)")
    }

    /// Appends a new empty segment at `firstIndex` and makes it the current one.
    private mutating func startFresh(at firstIndex: UInt64) throws(StorageError) {
        let segment = try Self.createSegment(directory: directory, firstIndex: firstIndex,
                                             fileBytes: segmentBytes, fsync: fsync)
        segments.append(segment)
        writeOffset = WALFormat.segmentHeaderBytes
        lastIndex = firstIndex - 1
    }

    /// Creates `<firstIndex>.wal` atomically: preallocate and write the header in a temporary
    /// file, fsync it, rename it into place, fsync the directory. A crash leaves either no
    /// segment or a complete one (and perhaps a `.wal.tmp`, removed by the next open).
    static func createSegment(directory: String, firstIndex: UInt64, fileBytes: Int,
                              fsync: Bool) throws(StorageError) -> SegmentFile {
        let path = FileSystem.join(directory, WALFormat.segmentName(firstIndex: firstIndex))
        let temporary = path + ".tmp"
        let file = try OpenFile.open(temporary, flags: O_RDWR | O_CREAT | O_TRUNC)
        let size: Int
        do throws(StorageError) {
            defer { file.close() }
            try file.preallocate(length: fileBytes)
            try file.write(WALFormat.segmentHeader(firstIndex: firstIndex), at: 0)
            if fsync { try file.sync() }
            size = try file.size()
        } catch {
            try? FileSystem.remove(temporary)
            throw error
        }
        try FileSystem.rename(temporary, to: path)
        if fsync { try FileSystem.syncDirectory(directory) }
        return SegmentFile(firstIndex: firstIndex, path: path, fileBytes: size)
    }
}
