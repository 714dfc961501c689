/// One record of the write-ahead log: a caller-defined type byte and opaque payload bytes.
public struct WALEntry: Sendable, Equatable {
    public var type: UInt8
    public var payload: [UInt8]

    public init(type: UInt8, payload: [UInt8]) {
        self.type = type
        self.payload = payload
    }
}

/// An entry read back from the log with its sequence index (1, 2, 3, … across all segments).
public struct WALRecord: Sendable, Equatable {
    public var index: UInt64
    public var entry: WALEntry

    public init(index: UInt64, entry: WALEntry) {
        self.index = index
        self.entry = entry
    }
}

/// The on-disk layout of WAL segments (docs/storage.md "Write-ahead log").
///
/// Segment file `<16 hex digits of its first index>.wal`, preallocated with zeros:
///
///     segment header (24 bytes)
///       0  8  magic "LTWAL002" (version 2; "LTWAL001" segments are still read)
///       8  8  first index, u64 LE
///      16  4  crc32c of bytes 0..<16, u32 LE
///      20  4  zero (reserved)
///     batch frames, back to back from offset 24 (version 2): one per append
///       0  4  magic "LTBF"
///       4  4  record count, u32 LE
///       8  8  body length in bytes, u64 LE
///      16  4  zero-sector count: of the 512-byte file sectors that overlap the body, how many
///             hold only zero bytes of it, u32 LE (tells a torn write from damaged data)
///      20  4  crc32c of the body, u32 LE
///      24  4  crc32c of bytes 0..<24, u32 LE
///      28  …  body: the records
///     record (in a frame body; version 1 segments hold records back to back, unframed)
///       0  4  payload length, u32 LE (≤ 64 MiB)
///       4  4  crc32c of type ++ payload, u32 LE
///       8  1  type
///       9  …  payload
///
/// Zeros where the next frame (or, in version 1, record) header would start mark the end of the
/// written data.
enum WALFormat {
    /// The segment format appends write.
    static let magic: [UInt8] = Array("LTWAL002".utf8)
    static let magicVersion1: [UInt8] = Array("LTWAL001".utf8)
    static let frameMagic: [UInt8] = Array("LTBF".utf8)
    static let segmentHeaderBytes = 24
    static let frameHeaderBytes = 28
    static let recordHeaderBytes = 9
    static let maxPayloadBytes = 64 << 20
    /// The unit a crash can leave unwritten (zero) inside an otherwise written range.
    static let sectorBytes = 512

    static func segmentName(firstIndex: UInt64) -> String { hex16(firstIndex) + ".wal" }

    static func firstIndex(ofSegmentName name: String) -> UInt64? {
        guard name.hasSuffix(".wal") else { return nil }
        return parseHex16(name.dropLast(4))
    }

    static func segmentHeader(firstIndex: UInt64, version: Int = 2) -> [UInt8] {
        var header = version == 1 ? magicVersion1 : magic
        header.appendLE(firstIndex)
        header.appendLE(CRC32C.checksum(header))
        header.appendLE(UInt32(0))
        return header
    }

    /// The first index a segment header declares, or why the header is invalid.
    static func parseSegmentHeader(_ bytes: UnsafeRawBufferPointer) -> Result<UInt64, HeaderProblem> {
        parseSegmentHeaderAndVersion(bytes).map(\.firstIndex)
    }

    /// The first index and format version (1 or 2) a segment header declares.
    static func parseSegmentHeaderAndVersion(_ bytes: UnsafeRawBufferPointer)
        -> Result<(firstIndex: UInt64, version: Int), HeaderProblem>
    {
        guard bytes.count >= segmentHeaderBytes else { return .failure(.short(bytes.count)) }
        let version: Int
        if bytes.prefix(8).elementsEqual(magic) {
            version = 2
        } else if bytes.prefix(8).elementsEqual(magicVersion1) {
            version = 1
        } else {
            return .failure(.badMagic)
        }
        let stored = bytes.loadLE32(16)
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<16]))
        guard stored == computed else { return .failure(.checksum(stored: stored, computed: computed)) }
        return .success((bytes.loadLE64(8), version))
    }

    enum HeaderProblem: Error, CustomStringConvertible {
        case short(Int), badMagic, checksum(stored: UInt32, computed: UInt32)

        var description: String {
            switch self {
            case .short(let n): "the file is \(n) bytes long, shorter than the \(segmentHeaderBytes)-byte segment header"
            case .badMagic: "the segment header does not start with \"LTWAL002\" (or \"LTWAL001\")"
            case .checksum(let stored, let computed):
                "segment header checksum mismatch (stored \(hex8(stored)), computed \(hex8(computed)))"
            }
        }
    }

    static func recordChecksum(type: UInt8, payload: UnsafeRawBufferPointer) -> UInt32 {
        CRC32C.update(CRC32C.update(0, byte: type), payload)
    }

    static func appendRecord(_ entry: WALEntry, to buffer: inout [UInt8]) {
        buffer.appendLE(UInt32(entry.payload.count))
        let crc = entry.payload.withUnsafeBytes { recordChecksum(type: entry.type, payload: $0) }
        buffer.appendLE(crc)
        buffer.append(entry.type)
        buffer.append(contentsOf: entry.payload)
    }

    static func encodedBytes(_ entry: WALEntry) -> Int { recordHeaderBytes + entry.payload.count }

    /// Appends one batch frame holding `entries` to `buffer`, for writing at file offset
    /// `fileOffset` (the zero-sector count depends on where the body lands).
    static func appendFrame(_ entries: [WALEntry], fileOffset: Int, to buffer: inout [UInt8]) {
        let headerAt = buffer.count
        buffer.append(contentsOf: [UInt8](repeating: 0, count: frameHeaderBytes))
        let bodyAt = buffer.count
        for entry in entries { appendRecord(entry, to: &buffer) }
        let (zeroSectors, bodyCRC) = buffer.withUnsafeBytes { raw in
            let body = UnsafeRawBufferPointer(rebasing: raw[bodyAt...])
            return (zeroSectorCount(body, fileOffset: fileOffset + frameHeaderBytes), CRC32C.checksum(body))
        }
        var header = frameMagic
        header.appendLE(UInt32(entries.count))
        header.appendLE(UInt64(buffer.count - bodyAt))
        header.appendLE(UInt32(zeroSectors))
        header.appendLE(bodyCRC)
        header.appendLE(CRC32C.checksum(header))
        buffer.replaceSubrange(headerAt..<bodyAt, with: header)
    }

    static func framedBytes(_ entries: [WALEntry]) -> Int {
        entries.reduce(frameHeaderBytes) { $0 + encodedBytes($1) }
    }

    /// Of the `sectorBytes` file sectors that overlap `body` (which lies at `fileOffset` in the
    /// file), how many hold only zeros of it. A sector a power loss kept from the disk still
    /// reads as zeros, so a torn frame has more of them than its header recorded; a flipped bit
    /// can only make fewer.
    static func zeroSectorCount(_ body: UnsafeRawBufferPointer, fileOffset: Int) -> Int {
        var count = 0
        var start = 0
        while start < body.count {
            let sectorEnd = ((fileOffset + start) / sectorBytes + 1) * sectorBytes - fileOffset
            let end = min(sectorEnd, body.count)
            if body.isZero(start..<end) { count += 1 }
            start = end
        }
        return count
    }
}

func hex8(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}
