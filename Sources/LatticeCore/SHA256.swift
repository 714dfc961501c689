/// SHA-256 (FIPS 180-4), for the checksum etcd clients expect at the end of a snapshot stream and
/// for `Replica.stateHash()`. Streaming (`SHA256.Hasher`) so large inputs are never copied.
public enum SHA256 {
    static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    public static func hash(_ message: [UInt8]) -> [UInt8] {
        var hasher = Hasher()
        hasher.update(message)
        return hasher.finalize()
    }

    /// Incremental SHA-256: `update` any number of times, then `finalize` once.
    public struct Hasher: Sendable {
        private var state: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
        private var block = [UInt8](repeating: 0, count: 64)
        private var blockCount = 0
        private var totalBytes: UInt64 = 0
        private var schedule = [UInt32](repeating: 0, count: 64)

        public init() {}

        public mutating func update(_ bytes: [UInt8]) {
            bytes.withUnsafeBufferPointer { update($0) }
        }

        public mutating func update(_ bytes: UnsafeBufferPointer<UInt8>) {
            totalBytes &+= UInt64(bytes.count)
            var i = 0
            if blockCount > 0 {
                let n = min(64 - blockCount, bytes.count)
                for j in 0..<n { block[blockCount + j] = bytes[j] }
                blockCount += n
                i = n
                if blockCount < 64 { return }
                block.withUnsafeBufferPointer { compress($0.baseAddress!) }
                blockCount = 0
            }
            while bytes.count - i >= 64 {
                compress(bytes.baseAddress! + i)
                i += 64
            }
            let rest = bytes.count - i
            for j in 0..<rest { block[j] = bytes[i + j] }
            blockCount = rest
        }

        /// Appends `value` as 8 little-endian bytes.
        public mutating func update(uint64 value: UInt64) {
            withUnsafeBytes(of: value.littleEndian) { update($0.bindMemory(to: UInt8.self)) }
        }

        public mutating func finalize() -> [UInt8] {
            let bitLength = totalBytes &* 8
            var padding: [UInt8] = [0x80]
            while (blockCount + padding.count) % 64 != 56 { padding.append(0) }
            for i in (0..<8).reversed() { padding.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
            let saved = totalBytes
            update(padding)
            totalBytes = saved
            var out: [UInt8] = []
            out.reserveCapacity(32)
            for v in state { for s in [24, 16, 8, 0] { out.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
            return out
        }

        private mutating func compress(_ chunk: UnsafePointer<UInt8>) {
            state.withUnsafeMutableBufferPointer { h in
                schedule.withUnsafeMutableBufferPointer { w in
                    SHA256.k.withUnsafeBufferPointer { k in
                        SHA256.compress(chunk, h.baseAddress!, w.baseAddress!, k.baseAddress!)
                    }
                }
            }
        }
    }

    private static func compress(_ chunk: UnsafePointer<UInt8>, _ h: UnsafeMutablePointer<UInt32>,
                                 _ w: UnsafeMutablePointer<UInt32>, _ k: UnsafePointer<UInt32>) {
        // Rotations written out: debug builds do not inline helpers, and this is the hot loop.
        for i in 0..<16 {
            let b = i &* 4
            w[i] = UInt32(chunk[b]) << 24 | UInt32(chunk[b &+ 1]) << 16 | UInt32(chunk[b &+ 2]) << 8 | UInt32(chunk[b &+ 3])
        }
        for i in 16..<64 {
            let x = w[i &- 15], y = w[i &- 2]
            let s0 = (x >> 7 | x << 25) ^ (x >> 18 | x << 14) ^ (x >> 3)
            let s1 = (y >> 17 | y << 15) ^ (y >> 19 | y << 13) ^ (y >> 10)
            w[i] = w[i &- 16] &+ s0 &+ w[i &- 7] &+ s1
        }
        var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
        for i in 0..<64 {
            let s1 = (e >> 6 | e << 26) ^ (e >> 11 | e << 21) ^ (e >> 25 | e << 7)
            let ch = (e & f) ^ (~e & g)
            let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
            let s0 = (a >> 2 | a << 30) ^ (a >> 13 | a << 19) ^ (a >> 22 | a << 10)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ maj
            hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
        }
        h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
    }
}
