import XCTest
import LatticeCore

/// Known answers from an independent implementation (PyPI `bcrypt` 5.0.0:
/// `bcrypt.hashpw(password, b"$2a$04$" + salt)`) and from golang.org/x/crypto/bcrypt's own tests.
final class BCryptTests: XCTestCase {
    static let sequentialSalt: [UInt8] = Array(0..<16)                        // "..CA.uOD/eaGAOmJB.yMBu"
    static let onesSalt = [UInt8](repeating: 0xFF, count: 16)                  // "999999999999999999999u"
    static let goSalt: [UInt8] = [101, 201, 101, 75, 19, 227, 199, 20, 239, 236, 133, 32, 30, 109, 243, 30]
    static let mixedSalt: [UInt8] = [0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE,
                                     0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF] // "CBHSbng41N2/GyTlgYtL5u"
    /// "abcdefghijklmnopqrstuvwxyz" repeated to 72 bytes, the most bcrypt uses.
    static let password72 = (0..<72).map { UInt8(ascii: "a") + UInt8($0 % 26) }

    struct Vector {
        var password: [UInt8]
        var cost: Int
        var salt: [UInt8]
        var hash: String
    }

    static let vectors: [Vector] = [
        Vector(password: [], cost: 4, salt: sequentialSalt,
               hash: "$2a$04$..CA.uOD/eaGAOmJB.yMBuq1wbVgYezarXi1FgOYk1qMNtxVndjJm"),
        Vector(password: [], cost: 5, salt: onesSalt,
               hash: "$2a$05$999999999999999999999u2x1vY2OFo6MuyNyzSJNXQ22JBpMOPh6"),
        Vector(password: Array("password".utf8), cost: 4, salt: sequentialSalt,
               hash: "$2a$04$..CA.uOD/eaGAOmJB.yMBubqEtzdkvfegxfotQ8UAMQWLlq7JbHJW"),
        Vector(password: Array("root".utf8), cost: 5, salt: mixedSalt,
               hash: "$2a$05$CBHSbng41N2/GyTlgYtL5uYsvJGInf7X/OM997SFwPGESbniiVxee"),
        Vector(password: Array("allmine".utf8), cost: 4, salt: goSalt,
               hash: "$2a$04$XajjQvNhvvRt5GSeFk1xFeFSjbRlNk/Ta1yxtAEbNtK1N.ZPZVHUu"),
        Vector(password: Array("U*U".utf8), cost: 5, salt: onesSalt,
               hash: "$2a$05$999999999999999999999upDCEyIboxIz/mH4fRTA/Br5IwvXqyou"),
        Vector(password: Array(password72.prefix(71)), cost: 4, salt: mixedSalt,
               hash: "$2a$04$CBHSbng41N2/GyTlgYtL5uUzDsy4VrvdEMBFQ1aCWd5/u5p19YPsi"),
        Vector(password: password72, cost: 4, salt: mixedSalt,
               hash: "$2a$04$CBHSbng41N2/GyTlgYtL5u1h7891Wc6rqLS2DWwHjnnMSfwJSdniW"),
        Vector(password: Array("pässwörd-密码-🔑".utf8), cost: 4, salt: goSalt,
               hash: "$2a$04$XajjQvNhvvRt5GSeFk1xFeC9qfhcZgC2bKQUrIdNpLDkZ7wfMDR.6"),
        // A NUL byte is part of the password, not its end (as in Go).
        Vector(password: [0] + Array("abc".utf8), cost: 4, salt: sequentialSalt,
               hash: "$2a$04$..CA.uOD/eaGAOmJB.yMBuRNbvfgcECj/PyBOK98vbAIP4Z9ryLjC"),
    ]

    func testKnownAnswers() throws {
        for v in Self.vectors {
            XCTAssertEqual(try BCrypt.hash(password: v.password, cost: v.cost, salt: v.salt), v.hash)
            XCTAssertTrue(BCrypt.verify(password: v.password, hash: v.hash), v.hash)
            XCTAssertEqual(BCrypt.cost(of: v.hash), v.cost)
        }
    }

    func testPasswordsAreTruncatedTo72Bytes() throws {
        let hash72 = "$2a$04$CBHSbng41N2/GyTlgYtL5u1h7891Wc6rqLS2DWwHjnnMSfwJSdniW"
        for longer in [Self.password72 + [UInt8(ascii: "X")], Self.password72 + Self.password72] {
            XCTAssertEqual(try BCrypt.hash(password: longer, cost: 4, salt: Self.mixedSalt), hash72)
            XCTAssertTrue(BCrypt.verify(password: longer, hash: hash72))
        }
        XCTAssertFalse(BCrypt.verify(password: Array(Self.password72.prefix(71)), hash: hash72))
    }

    /// A hash from golang.org/x/crypto/bcrypt's test suite, at etcd's default cost.
    func testVerifiesGoHashAtDefaultCost() {
        let hash = "$2a$10$XajjQvNhvvRt5GSeFk1xFeyqRrsxkhBkUiQeg0dt.wU1qD4aFDcga"
        XCTAssertTrue(BCrypt.verify(password: Array("allmine".utf8), hash: hash))
        XCTAssertEqual(BCrypt.cost(of: hash), 10)
    }

    func testAcceptsAllThreePrefixes() {
        let suffix = "04$..CA.uOD/eaGAOmJB.yMBubqEtzdkvfegxfotQ8UAMQWLlq7JbHJW"
        for prefix in ["$2a$", "$2b$", "$2y$"] {
            XCTAssertTrue(BCrypt.verify(password: Array("password".utf8), hash: prefix + suffix), prefix)
        }
        XCTAssertFalse(BCrypt.verify(password: Array("password".utf8), hash: "$2x$" + suffix))
    }

    func testRejectsWrongPassword() {
        let hash = "$2a$04$..CA.uOD/eaGAOmJB.yMBubqEtzdkvfegxfotQ8UAMQWLlq7JbHJW"
        for wrong in ["", "Password", "password ", "passwor"] {
            XCTAssertFalse(BCrypt.verify(password: Array(wrong.utf8), hash: hash), wrong)
        }
        // A changed hash character is a mismatch, not a crash.
        XCTAssertFalse(BCrypt.verify(password: Array("password".utf8),
                                     hash: "$2a$04$..CA.uOD/eaGAOmJB.yMBubqEtzdkvfegxfotQ8UAMQWLlq7JbHJX"))
    }

    func testMalformedHashesAreRejected() {
        let good = "$2a$04$..CA.uOD/eaGAOmJB.yMBubqEtzdkvfegxfotQ8UAMQWLlq7JbHJW"
        /// `good` with its first `prefix.count` characters replaced by `prefix`.
        func patched(_ prefix: String) -> String { prefix + String(good.dropFirst(prefix.count)) }
        let malformed: [String] = [
            "", "$", "$2a$", "$2a$10$fooo", "not a hash",
            String(good.dropLast()),                  // too short
            good + "W",                               // too long
            patched("%2a"),                           // bad prefix
            patched("$3a"),                           // unknown version
            patched("$2a$03"), patched("$2a$32"),     // cost out of range
            patched("$2a$x4"), patched("$2a$-4"),     // cost not two digits
            patched("$2a$04#"),                       // missing separator
            patched("$2a$04$..CA.uOD/eaGAOmJB.y!"),   // bad salt character
            String(good.dropLast()) + "é",            // non-ASCII
        ]
        for hash in malformed {
            XCTAssertFalse(BCrypt.verify(password: Array("password".utf8), hash: hash), hash)
            XCTAssertNil(BCrypt.cost(of: hash), hash)
        }
    }

    func testInvalidArgumentsThrow() {
        XCTAssertThrowsError(try BCrypt.hash(password: [], cost: 3, salt: Self.sequentialSalt)) {
            XCTAssertEqual($0 as? BCryptError, .invalidCost(3))
        }
        XCTAssertThrowsError(try BCrypt.hash(password: [], cost: 32)) {
            XCTAssertEqual($0 as? BCryptError, .invalidCost(32))
        }
        XCTAssertThrowsError(try BCrypt.hash(password: [], cost: 4, salt: Array(0..<15))) {
            XCTAssertEqual($0 as? BCryptError, .invalidSaltLength(15))
        }
    }

    func testRandomSaltRoundTrips() throws {
        let password = Array("s3cret".utf8)
        let first = try BCrypt.hash(password: password, cost: 4)
        let second = try BCrypt.hash(password: password, cost: 4)
        XCTAssertNotEqual(first, second, "each hash gets a fresh salt")
        for hash in [first, second] {
            XCTAssertEqual(hash.utf8.count, 60)
            XCTAssertTrue(hash.hasPrefix("$2a$04$"))
            XCTAssertTrue(BCrypt.verify(password: password, hash: hash))
            XCTAssertFalse(BCrypt.verify(password: Array("s3cret!".utf8), hash: hash))
            XCTAssertEqual(BCrypt.cost(of: hash), 4)
        }
    }
}
