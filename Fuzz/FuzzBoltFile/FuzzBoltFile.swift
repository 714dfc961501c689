import FuzzSupport
import LatticeStorage

/// An etcd snapshot (bbolt file) with fuzzed contents, as `lattice snapshot restore` reads it:
/// reading never traps and always ends (damaged trees are refused, not walked forever).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    guard let bolt = try? BoltFile(bytes: input) else { return 0 }
    guard let names = try? bolt.bucketNames() else { return 0 }
    for name in names {
        var entries = 0
        _ = try? bolt.forEach(inBucket: name) { key, value in
            entries += 1
            precondition(key.count <= input.count && value.count <= input.count)
        }
    }
    return 0
}

@_cdecl("FuzzBoltFile_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runFuzzer(argc, argv, fuzzOne)
}
