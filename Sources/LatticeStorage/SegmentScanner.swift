/// Reads the records of one segment held in memory and, where reading stops early, decides
/// whether the damage is a crash's unfinished tail (safe to truncate) or corruption before the
/// end (docs/storage.md "Recovery").
///
/// What a crash can leave in the last segment, given that appends go to preallocated zeros and
/// each batch is fdatasync'ed before the next one starts: the batch being written when the
/// crash came is partly on disk. Either a prefix of it is there and zeros follow (a process
/// killed mid-write), or — after a power loss — any subset of its sectors, the others still
/// zero. Corruption (bit flips, overwritten bytes) leaves non-zero garbage instead. So a bad
/// record is the tail when
///   - it is torn: one of its sectors inside the written data reads as never written — zero
///     from the record (or sector) start to the sector's end: an unwritten sector of the
///     in-flight batch, and whatever follows belongs to that batch — or
///   - nothing non-zero follows its extent (it is the last record). Its extent comes from the
///     length field, or from that field with one bit corrected when the corrected length makes
///     the checksum match — so a flipped bit in the length of a middle record is not mistaken
///     for a long last record.
/// Anything else is corruption followed by data, which recovery refuses to drop.
struct SegmentScan {
    var records: [WALRecord] = []
    /// Valid records read (including those not kept).
    var count = 0
    /// Offset just past the last valid record: where the next append goes.
    var end = WALFormat.segmentHeaderBytes
    /// Why reading stopped before the end of the written data, if it did.
    var damage: Damage?

    struct Damage {
        /// Offset of the first invalid record.
        var offset: Int
        var problem: String
        /// One past the last non-zero byte of the file.
        var dataEnd: Int
        /// A crash's unfinished tail (see above); meaningful for the last segment only.
        var isTail: Bool
        var torn: Bool
    }
}

enum SegmentScanner {
    /// Reads records from `bytes` (a whole segment file, header included) numbering them from
    /// `firstIndex`; keeps those with index > `keepAfter`.
    static func scan(_ bytes: UnsafeRawBufferPointer, firstIndex: UInt64, keepAfter: UInt64) -> SegmentScan {
        var scan = SegmentScan()
        let dataEnd = bytes.endOfNonZero(before: bytes.count)
        var p = WALFormat.segmentHeaderBytes
        while true {
            if p >= dataEnd { break }  // only zeros (or nothing) from here: the end of the written data
            switch readRecord(bytes, at: p) {
            case .valid(let type, let payloadBytes):
                let index = firstIndex + UInt64(scan.count)
                if index > keepAfter {
                    let payload = Array(UnsafeRawBufferPointer(rebasing: bytes[(p + 9)..<(p + 9 + payloadBytes)]))
                    scan.records.append(WALRecord(index: index, entry: WALEntry(type: type, payload: payload)))
                }
                scan.count += 1
                p += WALFormat.recordHeaderBytes + payloadBytes
                scan.end = p
            case .invalid(let problem):
                scan.damage = classify(bytes, at: p, problem: problem, dataEnd: dataEnd)
                return scan
            }
        }
        return scan
    }

    enum RecordRead {
        case valid(type: UInt8, payloadBytes: Int)
        case invalid(Problem)
    }

    enum Problem {
        case incompleteHeader
        case zeroHeader
        case tooLong(length: Int)
        case pastEndOfFile(length: Int)
        case checksum(length: Int, stored: UInt32, computed: UInt32)
    }

    static func readRecord(_ bytes: UnsafeRawBufferPointer, at p: Int) -> RecordRead {
        guard p + WALFormat.recordHeaderBytes <= bytes.count else { return .invalid(.incompleteHeader) }
        let length = Int(bytes.loadLE32(p))
        let stored = bytes.loadLE32(p + 4)
        let type = bytes[p + 8]
        if length == 0 && stored == 0 && type == 0 { return .invalid(.zeroHeader) }
        if length > WALFormat.maxPayloadBytes { return .invalid(.tooLong(length: length)) }
        let payloadStart = p + WALFormat.recordHeaderBytes
        if payloadStart + length > bytes.count { return .invalid(.pastEndOfFile(length: length)) }
        let computed = WALFormat.recordChecksum(
            type: type, payload: UnsafeRawBufferPointer(rebasing: bytes[payloadStart..<(payloadStart + length)]))
        if computed != stored { return .invalid(.checksum(length: length, stored: stored, computed: computed)) }
        return .valid(type: type, payloadBytes: length)
    }

    private static func classify(_ bytes: UnsafeRawBufferPointer, at x: Int, problem: Problem,
                                 dataEnd: Int) -> SegmentScan.Damage {
        let headerEnd = x + WALFormat.recordHeaderBytes
        var claimedEnd: Int?       // the record's end per its length field, if that is plausible
        var description: String
        switch problem {
        case .incompleteHeader:
            description = "incomplete record header: the file ends at offset \(bytes.count)"
        case .zeroHeader:
            description = "zero-filled record header followed by non-zero data"
            claimedEnd = headerEnd
        case .tooLong(let length):
            description = "record length \(length) exceeds the \(WALFormat.maxPayloadBytes >> 20) MiB bound"
        case .pastEndOfFile(let length):
            description = "record length \(length) runs past the end of the file (\(bytes.count) bytes)"
            claimedEnd = headerEnd + length
        case .checksum(let length, let stored, let computed):
            description = "checksum mismatch (stored \(hex8(stored)), computed \(hex8(computed)))"
            claimedEnd = headerEnd + length
        }
        var extent = claimedEnd
        switch problem {
        case .tooLong, .pastEndOfFile, .checksum:
            if let length = correctedLength(bytes, at: x) {
                description += "; the length field reads \(bytes.loadLE32(x)) but the record checks out"
                    + " with length \(length)"
                extent = headerEnd + length
            }
        case .incompleteHeader, .zeroHeader:
            break
        }
        let written = x..<min(extent ?? min(headerEnd, bytes.count), dataEnd)
        let torn = hasUnwrittenSector(bytes, written)
        let isLast = (extent ?? headerEnd) >= dataEnd
        return SegmentScan.Damage(offset: x, problem: description, dataEnd: dataEnd,
                                  isTail: torn || isLast, torn: torn)
    }

    /// Whether one of the 512-byte sectors of the file that overlap `range` (a bad record's
    /// written bytes, starting at the record) reads as never written: zero from the record start
    /// or the sector start, whichever is later, to the end of the sector. A sector the crash did
    /// not write still holds what was there before the batch: zeros after the durable data. A
    /// zero run inside a payload that stops before the sector ends (followed by the next record's
    /// header) is data, not a tear.
    static func hasUnwrittenSector(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        var start = range.lowerBound
        while start < range.upperBound {
            let sectorEnd = min((start / WALFormat.sectorBytes + 1) * WALFormat.sectorBytes, bytes.count)
            if bytes.isZero(start..<sectorEnd) { return true }
            start = sectorEnd
        }
        return false
    }

    /// The length, differing from the stored one in exactly one bit, with which the record at `x`
    /// matches its checksum — evidence that the length field took a bit flip.
    static func correctedLength(_ bytes: UnsafeRawBufferPointer, at x: Int) -> Int? {
        guard x + WALFormat.recordHeaderBytes <= bytes.count else { return nil }
        let stored = bytes.loadLE32(x)
        let crc = bytes.loadLE32(x + 4)
        let payloadStart = x + WALFormat.recordHeaderBytes
        let candidates = (0..<32).map { Int(stored ^ (UInt32(1) << UInt32($0))) }
            .filter { $0 <= WALFormat.maxPayloadBytes && payloadStart + $0 <= bytes.count }
            .sorted()
        // One pass over the payload, reading the running checksum at each candidate length.
        var running = CRC32C.update(0, byte: bytes[x + 8])
        var covered = 0
        for length in candidates {
            running = CRC32C.update(running, UnsafeRawBufferPointer(
                rebasing: bytes[(payloadStart + covered)..<(payloadStart + length)]))
            covered = length
            if running == crc { return length }
        }
        return nil
    }
}
