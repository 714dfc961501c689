#if canImport(Glibc)
import Glibc
#endif
import FuzzSupport
import LatticeStorage

/// A snapshot file with fuzzed contents: loading it never traps; a damaged one is set aside and
/// reported, a valid one returns exactly its payload.
let root = scratchDirectory("lattice-fuzz-snap")



@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    clearDirectory(root)
    writeFile(root + "/snap-0000000000000007.snap", input)
    do {
        let (snapshot, note) = try SnapshotFile.loadNewest(directory: root)
        if let snapshot {
            precondition(snapshot.index == 7 && note == nil)
            // What loads must save and load back identically.
            clearDirectory(root)
            try SnapshotFile.save(directory: root, index: 7, bytes: snapshot.bytes)
            let (again, _) = try SnapshotFile.loadNewest(directory: root)
            precondition(again?.bytes == snapshot.bytes, "snapshot round trip differs")
        } else {
            precondition(note != nil, "a damaged snapshot was skipped without a note")
        }
    } catch {
        // An unknown format version is refused, not skipped: fine.
    }
    return 0
}

@_cdecl("FuzzSnapshotFile_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzzOne)
}
