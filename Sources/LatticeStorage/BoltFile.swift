/// A read-only reader of bbolt database files, the format of etcd's data directory (`member/snap/db`)
/// and of `etcdctl snapshot save`, for migrating an etcd keyspace into Lattice.
///
/// The format: fixed-size pages (the size is in the meta page); pages 0 and 1 are meta pages
/// (the valid one with the higher transaction id wins), each naming the root bucket's page. A
/// bucket is a B+tree of branch pages (key → child page) and leaf pages (key → value, or key →
/// nested bucket, whose tree may be inlined in the value). All integers are little-endian.
public struct BoltFile: Sendable {
    public let pageSize: Int
    private let bytes: [UInt8]
    private let rootPage: UInt64
    /// The file's size as the newest meta page sees it (its high-water page × the page size):
    /// what etcd reports as a snapshot's total size.
    public let usedBytes: Int

    static let magic: UInt32 = 0xED0C_DAED
    static let branchPage: UInt16 = 0x01
    static let leafPage: UInt16 = 0x02
    static let bucketLeaf: UInt32 = 0x01
    static let pageHeaderBytes = 16

    /// Whether `bytes` start like a bbolt file (a meta page with bbolt's magic).
    public static func looksLikeBolt(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 64 && u32(bytes, 16) == magic
    }

    public init(bytes: [UInt8]) throws(StorageError) {
        guard Self.looksLikeBolt(bytes) else { throw StorageError(.corruption, "bolt: not a bbolt file (no meta page magic)") }
        self.bytes = bytes
        let size = Int(Self.u32(bytes, 24))
        guard size >= 512, size <= 1 << 20, size.nonzeroBitCount == 1 else {
            throw StorageError(.corruption, "bolt: invalid page size \(size)")
        }
        pageSize = size
        // The two meta pages: the newest whose checksum holds.
        var best: (txid: UInt64, root: UInt64, pages: UInt64)?
        for page in 0..<2 {
            let base = page * size + Self.pageHeaderBytes
            guard base + 64 <= bytes.count, Self.u32(bytes, base) == Self.magic else { continue }
            let checksum = Self.u64(bytes, base + 56)
            guard Self.fnv1a64(bytes[base..<(base + 56)]) == checksum else { continue }
            let txid = Self.u64(bytes, base + 48)
            let root = Self.u64(bytes, base + 16)
            if best == nil || txid > best!.txid { best = (txid, root, Self.u64(bytes, base + 40)) }
        }
        guard let best else { throw StorageError(.corruption, "bolt: no valid meta page") }
        rootPage = best.root
        usedBytes = Int(clamping: best.pages) &* size
    }

    /// The top-level bucket names.
    public func bucketNames() throws(StorageError) -> [[UInt8]] {
        var names: [[UInt8]] = []
        try walk(page: rootPage, inline: nil, depth: 0) { key, _, flags in
            if flags & Self.bucketLeaf != 0 { names.append(key) }
        }
        return names
    }

    /// Calls `visit` with every key and value of top-level bucket `name`, in key order; false if
    /// there is no such bucket.
    @discardableResult
    public func forEach(inBucket name: [UInt8], _ visit: ([UInt8], ArraySlice<UInt8>) throws(StorageError) -> Void) throws(StorageError) -> Bool {
        var header: ArraySlice<UInt8>?
        try walk(page: rootPage, inline: nil, depth: 0) { key, value, flags in
            if flags & Self.bucketLeaf != 0 && key == name { header = value }
        }
        guard let header else { return false }
        guard header.count >= 16 else { throw StorageError(.corruption, "bolt: bucket header too short") }
        let root = Self.u64(Array(header), 0)
        if root == 0 {
            // An inline bucket: its single leaf page follows the header in the value.
            try walk(page: 0, inline: Array(header.dropFirst(16)), depth: 0) { key, value, flags throws(StorageError) in
                if flags & Self.bucketLeaf == 0 { try visit(key, value) }
            }
        } else {
            try walk(page: root, inline: nil, depth: 0) { key, value, flags throws(StorageError) in
                if flags & Self.bucketLeaf == 0 { try visit(key, value) }
            }
        }
        return true
    }

    /// Visits the leaf entries under `page` (or of the inline page `inline`) in order.
    private func walk(page: UInt64, inline: [UInt8]?, depth: Int,
                      _ visit: ([UInt8], ArraySlice<UInt8>, UInt32) throws(StorageError) -> Void) throws(StorageError) {
        var budget = bytes.count / pageSize + 2
        try walk(page: page, inline: inline, depth: depth, budget: &budget, visit)
    }

    /// `budget`: pages left to visit. A valid tree visits each page once; a damaged one whose
    /// branches point back into the tree would otherwise be walked without end.
    private func walk(page: UInt64, inline: [UInt8]?, depth: Int, budget: inout Int,
                      _ visit: ([UInt8], ArraySlice<UInt8>, UInt32) throws(StorageError) -> Void) throws(StorageError) {
        guard depth < 64 else { throw StorageError(.corruption, "bolt: tree deeper than 64 levels") }
        budget -= 1
        guard budget >= 0 else { throw StorageError(.corruption, "bolt: the tree visits more pages than the file holds") }
        let data: [UInt8]
        let base: Int
        if let inline {
            data = inline
            base = 0
        } else {
            let offset = Int(clamping: page) &* pageSize
            guard page >= 2, offset >= 0, offset + Self.pageHeaderBytes <= bytes.count else {
                throw StorageError(.corruption, "bolt: page \(page) is outside the file")
            }
            data = bytes
            base = offset
        }
        guard base + Self.pageHeaderBytes <= data.count else { throw StorageError(.corruption, "bolt: truncated page") }
        let flags = Self.u16(data, base + 8)
        let count = Int(Self.u16(data, base + 10))
        let overflow = Int(Self.u32(data, base + 12))
        let end = inline == nil ? min(data.count, base + (overflow + 1) * pageSize) : data.count
        let elements = base + Self.pageHeaderBytes
        guard elements + count * 16 <= end else { throw StorageError(.corruption, "bolt: page \(page) elements overrun it") }
        for i in 0..<count {
            let element = elements + i * 16
            if flags & Self.branchPage != 0 {
                let child = Self.u64(data, element + 8)
                try walk(page: child, inline: nil, depth: depth + 1, budget: &budget, visit)
            } else if flags & Self.leafPage != 0 {
                let entryFlags = Self.u32(data, element)
                let pos = Int(Self.u32(data, element + 4))
                let ksize = Int(Self.u32(data, element + 8))
                let vsize = Int(Self.u32(data, element + 12))
                let keyStart = element + pos
                guard keyStart + ksize + vsize <= end else { throw StorageError(.corruption, "bolt: leaf entry overruns page \(page)") }
                try visit(Array(data[keyStart..<(keyStart + ksize)]),
                          data[(keyStart + ksize)..<(keyStart + ksize + vsize)], entryFlags)
            } else {
                throw StorageError(.corruption, "bolt: page \(page) is neither a branch nor a leaf (flags \(flags))")
            }
        }
    }

    static func u16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
    static func u32(_ b: [UInt8], _ at: Int) -> UInt32 { b.withUnsafeBytes { $0.loadLE32(at) } }
    static func u64(_ b: [UInt8], _ at: Int) -> UInt64 { b.withUnsafeBytes { $0.loadLE64(at) } }

    /// FNV-1a, 64 bits: bbolt's meta page checksum.
    static func fnv1a64(_ data: ArraySlice<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in data {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return h
    }
}
