#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Large byte buffers the snapshot path builds and drops (the encoded snapshot, the encoded
/// replicated state: hundreds of megabytes at a million keys).
public enum LargeBuffer {
    /// Below this, dropping a buffer costs nothing worth avoiding.
    static let gradualReleaseBytes = 16 << 20
    /// Pages given back per call.
    static let releaseStep = 8 << 20

    /// Empties `bytes`, giving its pages back to the kernel in 8 MiB steps first. Freed whole, a
    /// buffer of a few hundred megabytes is unmapped in one call that holds the process's memory
    /// map lock for 15–30 ms, and every other thread that grows its heap meanwhile (the writer,
    /// the event loops) waits: puts stalled that long whenever a snapshot finished. Each step
    /// here holds the lock only for its 8 MiB, and the final unmap finds no pages left.
    ///
    /// `bytes` must be the only reference to its storage: a shared buffer would be copied first
    /// (the copy's pages given back, the original left to its other owners).
    public static func release(_ bytes: inout [UInt8]) {
        defer { bytes = [] }
        guard bytes.count >= gradualReleaseBytes else { return }
        #if os(Linux)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard page > 0 else { return }
        bytes.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return }
            var start = (Int(bitPattern: base) + page - 1) / page * page
            let end = (Int(bitPattern: base) + raw.count) / page * page
            while start < end {
                let n = min(releaseStep, end - start)
                _ = madvise(UnsafeMutableRawPointer(bitPattern: start), n, MADV_DONTNEED)
                start += n
            }
        }
        #endif
    }
}
