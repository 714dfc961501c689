#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The write-ahead log: numbered entries in preallocated segment files (docs/storage.md).
///
/// Entry indexes are dense across segments: 1, 2, 3, … (or from a snapshot's index + 1). Each
/// `append` writes its whole batch with one `pwrite` into one segment and, with `fsync` on, one
/// `fdatasync`; it returns only once the batch is durable. A batch never spans two segments: when
/// it does not fit, the log first rolls to a new segment (larger than `segmentBytes` if one batch
/// needs it).
///
/// Not thread-safe, deliberately not `Sendable`: it is owned by the store's single writer. After
/// any failed I/O the log is unusable — every later `append` throws — because what reached the
/// disk is unknown; a restart recovers from what is there.
public final class WriteAheadLog {
    /// The largest payload of one entry (checked on append and on read).
    public static let maxPayloadBytes = WALFormat.maxPayloadBytes

    public let directory: String
    public let segmentBytes: Int
    public let fsyncEnabled: Bool

    private struct Segment {
        var firstIndex: UInt64
        var path: String
        var fileBytes: Int
    }

    /// Ascending by first index; the last one is open for appends.
    private var segments: [Segment]
    private var current: OpenFile?
    /// Where the next record goes in the current segment.
    private var writeOffset: Int
    /// Index of the last entry appended (or recovered); the snapshot index when there is none.
    public private(set) var lastIndex: UInt64
    private var failure: StorageError?

    /// Test seam: returning an errno makes that step fail as if its system call had. A failed
    /// `.write` first writes half of the batch, like a short write before ENOSPC; a failed
    /// `.sync` comes after the write reached the page cache, like a failed writeback.
    public var injectFault: (@Sendable (FaultPoint) -> Int32?)?
    /// Told how long each batch's fdatasync took and how many bytes the batch wrote (metrics).
    public var observeSync: (@Sendable (_ fsync: Duration, _ bytes: Int) -> Void)?

    /// `snapshot` is used by the store's snapshot writer.
    public enum FaultPoint: Sendable { case write, sync, createSegment, truncate, snapshot }

    private init(directory: String, segmentBytes: Int, fsync: Bool, segments: [Segment],
                 current: OpenFile, writeOffset: Int, lastIndex: UInt64) {
        self.directory = directory
        self.segmentBytes = segmentBytes
        self.fsyncEnabled = fsync
        self.segments = segments
        self.current = current
        self.writeOffset = writeOffset
        self.lastIndex = lastIndex
    }

    deinit { current?.close() }

    /// Opens the log in `directory` (the data directory's `wal/`, created if missing) and
    /// recovers it.
    ///
    /// Returns the entries with index > `snapshotIndex`, in order: the caller replays them on top
    /// of the snapshot it loaded (0: none). Segments wholly covered by the snapshot are not read.
    /// A torn or damaged record at the tail of the last segment is truncated and described in
    /// `recoveryNote` for the caller to log; damage followed by more data, a gap between the
    /// snapshot and the log, or a gap between segments throws `StorageError` (`.corruption`)
    /// naming the file and offset. When the snapshot is ahead of everything in the log, the log
    /// restarts at `snapshotIndex + 1` (old segments removed; noted).
    public static func open(directory: String, snapshotIndex: UInt64 = 0, segmentBytes: Int = 64 << 20,
                            fsync: Bool = true) throws(StorageError)
        -> (log: WriteAheadLog, entries: [WALRecord], recoveryNote: String?)
    {
        guard segmentBytes >= WALFormat.segmentHeaderBytes + WALFormat.recordHeaderBytes else {
            throw StorageError(.invalidArgument, "wal: segmentBytes \(segmentBytes) is too small")
        }
        var recovery = WALRecovery(directory: directory, snapshotIndex: snapshotIndex,
                                   segmentBytes: segmentBytes, fsync: fsync)
        try recovery.run()
        let segments = recovery.segments.map {
            Segment(firstIndex: $0.firstIndex, path: $0.path, fileBytes: $0.fileBytes)
        }
        let last = segments[segments.count - 1]
        let file = try OpenFile.open(last.path, flags: O_RDWR)
        let log = WriteAheadLog(directory: directory, segmentBytes: segmentBytes, fsync: fsync,
                                segments: segments, current: file, writeOffset: recovery.writeOffset,
                                lastIndex: recovery.lastIndex)
        let note = recovery.notes.isEmpty ? nil : recovery.notes.joined(separator: "; ")
        return (log, recovery.records, note)
    }

    /// Appends `entries` (indexes `lastIndex + 1 …`) as one batch frame and, with fsync on,
    /// returns once they are durable. Returns the index of the last one. Throws
    /// `.invalidArgument` (log still usable) for a payload over `maxPayloadBytes`; any I/O
    /// failure makes the log unusable, and the failed batch is cut off the segment so that a
    /// restart does not find it.
    @discardableResult
    public func append(_ entries: [WALEntry]) throws(StorageError) -> UInt64 {
        let file = try usableFile()
        guard !entries.isEmpty else { return lastIndex }
        for entry in entries {
            guard entry.payload.count <= Self.maxPayloadBytes else {
                throw StorageError(.invalidArgument,
                                   "wal: entry payload of \(entry.payload.count) bytes exceeds the "
                                   + "\(Self.maxPayloadBytes >> 20) MiB bound")
            }
        }
        let batchBytes = WALFormat.framedBytes(entries)
        var target = file
        do throws(StorageError) {
            if writeOffset + batchBytes > segments[segments.count - 1].fileBytes {
                target = try makeRoom(batchBytes: batchBytes, in: file)
            }
        } catch {
            // Nothing of the batch was written.
            failure = error
            throw error
        }
        var batch: [UInt8] = []
        batch.reserveCapacity(batchBytes)
        WALFormat.appendFrame(entries, fileOffset: writeOffset, to: &batch)
        do throws(StorageError) {
            if let code = injectFault?(.write) {
                try? target.write(Array(batch.prefix(batch.count / 2)), at: writeOffset)
                throw .system("write", path: target.path, offset: writeOffset, errno: code)
            }
            try target.write(batch, at: writeOffset)
            if fsyncEnabled {
                if let code = injectFault?(.sync) { throw .system("fdatasync", path: target.path, errno: code) }
                let started = ContinuousClock.now
                try target.syncData()
                observeSync?(ContinuousClock.now - started, batchBytes)
            } else {
                observeSync?(.zero, batchBytes)
            }
        } catch {
            failure = forgetFailedBatch(in: target, error)
            throw error
        }
        writeOffset += batchBytes
        lastIndex += UInt64(entries.count)
        return lastIndex
    }

    /// After a failed write or fdatasync the batch's pages may still be in the page cache —
    /// Linux marks them clean after a failed writeback — so a restart without a reboot would
    /// read the failed batch back (and a later reboot would lose it again, together with what
    /// was appended after it). Cutting the file at the last durable offset drops those pages;
    /// the size change is then synced. Returns the failure to report from now on.
    private func forgetFailedBatch(in file: OpenFile, _ error: StorageError) -> StorageError {
        do throws(StorageError) {
            if let code = injectFault?(.truncate) {
                throw .system("truncate to \(writeOffset) bytes", path: file.path, errno: code)
            }
            try file.truncate(length: writeOffset)
            try file.sync()
            return error
        } catch let cut {
            // The failed batch may come back at a restart; nothing after it is ever appended
            // (the log stays unusable), so no acknowledged entry depends on it.
            return StorageError(error.kind, error.message + "; cutting the failed batch off at offset "
                                + "\(writeOffset) also failed (\(cut.message)): entries of the failed batch may "
                                + "reappear after a restart", path: error.path, offset: error.offset)
        }
    }

    /// Removes the segments whose entries are all covered by a snapshot at `index` (≤ lastIndex).
    /// When the snapshot covers everything appended so far, first starts a fresh segment so that
    /// every older one goes. To survive a damaged newest snapshot, pass the index of the oldest
    /// snapshot kept, so the log still covers the step from it to the newest.
    public func resetAfterSnapshot(through index: UInt64) throws(StorageError) {
        let file = try usableFile()
        guard index <= lastIndex else {
            throw StorageError(.invalidArgument,
                               "wal: a snapshot at index \(index) is past the last logged index \(lastIndex)")
        }
        do throws(StorageError) {
            if index == lastIndex && segments[segments.count - 1].firstIndex <= lastIndex {
                try roll(file, minimumBytes: segmentBytes)
            }
            var removed = false
            while segments.count > 1 && segments[1].firstIndex <= index + 1 {
                try FileSystem.remove(segments[0].path)
                segments.removeFirst()
                removed = true
            }
            if removed && fsyncEnabled { try FileSystem.syncDirectory(directory) }
        } catch {
            failure = error
            throw error
        }
    }

    /// Bytes of all segment files (preallocated space included).
    public var bytesOnDisk: Int { segments.reduce(0) { $0 + $1.fileBytes } }

    /// Paths of the segment files, oldest first.
    public var segmentPaths: [String] { segments.map(\.path) }

    /// Closes the current segment; later appends throw.
    public func close() {
        current?.close()
        current = nil
    }

    private func usableFile() throws(StorageError) -> OpenFile {
        if let failure {
            throw StorageError(.logUnusable,
                               "wal: the log is unusable after an earlier failure (\(failure.message)); "
                               + "restart to recover from what is on disk",
                               path: failure.path, offset: failure.offset)
        }
        guard let current else { throw StorageError(.logUnusable, "wal: the log in \(directory) is closed") }
        return current
    }

    /// Makes the current segment able to take `batchBytes` more: grows it when it holds no
    /// record yet, otherwise rolls to a new one. Returns the file to write to.
    private func makeRoom(batchBytes: Int, in file: OpenFile) throws(StorageError) -> OpenFile {
        let needed = WALFormat.segmentHeaderBytes + batchBytes
        if writeOffset == WALFormat.segmentHeaderBytes {
            if let code = injectFault?(.createSegment) {
                throw .system("preallocate \(needed) bytes for", path: file.path, errno: code)
            }
            try file.preallocate(length: needed)
            segments[segments.count - 1].fileBytes = try file.size()
            return file
        }
        try roll(file, minimumBytes: max(segmentBytes, needed))
        return current!
    }

    /// Starts segment `lastIndex + 1` and makes it current. Everything in the old segment is
    /// already durable (each append was synced), so the new one never precedes missing data.
    private func roll(_ old: OpenFile, minimumBytes: Int) throws(StorageError) {
        if let code = injectFault?(.createSegment) {
            throw .system("create segment in", path: directory, errno: code)
        }
        let segment = try WALRecovery.createSegment(directory: directory, firstIndex: lastIndex + 1,
                                                    fileBytes: minimumBytes, fsync: fsyncEnabled)
        let file = try OpenFile.open(segment.path, flags: O_RDWR)
        old.close()
        current = file
        segments.append(Segment(firstIndex: segment.firstIndex, path: segment.path, fileBytes: segment.fileBytes))
        writeOffset = WALFormat.segmentHeaderBytes
    }
}
