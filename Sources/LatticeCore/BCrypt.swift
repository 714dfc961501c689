/// bcrypt password hashing (Provos and Mazières, "A Future-Adaptable Password Scheme", 1999),
/// compatible with golang.org/x/crypto/bcrypt, which etcd uses to store user passwords: a hash
/// made by etcd verifies here and one made here verifies in etcd.
///
/// A hash is 60 ASCII characters, `$2a$CC$` + 22 characters of salt + 31 of hash, where `CC` is
/// the two-digit cost (log2 of the key schedule's rounds) and salt and hash are in bcrypt's own
/// unpadded base64 alphabet. As in Go and OpenBSD:
/// - the key is the password's first 72 bytes followed by a NUL byte, cycled; longer passwords
///   are truncated, so two passwords that share their first 72 bytes have the same hash;
/// - `$2a$`, `$2b$` and `$2y$` hashes are computed the same way (they differ only in bugs of
///   other implementations that Go never had), so all three verify; new hashes use `$2a$`;
/// - the 16 salt bytes are decoded leniently (unused bits of the last character are ignored),
///   and only 23 of the 24 bytes of the final ciphertext are encoded.
///
/// The work grows as 2^cost: cost 10 (etcd's default) is 1,024 rounds of two full Blowfish key
/// schedules. A hash's cost is trusted as stored, so verifying a hash with a huge cost is slow.
public enum BCrypt {
    /// The range of costs Go accepts.
    public static let costs = 4...31
    /// Salt length in bytes.
    public static let saltLength = 16
    /// Password bytes beyond this many do not affect the hash.
    public static let maxPasswordLength = 72

    /// The hash of `password` with the given cost and 16-byte salt, as `$2a$CC$<salt><hash>`.
    public static func hash(password: [UInt8], cost: Int, salt: [UInt8]) throws -> String {
        guard costs.contains(cost) else { throw BCryptError.invalidCost(cost) }
        guard salt.count == saltLength else { throw BCryptError.invalidSaltLength(salt.count) }
        var out = Array("$2a$".utf8)
        out.append(UInt8(ascii: "0") + UInt8(cost / 10))
        out.append(UInt8(ascii: "0") + UInt8(cost % 10))
        out.append(UInt8(ascii: "$"))
        out += encode(salt)
        out += encode(eksBlowfishHash(password: password, cost: cost, salt: salt))
        return String(decoding: out, as: UTF8.self)
    }

    /// The hash of `password` with the given cost and a fresh random salt.
    public static func hash(password: [UInt8], cost: Int) throws -> String {
        var rng = SystemRandomNumberGenerator()
        var salt = [UInt8](repeating: 0, count: saltLength)
        for i in 0..<saltLength {
            salt[i] = UInt8.random(in: .min ... .max, using: &rng)
        }
        return try hash(password: password, cost: cost, salt: salt)
    }

    /// Whether `password` hashes to `hash`. A malformed hash never matches. The computed hash is
    /// compared in constant time, so timing does not reveal how much of it matched.
    public static func verify(password: [UInt8], hash: String) -> Bool {
        guard let parsed = try? parse(hash) else { return false }
        let computed = encode(eksBlowfishHash(password: password, cost: parsed.cost, salt: parsed.salt))
        guard computed.count == parsed.hash.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<computed.count {
            difference |= computed[i] ^ parsed.hash[i]
        }
        return difference == 0
    }

    /// The cost recorded in `hash`, or nil if it is not a well-formed bcrypt hash.
    public static func cost(of hash: String) -> Int? {
        try? parse(hash).cost
    }

    /// The parts of a hash string: its cost, decoded salt and the 31 encoded hash characters.
    static func parse(_ hash: String) throws -> (cost: Int, salt: [UInt8], hash: [UInt8]) {
        let bytes = Array(hash.utf8)
        guard bytes.count == 60, bytes[0] == UInt8(ascii: "$"), bytes[1] == UInt8(ascii: "2"),
              [UInt8(ascii: "a"), UInt8(ascii: "b"), UInt8(ascii: "y")].contains(bytes[2]),
              bytes[3] == UInt8(ascii: "$"), bytes[6] == UInt8(ascii: "$") else {
            throw BCryptError.malformedHash
        }
        let zero = UInt8(ascii: "0"), nine = UInt8(ascii: "9")
        guard (zero...nine).contains(bytes[4]), (zero...nine).contains(bytes[5]) else {
            throw BCryptError.malformedHash
        }
        let cost = Int(bytes[4] - zero) * 10 + Int(bytes[5] - zero)
        guard costs.contains(cost) else { throw BCryptError.invalidCost(cost) }
        guard let salt = decode(bytes[7..<29], count: saltLength) else { throw BCryptError.malformedHash }
        return (cost, salt, Array(bytes[29..<60]))
    }

    // MARK: - EksBlowfish

    // Layout of the working buffer: the Blowfish state (P-array, then S-boxes 0 to 3, so that
    // re-keying fills it front to back in one pass), then the key and salt as the 18 words each
    // that are XORed into the P-array.
    private static let sBoxes = 18
    private static let stateWords = 18 + 4 * 256
    private static let keyWords = stateWords
    private static let saltWords = stateWords + 18
    private static let bufferWords = stateWords + 36

    /// Blowfish's initial state followed by zeroed room for the key and salt words.
    private static let initialBuffer: [UInt32] =
        blowfishInitialP + blowfishInitialS0 + blowfishInitialS1 + blowfishInitialS2 + blowfishInitialS3
        + [UInt32](repeating: 0, count: 36)

    /// "OrpheanBeholderScryDoubt" as big-endian words: the plaintext bcrypt encrypts.
    private static let magic: [UInt32] = [0x4F72_7068, 0x6561_6E42, 0x6568_6F6C, 0x6465_7253, 0x6372_7944, 0x6F75_6274]

    /// The 23 raw hash bytes: EksBlowfish set-up with 2^cost rounds, then "OrpheanBeholderScryDoubt"
    /// encrypted 64 times. `cost` and the salt's length have been checked by the caller.
    static func eksBlowfishHash(password: [UInt8], cost: Int, salt: [UInt8]) -> [UInt8] {
        let key = Array(password.prefix(maxPasswordLength)) + [0]
        var buffer = initialBuffer
        var text = magic
        buffer.withUnsafeMutableBufferPointer { buf in
            let st = buf.baseAddress!
            // The key and salt as they are XORed into the P-array: bytes cycled into 18
            // big-endian words (the salt's 16 bytes are 4 words, so its first 4 repeat).
            var k = 0
            for i in 0..<18 {
                var word: UInt32 = 0
                for _ in 0..<4 {
                    word = word << 8 | UInt32(key[k])
                    k = k + 1 == key.count ? 0 : k + 1
                }
                st[keyWords + i] = word
            }
            for i in 0..<18 {
                let j = (i & 3) * 4
                st[saltWords + i] = UInt32(salt[j]) << 24 | UInt32(salt[j + 1]) << 16
                    | UInt32(salt[j + 2]) << 8 | UInt32(salt[j + 3])
            }

            expandKeyWithSalt(st)
            var rounds = UInt64(1) << UInt64(cost)
            while rounds > 0 {
                expandKey(st, key: st + keyWords)
                expandKey(st, key: st + saltWords)
                rounds -= 1
            }

            for block in stride(from: 0, to: 6, by: 2) {
                var l = text[block], r = text[block + 1]
                for _ in 0..<64 {
                    encrypt(&l, &r, st)
                }
                text[block] = l
                text[block + 1] = r
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(24)
        for word in text {
            out += [UInt8(word >> 24), UInt8(truncatingIfNeeded: word >> 16),
                    UInt8(truncatingIfNeeded: word >> 8), UInt8(truncatingIfNeeded: word)]
        }
        return Array(out.prefix(23))
    }

    /// The salted key schedule that starts EksBlowfish: XOR the key into the P-array, then
    /// replace the state two words at a time with the encryption of the previous block XOR the
    /// next two salt words.
    @inline(__always)
    private static func expandKeyWithSalt(_ st: UnsafeMutablePointer<UInt32>) {
        for i in 0..<18 {
            st[i] ^= st[keyWords + i]
        }
        let salt = st + saltWords
        var l: UInt32 = 0, r: UInt32 = 0
        var i = 0
        while i < stateWords {
            l ^= salt[i & 3]
            r ^= salt[(i + 1) & 3]
            encrypt(&l, &r, st)
            st[i] = l
            st[i + 1] = r
            i += 2
        }
    }

    /// Blowfish's own key schedule, run on the current state: XOR the 18 key words into the
    /// P-array, then replace the state two words at a time with the chained encryption of zero.
    @inline(__always)
    private static func expandKey(_ st: UnsafeMutablePointer<UInt32>, key: UnsafeMutablePointer<UInt32>) {
        for i in 0..<18 {
            st[i] ^= key[i]
        }
        var l: UInt32 = 0, r: UInt32 = 0
        var i = 0
        while i < stateWords {
            encrypt(&l, &r, st)
            st[i] = l
            st[i + 1] = r
            i += 2
        }
    }

    /// Blowfish's round function on the current S-boxes.
    @inline(__always)
    private static func f(_ x: UInt32, _ st: UnsafeMutablePointer<UInt32>) -> UInt32 {
        let a = st[sBoxes + Int(truncatingIfNeeded: x >> 24)]
        let b = st[sBoxes + 256 + Int(truncatingIfNeeded: (x >> 16) & 0xFF)]
        let c = st[sBoxes + 512 + Int(truncatingIfNeeded: (x >> 8) & 0xFF)]
        let d = st[sBoxes + 768 + Int(truncatingIfNeeded: x & 0xFF)]
        return ((a &+ b) ^ c) &+ d
    }

    /// Encrypts one 64-bit block (`l` is its high word) in place: 16 Feistel rounds.
    @inline(__always)
    private static func encrypt(_ l: inout UInt32, _ r: inout UInt32, _ st: UnsafeMutablePointer<UInt32>) {
        var xl = l ^ st[0]
        var xr = r
        xr ^= f(xl, st) ^ st[1]
        xl ^= f(xr, st) ^ st[2]
        xr ^= f(xl, st) ^ st[3]
        xl ^= f(xr, st) ^ st[4]
        xr ^= f(xl, st) ^ st[5]
        xl ^= f(xr, st) ^ st[6]
        xr ^= f(xl, st) ^ st[7]
        xl ^= f(xr, st) ^ st[8]
        xr ^= f(xl, st) ^ st[9]
        xl ^= f(xr, st) ^ st[10]
        xr ^= f(xl, st) ^ st[11]
        xl ^= f(xr, st) ^ st[12]
        xr ^= f(xl, st) ^ st[13]
        xl ^= f(xr, st) ^ st[14]
        xr ^= f(xl, st) ^ st[15]
        xl ^= f(xr, st) ^ st[16]
        l = xr ^ st[17]
        r = xl
    }

    // MARK: - bcrypt's base64

    private static let alphabet = Array("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)

    /// Each alphabet character's 6-bit value; 0xFF for every other byte.
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, char) in alphabet.enumerated() {
            table[Int(char)] = UInt8(value)
        }
        return table
    }()

    /// Standard base64 bit order with bcrypt's alphabet and no padding (16 bytes → 22 characters,
    /// 23 → 31).
    static func encode(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var i = 0
        while i < bytes.count {
            let b0 = UInt32(bytes[i])
            let b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0
            let b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
            let group = b0 << 16 | b1 << 8 | b2
            let chars = min(4, (bytes.count - i) + 1)
            for c in 0..<chars {
                out.append(alphabet[Int((group >> (18 - 6 * UInt32(c))) & 0x3F)])
            }
            i += 3
        }
        return out
    }

    /// The `count` bytes encoded by `chars`, or nil if `chars` is not exactly their encoding's
    /// length or holds a byte outside the alphabet. Bits of the last character beyond the last
    /// byte are ignored, as Go's decoder does.
    static func decode(_ chars: ArraySlice<UInt8>, count: Int) -> [UInt8]? {
        guard chars.count == (count * 4 + 2) / 3 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(count)
        var accumulator: UInt32 = 0
        var bits = 0
        for char in chars {
            let value = values[Int(char)]
            guard value != 0xFF else { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                if out.count < count {
                    out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
                }
                accumulator &= (1 << UInt32(bits)) - 1
            }
        }
        return out.count == count ? out : nil
    }
}

/// Why a bcrypt hash could not be computed or parsed.
public enum BCryptError: Error, Equatable, Sendable {
    /// The cost is outside `BCrypt.costs` (4...31).
    case invalidCost(Int)
    /// The salt is not `BCrypt.saltLength` (16) bytes long.
    case invalidSaltLength(Int)
    /// The string is not `$2a$`, `$2b$` or `$2y$`, a two-digit cost, `$`, 22 salt characters
    /// and 31 hash characters.
    case malformedHash
}
