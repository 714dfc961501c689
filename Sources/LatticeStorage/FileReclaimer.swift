#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Synchronization

/// Gives a removed large file's blocks back to the file system in steps, on a thread of its own.
///
/// Unlinking a file of hundreds of megabytes (an old snapshot, WAL segments a snapshot covers)
/// frees all its blocks in one journal transaction. On a file system that discards freed blocks
/// (ext4 mounted with `discard`, common on cloud and virtual disks) that transaction's commit
/// issues the discards for all of them, and every `fdatasync` meanwhile (the WAL's, for
/// acknowledged writes) waits for it: 20–35 ms for a 370 MB file, measured here. Shrinking the
/// file `step` bytes at a time, each step synced (its own small commit), keeps every commit
/// short.
///
/// The name goes at once (`remove` returns after the unlink, so a crash never brings the file
/// back); the open descriptor keeps the blocks until the steps are done. A crash meanwhile
/// loses nothing: the kernel frees an unlinked file's blocks when its last descriptor closes, or
/// at the next mount.
public final class FileReclaimer: Sendable {
    /// Bytes freed per step; a file smaller than one step is unlinked outright (its frees are
    /// short).
    public static let stepBytes = 8 << 20
    /// At most this many files wait; past it, a remover shrinks its file itself.
    static let queueLimit = 16

    public static let shared = FileReclaimer()

    private struct State {
        var pending = 0
        var counts = Counts()
    }

    /// What the reclaimer has done: files shrunk, steps taken, bytes freed, the largest step.
    public struct Counts: Equatable, Sendable {
        public var files = 0
        public var steps = 0
        public var freedBytes = 0
        public var largestStep = 0
    }
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "lattice.file-reclaimer", qos: .utility)
    private let idle = DispatchGroup()

    init() {}

    /// Removes `path` (a missing file is not an error). A file of `stepBytes` or more is unlinked
    /// now and shrunk to nothing in the background.
    public func remove(_ path: String) throws(StorageError) {
        guard let file = try? OpenFile.open(path, flags: O_WRONLY) else {
            // Missing, or not writable by us: a plain unlink says which.
            if unlink(path) != 0 && errno != ENOENT { throw .system("remove", path: path, errno: errno) }
            return
        }
        let size = (try? file.size()) ?? 0
        if unlink(path) != 0 {
            let code = errno
            file.close()
            if code != ENOENT { throw .system("remove", path: path, errno: code) }
            return
        }
        guard size >= Self.stepBytes else {
            file.close()
            return
        }
        let queued = state.withLock { s in
            guard s.pending < Self.queueLimit else { return false }
            s.pending += 1
            return true
        }
        guard queued else {
            shrink(file, from: size)
            return
        }
        idle.enter()
        queue.async { [self] in
            shrink(file, from: size)
            state.withLock { $0.pending -= 1 }
            idle.leave()
        }
    }

    /// Waits until every queued file is gone.
    public func waitUntilIdle() { idle.wait() }

    public var counts: Counts { state.withLock { $0.counts } }

    private func shrink(_ file: OpenFile, from size: Int) {
        defer { file.close() }
        state.withLock { $0.counts.files += 1 }
        var length = size
        while length > 0 {
            let next = max(0, length - Self.stepBytes)
            // A step that fails leaves the rest to the final close: nothing is lost either way.
            guard (try? file.truncate(length: next)) != nil, (try? file.syncData()) != nil else { return }
            state.withLock { s in
                s.counts.steps += 1
                s.counts.freedBytes += length - next
                s.counts.largestStep = max(s.counts.largestStep, length - next)
            }
            length = next
        }
    }
}
