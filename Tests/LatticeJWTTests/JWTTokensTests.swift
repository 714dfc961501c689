import Crypto
import _CryptoExtras
import LatticeCore
import LatticeStore
import Synchronization
import XCTest

@testable import LatticeJWT

final class JWTTokensTests: XCTestCase {
    /// A settable Unix clock.
    final class Clock: Sendable {
        let seconds = Atomic<Int64>(1_800_000_000)
        func read() -> Int64 { seconds.load(ordering: .relaxed) }
        func advance(_ by: Int64) { seconds.add(by, ordering: .relaxed) }
    }

    static let rsaKey = try! _RSA.Signing.PrivateKey(keySize: .bits2048)

    /// (private key PEM, public key PEM) for `algorithm`; HS methods have a secret only.
    static func keys(_ algorithm: JWTTokens.Algorithm) -> (private: [UInt8], public: [UInt8]?) {
        switch algorithm {
        case .RS256, .RS384, .RS512, .PS256, .PS384, .PS512:
            return (Array(rsaKey.pemRepresentation.utf8), Array(rsaKey.publicKey.pemRepresentation.utf8))
        case .ES256:
            let k = P256.Signing.PrivateKey()
            return (Array(k.pemRepresentation.utf8), Array(k.publicKey.pemRepresentation.utf8))
        case .ES384:
            let k = P384.Signing.PrivateKey()
            return (Array(k.pemRepresentation.utf8), Array(k.publicKey.pemRepresentation.utf8))
        case .ES512:
            let k = P521.Signing.PrivateKey()
            return (Array(k.pemRepresentation.utf8), Array(k.publicKey.pemRepresentation.utf8))
        case .HS256, .HS384, .HS512:
            return (Array("a shared secret of some length\n".utf8), nil)
        }
    }

    static func state(_ users: [(String, String)]) -> AuthState {
        var s = AuthState()
        s.enabled = true
        for (name, hash) in users { s.users[name] = AuthUser(name: name, passwordHash: hash, noPassword: false, roles: []) }
        return s
    }

    func decode(_ part: Substring) -> String {
        String(decoding: Base64URL.decode(Array(part.utf8)) ?? [], as: UTF8.self)
    }

    func testEveryMethodSignsTokensThatAMemberWithTheKeyVerifies() throws {
        var state = Self.state([("alice", "$2a$10$hash")])
        state.revision = 7
        for algorithm in JWTTokens.Algorithm.allCases {
            let (priv, pub) = Self.keys(algorithm)
            let issuer = try JWTTokens(algorithm: algorithm, privateKeyPEM: priv, publicKeyPEM: pub)
            let token = try issuer.issue(for: "alice", in: state)
            let parts = token.split(separator: ".", omittingEmptySubsequences: false)
            XCTAssertEqual(parts.count, 3, "\(algorithm)")
            XCTAssertEqual(decode(parts[0]), "{\"alg\":\"\(algorithm.rawValue)\",\"typ\":\"JWT\"}")
            XCTAssertTrue(decode(parts[1]).contains("\"username\":\"alice\""), decode(parts[1]))
            XCTAssertTrue(decode(parts[1]).contains("\"revision\":7"), decode(parts[1]))
            XCTAssertEqual(issuer.user(of: token, in: state), "alice", "\(algorithm)")
            // Another member with the same key files verifies it (nothing is held in memory).
            let other = try JWTTokens(algorithm: algorithm, privateKeyPEM: priv, publicKeyPEM: pub)
            XCTAssertEqual(other.user(of: token, in: state), "alice", "\(algorithm)")
            // A member with the public key only verifies, and cannot issue.
            if let pub {
                let verifier = try JWTTokens(algorithm: algorithm, privateKeyPEM: nil, publicKeyPEM: pub)
                XCTAssertTrue(verifier.verifyOnly)
                XCTAssertEqual(verifier.user(of: token, in: state), "alice", "\(algorithm)")
                XCTAssertThrowsError(try verifier.issue(for: "alice", in: state)) { error in
                    XCTAssertEqual(error as? EtcdError, .verifyOnly)
                }
            }
        }
    }

    func testATokenExpiresItsTTLAfterIssue() throws {
        let clock = Clock()
        let (priv, pub) = Self.keys(.ES256)
        let tokens = try JWTTokens(algorithm: .ES256, privateKeyPEM: priv, publicKeyPEM: pub, ttl: .seconds(60), now: { clock.read() })
        let state = Self.state([("alice", "h")])
        let token = try tokens.issue(for: "alice", in: state)
        clock.advance(59)
        XCTAssertEqual(tokens.user(of: token, in: state), "alice")
        clock.advance(1)
        XCTAssertNil(tokens.user(of: token, in: state), "expired at issue + ttl (use does not renew a JWT)")
    }

    func testAChangedPasswordOrADeletedUserInvalidatesItsTokens() throws {
        let (priv, pub) = Self.keys(.RS256)
        let tokens = try JWTTokens(algorithm: .RS256, privateKeyPEM: priv, publicKeyPEM: pub)
        let token = try tokens.issue(for: "alice", in: Self.state([("alice", "old")]))
        XCTAssertEqual(tokens.user(of: token, in: Self.state([("alice", "old")])), "alice")
        XCTAssertNil(tokens.user(of: token, in: Self.state([("alice", "new")])), "password changed since issue")
        XCTAssertNil(tokens.user(of: token, in: Self.state([("bob", "old")])), "user deleted")
        XCTAssertFalse(token.contains("old"), "the password hash itself is not in the token")
    }

    func testForgedTamperedAndForeignTokensAreRefused() throws {
        let (priv, pub) = Self.keys(.RS256)
        let tokens = try JWTTokens(algorithm: .RS256, privateKeyPEM: priv, publicKeyPEM: pub)
        let state = Self.state([("alice", "h"), ("root", "h")])
        let token = try tokens.issue(for: "alice", in: state)
        let parts = token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)

        // The claims rewritten to name root, the signature kept.
        let forgedClaims = decode(Substring(parts[1])).replacing("alice", with: "root")
        XCTAssertNil(tokens.user(of: [parts[0], Base64URL.encode(Array(forgedClaims.utf8)), parts[2]].joined(separator: "."), in: state))
        // alg "none" with no signature.
        let none = Base64URL.encode(Array("{\"alg\":\"none\",\"typ\":\"JWT\"}".utf8))
        XCTAssertNil(tokens.user(of: [none, parts[1], ""].joined(separator: "."), in: state))
        // HS256 keyed with the (public) RSA key's PEM text: the classic algorithm confusion.
        let hs = Base64URL.encode(Array("{\"alg\":\"HS256\",\"typ\":\"JWT\"}".utf8))
        let input = Array((hs + "." + parts[1]).utf8)
        let mac = HMAC<Crypto.SHA256>.authenticationCode(for: input, using: SymmetricKey(data: pub!))
        XCTAssertNil(tokens.user(of: hs + "." + parts[1] + "." + Base64URL.encode(Array(mac)), in: state))
        // Signed with another key of the same method.
        let stranger = try JWTTokens(algorithm: .RS256, privateKeyPEM: Array(try _RSA.Signing.PrivateKey(keySize: .bits2048).pemRepresentation.utf8),
                                     publicKeyPEM: nil)
        XCTAssertNil(tokens.user(of: try stranger.issue(for: "alice", in: state), in: state))
        // Not a JWT at all, padded base64, a flipped signature bit.
        for junk in ["", "...", "abc", token + ".x", parts[0] + "=." + parts[1] + "." + parts[2], "simpletokenabcde.12"] {
            XCTAssertNil(tokens.user(of: junk, in: state), junk)
        }
        var flipped = Base64URL.decode(Array(parts[2].utf8))!
        flipped[0] ^= 1
        XCTAssertNil(tokens.user(of: parts[0] + "." + parts[1] + "." + Base64URL.encode(flipped), in: state))
    }

    func testConfigurationErrorsAreClear() throws {
        let (priv, pub) = Self.keys(.ES256)
        let (otherPriv, _) = Self.keys(.ES256)
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(message { _ = try JWTTokens(algorithm: .ES256, privateKeyPEM: nil, publicKeyPEM: nil) }.contains("missing key data"))
        XCTAssertTrue(message { _ = try JWTTokens(algorithm: .ES256, privateKeyPEM: otherPriv, publicKeyPEM: pub) }.contains("don't match"))
        XCTAssertTrue(message { _ = try JWTTokens(algorithm: .ES384, privateKeyPEM: priv, publicKeyPEM: nil) }.contains("cannot read the JWT private key"),
                      "a P-256 key for ES384")
        XCTAssertTrue(message { _ = try JWTTokens(algorithm: .RS256, privateKeyPEM: priv, publicKeyPEM: nil) }.contains("cannot read the JWT private key"),
                      "an EC key for RS256")
        XCTAssertTrue(message { _ = try JWTTokens(algorithm: .HS256, privateKeyPEM: [], publicKeyPEM: nil) }.contains("missing key data"))
        let files = ["k": priv]
        func read(_ path: String) throws -> [UInt8] {
            guard let bytes = files[path] else { throw JWTError("no such file") }
            return bytes
        }
        XCTAssertTrue(message { _ = try JWTTokens(options: ["sign-method": "XS256", "priv-key": "k"], ttlNanoseconds: nil, readFile: read) }
            .contains("invalid auth signature method"))
        XCTAssertTrue(message { _ = try JWTTokens(options: ["priv-key": "k"], ttlNanoseconds: nil, readFile: read) }
            .contains("invalid auth signature method"))
        XCTAssertTrue(message { _ = try JWTTokens(options: ["sign-method": "ES256", "priv-key": "missing"], ttlNanoseconds: nil, readFile: read) }
            .contains("cannot read priv-key missing"))
        let tokens = try JWTTokens(options: ["sign-method": "ES256", "priv-key": "k", "ttl": "10m"], ttlNanoseconds: 600_000_000_000, readFile: read)
        XCTAssertEqual(tokens.ttl, .seconds(600))
        XCTAssertEqual(try JWTTokens(options: ["sign-method": "ES256", "priv-key": "k"], ttlNanoseconds: nil, readFile: read).ttl, .seconds(300),
                       "etcd's default: five minutes")
    }

    func testBase64URLRoundTripsAndRejectsNonCanonicalText() {
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            XCTAssertEqual(Base64URL.decode(Array(Base64URL.encode(bytes).utf8)), bytes)
        }
        XCTAssertEqual(Base64URL.encode(Array("\u{FB}\u{FF}".utf8)), "w7vDvw")
        XCTAssertNil(Base64URL.decode(Array("A".utf8)), "no encoding has a length of 1 mod 4")
        XCTAssertNil(Base64URL.decode(Array("AB".utf8)), "leftover bits must be zero")
        XCTAssertNil(Base64URL.decode(Array("ab+/".utf8)), "the standard alphabet's + and / are not URL-safe")
    }
}
