/// Reads the entries of one segment held in memory and, where reading stops early, decides
/// whether the damage is a crash's unfinished tail (safe to truncate) or corruption before the
/// end (docs/storage.md "Recovery"). Version 2 segments are read by `FrameScanner` (below); the
/// rest of this comment is about version 1 segments, whose records are not framed in batches.
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
    /// Reads the entries of `bytes` (a whole segment file, header included) numbering them from
    /// `firstIndex`; keeps those with index > `keepAfter`. The segment header's magic says the
    /// format: batch frames (version 2) or bare records (version 1).
    static func scan(_ bytes: UnsafeRawBufferPointer, firstIndex: UInt64, keepAfter: UInt64) -> SegmentScan {
        if bytes.count >= 8 && bytes.prefix(8).elementsEqual(WALFormat.magicVersion1) {
            return scanRecords(bytes, firstIndex: firstIndex, keepAfter: keepAfter)
        }
        return FrameScanner.scan(bytes, firstIndex: firstIndex, keepAfter: keepAfter)
    }

    /// Version 1: records back to back, a crash's tail told apart by the rules above.
    static func scanRecords(_ bytes: UnsafeRawBufferPointer, firstIndex: UInt64, keepAfter: UInt64) -> SegmentScan {
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

/// Reads a version 2 segment: batch frames, each written by one append and checked as a whole.
///
/// A crash can tear only the frame being written when it came, which is the last one: every
/// earlier frame was fdatasync'ed before the next was written. So a bad frame is accepted as a
/// crash's unfinished tail only when
///   - no valid frame follows it anywhere in the segment (one that does proves the bad frame was
///     once complete and acknowledged: corruption), and
///   - it shows the marks of an unfinished write: its header is missing or torn (and no single
///     flipped bit explains it), its body runs past the end of the file, or more of its body's
///     sectors read as all zeros than its header recorded (a sector a power loss kept from the
///     disk still holds the preallocated zeros; a flipped bit can only make fewer).
/// Anything else — a checksum mismatch with every sector present, data after the frame's end,
/// a header one bit away from valid — is corruption, reported with file and offset, never
/// dropped.
enum FrameScanner {
    static func scan(_ bytes: UnsafeRawBufferPointer, firstIndex: UInt64, keepAfter: UInt64) -> SegmentScan {
        var scan = SegmentScan()
        let dataEnd = bytes.endOfNonZero(before: bytes.count)
        var p = WALFormat.segmentHeaderBytes
        while p < dataEnd {
            switch readFrame(bytes, at: p) {
            case .valid(let records, let end):
                for (type, payload) in records {
                    let index = firstIndex + UInt64(scan.count)
                    if index > keepAfter {
                        scan.records.append(WALRecord(index: index, entry: WALEntry(
                            type: type, payload: Array(UnsafeRawBufferPointer(rebasing: bytes[payload])))))
                    }
                    scan.count += 1
                }
                p = end
                scan.end = p
            case .invalid(let problem):
                scan.damage = classify(bytes, at: p, problem: problem, dataEnd: dataEnd)
                return scan
            }
        }
        return scan
    }

    enum FrameRead {
        case valid(records: [(type: UInt8, payload: Range<Int>)], end: Int)
        case invalid(Problem)
    }

    enum Problem {
        case incompleteHeader
        case zeroHeader
        case badHeader(String)
        case pastEndOfFile(length: UInt64)
        case checksum(bodyLength: Int, stored: UInt32, computed: UInt32, zeroSectors: Int)
        /// Header and body check out but the records do not fill the body as declared.
        case malformed(String)
    }

    static func readFrame(_ bytes: UnsafeRawBufferPointer, at p: Int) -> FrameRead {
        let h = WALFormat.frameHeaderBytes
        guard p + h <= bytes.count else { return .invalid(.incompleteHeader) }
        if bytes.isZero(p..<(p + h)) { return .invalid(.zeroHeader) }
        if let problem = headerProblem(bytes, at: p) { return .invalid(.badHeader(problem)) }
        let count = Int(bytes.loadLE32(p + 4))
        let length = bytes.loadLE64(p + 8)
        let bodyStart = p + h
        guard length <= UInt64(bytes.count - bodyStart) else { return .invalid(.pastEndOfFile(length: length)) }
        let body = bodyStart..<(bodyStart + Int(length))
        let stored = bytes.loadLE32(p + 20)
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[body]))
        guard stored == computed else {
            return .invalid(.checksum(bodyLength: Int(length), stored: stored, computed: computed,
                                      zeroSectors: Int(bytes.loadLE32(p + 16))))
        }
        var records: [(type: UInt8, payload: Range<Int>)] = []
        records.reserveCapacity(count)
        var q = body.lowerBound
        while q < body.upperBound {
            guard q + WALFormat.recordHeaderBytes <= body.upperBound else {
                return .invalid(.malformed("a record header at offset \(q) crosses the end of the batch"))
            }
            let payloadBytes = Int(bytes.loadLE32(q))
            let payload = (q + WALFormat.recordHeaderBytes)..<(q + WALFormat.recordHeaderBytes + payloadBytes)
            guard payloadBytes <= WALFormat.maxPayloadBytes, payload.upperBound <= body.upperBound else {
                return .invalid(.malformed("the record at offset \(q) runs past the end of the batch"))
            }
            let type = bytes[q + 8]
            guard WALFormat.recordChecksum(type: type, payload: UnsafeRawBufferPointer(rebasing: bytes[payload]))
                    == bytes.loadLE32(q + 4) else {
                return .invalid(.malformed("the record at offset \(q) fails its checksum"))
            }
            records.append((type, payload))
            q = payload.upperBound
        }
        guard records.count == count else {
            return .invalid(.malformed("the batch declares \(count) records and holds \(records.count)"))
        }
        return .valid(records: records, end: body.upperBound)
    }

    /// Why the frame header at `p` is invalid, or nil.
    static func headerProblem(_ bytes: UnsafeRawBufferPointer, at p: Int) -> String? {
        guard UnsafeRawBufferPointer(rebasing: bytes[p..<(p + 4)]).elementsEqual(WALFormat.frameMagic) else {
            return "no batch header (magic \"LTBF\") where one should start"
        }
        let stored = bytes.loadLE32(p + 24)
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[p..<(p + 24)]))
        return stored == computed ? nil
            : "batch header checksum mismatch (stored \(hex8(stored)), computed \(hex8(computed)))"
    }

    /// Whether a whole valid frame starts at `q`.
    static func isValidFrame(_ bytes: UnsafeRawBufferPointer, at q: Int) -> Bool {
        if case .valid = readFrame(bytes, at: q) { return true }
        return false
    }

    /// The first offset after `p` (and before `dataEnd`) where a valid frame starts.
    static func validFrame(after p: Int, before dataEnd: Int, in bytes: UnsafeRawBufferPointer) -> Int? {
        let magic0 = WALFormat.frameMagic[0]
        var q = p + 1
        while q + WALFormat.frameHeaderBytes <= dataEnd {
            if bytes[q] == magic0 && headerProblem(bytes, at: q) == nil && isValidFrame(bytes, at: q) { return q }
            q += 1
        }
        return nil
    }

    /// Whether flipping one bit of the header at `p` makes it, and the frame, valid: evidence of
    /// damage to a frame that was once whole, not a torn write.
    static func oneBitFromValid(_ bytes: UnsafeRawBufferPointer, at p: Int) -> Bool {
        let h = WALFormat.frameHeaderBytes
        guard p + h <= bytes.count else { return false }
        var header = Array(UnsafeRawBufferPointer(rebasing: bytes[p..<(p + h)]))
        for bit in 0..<(h * 8) {
            header[bit / 8] ^= UInt8(1 << (bit % 8))
            defer { header[bit / 8] ^= UInt8(1 << (bit % 8)) }
            let valid = header.withUnsafeBytes { hb -> Bool in
                guard hb.prefix(4).elementsEqual(WALFormat.frameMagic),
                      CRC32C.checksum(UnsafeRawBufferPointer(rebasing: hb[0..<24])) == hb.loadLE32(24) else { return false }
                let length = hb.loadLE64(8)
                guard length <= UInt64(bytes.count - p - h) else { return false }
                let body = UnsafeRawBufferPointer(rebasing: bytes[(p + h)..<(p + h + Int(length))])
                return CRC32C.checksum(body) == hb.loadLE32(20)
            }
            if valid { return true }
        }
        return false
    }

    private static func classify(_ bytes: UnsafeRawBufferPointer, at p: Int, problem: Problem,
                                 dataEnd: Int) -> SegmentScan.Damage {
        func damage(_ description: String, tail: Bool, torn: Bool) -> SegmentScan.Damage {
            SegmentScan.Damage(offset: p, problem: description, dataEnd: dataEnd, isTail: tail, torn: torn)
        }
        let followed = validFrame(after: p, before: dataEnd, in: bytes)
        func corruption(_ description: String) -> SegmentScan.Damage {
            let after = followed.map { "; a valid batch follows at offset \($0)" } ?? ""
            return damage(description + after, tail: false, torn: false)
        }
        switch problem {
        case .malformed(let what):
            return corruption("the batch checks out but is malformed: \(what)")
        case .incompleteHeader, .zeroHeader:
            let what = problemText(problem)
            return followed == nil ? damage(what, tail: true, torn: true) : corruption(what)
        case .badHeader(let what):
            if followed != nil { return corruption(what) }
            // A header crossing a sector boundary whose part after the boundary reads as
            // unwritten is torn, whatever one bit would do.
            let boundary = (p / WALFormat.sectorBytes + 1) * WALFormat.sectorBytes
            let headerEnd = min(p + WALFormat.frameHeaderBytes, bytes.count)
            let tornAcross = boundary < headerEnd && bytes.isZero(boundary..<headerEnd)
            if !tornAcross && oneBitFromValid(bytes, at: p) {
                return corruption(what + "; one flipped bit makes the batch valid, so it was written whole")
            }
            return damage(what, tail: true, torn: true)
        case .pastEndOfFile:
            let what = problemText(problem)
            return followed == nil ? damage(what, tail: true, torn: true) : corruption(what)
        case .checksum(let length, _, _, let recorded):
            let what = problemText(problem)
            if followed != nil { return corruption(what) }
            let bodyStart = p + WALFormat.frameHeaderBytes
            let end = bodyStart + length
            if dataEnd > end {
                return corruption(what + "; data follows the batch up to offset \(dataEnd)")
            }
            let observed = WALFormat.zeroSectorCount(UnsafeRawBufferPointer(rebasing: bytes[bodyStart..<end]),
                                                     fileOffset: bodyStart)
            if observed > recorded { return damage(what, tail: true, torn: true) }
            return corruption(what + "; none of its sectors reads as unwritten (\(observed) zero sectors, "
                              + "\(recorded) when written), so it was damaged after it was written, not torn")
        }
    }

    static func problemText(_ problem: Problem) -> String {
        switch problem {
        case .incompleteHeader: "incomplete batch header at the end of the file"
        case .zeroHeader: "zero-filled batch header followed by non-zero data"
        case .badHeader(let what): what
        case .pastEndOfFile(let length): "batch length \(length) runs past the end of the file"
        case .checksum(_, let stored, let computed, _):
            "batch checksum mismatch (stored \(hex8(stored)), computed \(hex8(computed)))"
        case .malformed(let what): what
        }
    }
}
