#if canImport(Glibc)
import Glibc
#endif
import FuzzSupport
import LatticeStorage

/// Recovery of a WAL segment whose contents are fuzzed (behind a valid segment header of either
/// format version): opening it never traps, and when it opens, the log it recovered is
/// consistent — an entry appended after recovery comes back after a second recovery, right
/// after the recovered ones, with nothing else to report.
let root = scratchDirectory("lattice-fuzz-wal")

func header(version: Int) -> [UInt8] {
    var h = Array((version == 1 ? "LTWAL001" : "LTWAL002").utf8)
    for i in 0..<8 { h.append(i == 0 ? 1 : 0) }                 // first index 1
    let crc = CRC32C.checksum(h)
    for i in 0..<4 { h.append(UInt8(truncatingIfNeeded: crc >> UInt32(8 * i))) }
    return h + [0, 0, 0, 0]
}



@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let wal = root + "/wal"
    mkdir(wal, 0o700)
    clearDirectory(wal)
    let version = input[0] & 1 == 1 ? 1 : 2
    writeFile(wal + "/0000000000000001.wal", header(version: version) + input.dropFirst())
    guard let (log, recovered, _) = try? WriteAheadLog.open(directory: wal, segmentBytes: 4096, fsync: false) else {
        return 0   // refused as corruption: fine, as long as it did not trap
    }
    let probe = WALEntry(type: 7, payload: Array("probe".utf8))
    guard (try? log.append([probe])) != nil else { fatalError("append after a successful recovery failed") }
    log.close()
    guard let (_, again, note) = try? WriteAheadLog.open(directory: wal, segmentBytes: 4096, fsync: false) else {
        fatalError("the log does not reopen after recovery and one append")
    }
    precondition(again.map(\.entry) == recovered.map(\.entry) + [probe], "recovery lost or changed entries")
    precondition(note == nil, "a clean log reported: \(note ?? "")")
    return 0
}

@_cdecl("FuzzWAL_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzzOne)
}
