import CCRC32C

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of iSCSI, ext4 and etcd's
/// WAL. With the CPU's CRC-32C instruction where it has one (SSE 4.2, AArch64's CRC extension:
/// several times faster), else table-driven, slicing-by-8, in software; both give the same bits.
///
/// `checksum(a ++ b) == update(checksum(a), b)`, and the checksum of no bytes is 0, so a record's
/// checksum over `type ++ payload` is computed without concatenating them.
public enum CRC32C {
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 { update(0, bytes) }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    public static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    /// Extends `crc` (a finished checksum of earlier bytes) over `bytes`.
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard hardware, let base = bytes.baseAddress else { return softwareUpdate(crc, bytes) }
        return ~lattice_crc32c_hw(~crc, base, bytes.count)
    }

    /// Whether this CPU computes it with its own instruction.
    static let hardware = lattice_crc32c_hw_available() != 0

    /// The table-driven computation (what runs without the instruction; tests compare the two).
    static func softwareUpdate(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        ~crc32cTable.withUnsafeBufferPointer { table in raw(~crc, bytes, table) }
    }

    public static func update(_ crc: UInt32, _ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { update(crc, $0) }
    }

    public static func update(_ crc: UInt32, byte: UInt8) -> UInt32 {
        Swift.withUnsafeBytes(of: byte) { update(crc, $0) }
    }

    /// The register-level loop: `state` is the inverted CRC.
    private static func raw(_ state: UInt32, _ bytes: UnsafeRawBufferPointer,
                            _ t: UnsafeBufferPointer<UInt32>) -> UInt32 {
        var crc = state
        var i = 0
        let n = bytes.count
        while n - i >= 8 {
            let one = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt32.self)) ^ crc
            let two = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self))
            crc = t[7 * 256 + Int(one & 0xff)] ^ t[6 * 256 + Int((one >> 8) & 0xff)]
                ^ t[5 * 256 + Int((one >> 16) & 0xff)] ^ t[4 * 256 + Int(one >> 24)]
                ^ t[3 * 256 + Int(two & 0xff)] ^ t[2 * 256 + Int((two >> 8) & 0xff)]
                ^ t[1 * 256 + Int((two >> 16) & 0xff)] ^ t[Int(two >> 24)]
            i += 8
        }
        while i < n {
            crc = t[Int((crc ^ UInt32(bytes[i])) & 0xff)] ^ (crc >> 8)
            i += 1
        }
        return crc
    }
}

/// Eight 256-entry tables: table k maps a byte to its contribution k bytes further along.
private let crc32cTable: [UInt32] = {
    var table = [UInt32](repeating: 0, count: 8 * 256)
    for byte in 0..<256 {
        var crc = UInt32(byte)
        for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        table[byte] = crc
    }
    for k in 1..<8 {
        for byte in 0..<256 {
            let previous = table[(k - 1) * 256 + byte]
            table[k * 256 + byte] = (previous >> 8) ^ table[Int(previous & 0xff)]
        }
    }
    return table
}()
