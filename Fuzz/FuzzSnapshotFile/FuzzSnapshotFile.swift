#if canImport(Glibc)
import Glibc
#endif
import LatticeStorage

/// A snapshot file with fuzzed contents: loading it never traps; a damaged one is set aside and
/// reported, a valid one returns exactly its payload.
let root: String = {
    var template = Array("/tmp/lattice-fuzz-snap-XXXXXX".utf8CString)
    guard let dir = mkdtemp(&template) else { fatalError("mkdtemp failed") }
    return String(cString: dir)
}()

func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(fd >= 0)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

func clear(_ dir: String) {
    guard let d = opendir(dir) else { return }
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { unlink(dir + "/" + name) }
    }
    closedir(d)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    clear(root)
    writeFile(root + "/snap-0000000000000007.snap", input)
    do {
        let (snapshot, note) = try SnapshotFile.loadNewest(directory: root)
        if let snapshot {
            precondition(snapshot.index == 7 && note == nil)
            // What loads must save and load back identically.
            clear(root)
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

@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
               _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("FuzzSnapshotFile_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var c = argc, v = argv
    return runDriver(&c, &v, fuzzOne)
}
