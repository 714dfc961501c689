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
///       0  8  magic "LTWAL001"
///       8  8  first index, u64 LE
///      16  4  crc32c of bytes 0..<16, u32 LE
///      20  4  zero (reserved)
///     records, back to back from offset 24:
///       0  4  payload length, u32 LE (≤ 64 MiB)
///       4  4  crc32c of type ++ payload, u32 LE
///       8  1  type
///       9  …  payload
///
/// Nine zero bytes where a record header would start (length 0, crc 0, type 0 — no real record
/// has them, since crc32c([0]) ≠ 0) mark the end of the written data.
enum WALFormat {
    static let magic: [UInt8] = Array("LTWAL001".utf8)
    static let segmentHeaderBytes = 24
    static let recordHeaderBytes = 9
    static let maxPayloadBytes = 64 << 20
    /// The unit a crash can leave unwritten (zero) inside an otherwise written range.
    static let sectorBytes = 512

    static func segmentName(firstIndex: UInt64) -> String { hex16(firstIndex) + ".wal" }

    static func firstIndex(ofSegmentName name: String) -> UInt64? {
        guard name.hasSuffix(".wal") else { return nil }
        return parseHex16(name.dropLast(4))
    }

    static func segmentHeader(firstIndex: UInt64) -> [UInt8] {
        var header = magic
        header.appendLE(firstIndex)
        header.appendLE(CRC32C.checksum(header))
        header.appendLE(UInt32(0))
        return header
    }

    /// The first index a segment header declares, or why the header is invalid.
    static func parseSegmentHeader(_ bytes: UnsafeRawBufferPointer) -> Result<UInt64, HeaderProblem> {
        guard bytes.count >= segmentHeaderBytes else { return .failure(.short(bytes.count)) }
        guard bytes.prefix(8).elementsEqual(magic) else { return .failure(.badMagic) }
        let stored = bytes.loadLE32(16)
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<16]))
        guard stored == computed else { return .failure(.checksum(stored: stored, computed: computed)) }
        return .success(bytes.loadLE64(8))
    }

    enum HeaderProblem: Error, CustomStringConvertible {
        case short(Int), badMagic, checksum(stored: UInt32, computed: UInt32)

        var description: String {
            switch self {
            case .short(let n): "the file is \(n) bytes long, shorter than the \(segmentHeaderBytes)-byte segment header"
            case .badMagic: "the segment header does not start with \"LTWAL001\""
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
}

func hex8(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}
