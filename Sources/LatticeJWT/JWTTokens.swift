#if canImport(Glibc)
import Glibc
#endif
import Crypto
import _CryptoExtras
import LatticeCore
import LatticeServer
import LatticeStore

/// etcd's signed auth tokens (`--auth-token jwt,sign-method=…,priv-key=…,pub-key=…,ttl=…`):
/// a JSON Web Token (RFC 7519) with etcd's claims — `username`, `revision` and `exp` — signed
/// with RS/PS/ES/HS 256/384/512. Any member holding the key verifies a token another member
/// issued; nothing is kept in memory.
///
/// One claim is Lattice's own: `pwd`, a digest of the user's password hash at issue (eight bytes
/// of SHA-256 over the bcrypt hash, which reveals nothing about the password). A token is valid
/// while its user exists with that same password hash, so changing a password or deleting a
/// user — on any member — invalidates the user's tokens at once, as it does simple tokens.
/// (etcd reaches a similar end differently: every auth change invalidates every token.)
public final class JWTTokens: AuthTokenProvider {
    public enum Algorithm: String, CaseIterable, Sendable {
        case RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, HS256, HS384, HS512
    }

    /// The keys never change after start-up, and BoringSSL's key objects may be used for
    /// signing and verifying from several threads at once (swift-crypto 3 does not mark them
    /// Sendable on Linux).
    enum Key: @unchecked Sendable {
        case rsa(signing: _RSA.Signing.PrivateKey?, verifying: _RSA.Signing.PublicKey)
        case p256(signing: P256.Signing.PrivateKey?, verifying: P256.Signing.PublicKey)
        case p384(signing: P384.Signing.PrivateKey?, verifying: P384.Signing.PublicKey)
        case p521(signing: P521.Signing.PrivateKey?, verifying: P521.Signing.PublicKey)
        case hmac(SymmetricKey)
    }

    public let algorithm: Algorithm
    /// How long a token is valid after it is issued (etcd's `ttl` option, default 5 minutes).
    public let ttl: Duration
    let key: Key
    /// Seconds since the Unix epoch.
    let now: @Sendable () -> Int64
    /// The encoded header, the same for every token of this algorithm.
    private let header: String

    /// Whether this member can only verify tokens (it was given a public key alone): Authenticate
    /// fails here, tokens issued by a member with the private key are accepted.
    public var verifyOnly: Bool {
        switch key {
        case .rsa(let s, _): return s == nil
        case .p256(let s, _): return s == nil
        case .p384(let s, _): return s == nil
        case .p521(let s, _): return s == nil
        case .hmac: return false
        }
    }

    /// Keys are PEM text: RSA keys as PKCS #1 or PKCS #8 / SubjectPublicKeyInfo, EC keys as
    /// SEC 1 or PKCS #8 / SubjectPublicKeyInfo on the curve the method names; for HS methods the
    /// private key file's bytes are the secret. With both keys, they must be a pair.
    public init(algorithm: Algorithm, privateKeyPEM: [UInt8]?, publicKeyPEM: [UInt8]?, ttl: Duration = .seconds(300),
                now: @escaping @Sendable () -> Int64 = JWTTokens.unixSeconds) throws(JWTError) {
        self.algorithm = algorithm
        self.ttl = ttl
        self.now = now
        self.header = Base64URL.encode(Array("{\"alg\":\"\(algorithm.rawValue)\",\"typ\":\"JWT\"}".utf8))
        let privateText = privateKeyPEM.map { String(decoding: $0, as: UTF8.self) }
        let publicText = publicKeyPEM.map { String(decoding: $0, as: UTF8.self) }
        switch algorithm {
        case .RS256, .RS384, .RS512, .PS256, .PS384, .PS512:
            // etcd accepts RSA keys of any size; so does this (1024 bits and up).
            let (signing, verifying) = try Self.pair(algorithm, privateText, publicText,
                                                     { try _RSA.Signing.PrivateKey(unsafePEMRepresentation: $0) },
                                                     { try _RSA.Signing.PublicKey(unsafePEMRepresentation: $0) },
                                                     \.publicKey, { $0.derRepresentation == $1.derRepresentation })
            key = .rsa(signing: signing, verifying: verifying)
        case .ES256:
            let (signing, verifying) = try Self.pair(algorithm, privateText, publicText,
                                                     { try P256.Signing.PrivateKey(pemRepresentation: $0) },
                                                     { try P256.Signing.PublicKey(pemRepresentation: $0) },
                                                     \.publicKey, { $0.rawRepresentation == $1.rawRepresentation })
            key = .p256(signing: signing, verifying: verifying)
        case .ES384:
            let (signing, verifying) = try Self.pair(algorithm, privateText, publicText,
                                                     { try P384.Signing.PrivateKey(pemRepresentation: $0) },
                                                     { try P384.Signing.PublicKey(pemRepresentation: $0) },
                                                     \.publicKey, { $0.rawRepresentation == $1.rawRepresentation })
            key = .p384(signing: signing, verifying: verifying)
        case .ES512:
            let (signing, verifying) = try Self.pair(algorithm, privateText, publicText,
                                                     { try P521.Signing.PrivateKey(pemRepresentation: $0) },
                                                     { try P521.Signing.PublicKey(pemRepresentation: $0) },
                                                     \.publicKey, { $0.rawRepresentation == $1.rawRepresentation })
            key = .p521(signing: signing, verifying: verifying)
        case .HS256, .HS384, .HS512:
            guard let secret = privateKeyPEM, !secret.isEmpty else { throw JWTError.missingKey }
            key = .hmac(SymmetricKey(data: secret))
        }
    }

    /// The signing key (nil: verify only) and the verifying key of an asymmetric method: the
    /// public key given, else the private key's; with both, they must be a pair.
    private static func pair<Signing, Verifying>(
        _ algorithm: Algorithm, _ privateText: String?, _ publicText: String?,
        _ parseSigning: (String) throws -> Signing, _ parseVerifying: (String) throws -> Verifying,
        _ publicKey: (Signing) -> Verifying, _ same: (Verifying, Verifying) -> Bool
    ) throws(JWTError) -> (Signing?, Verifying) {
        func load<T>(_ what: String, _ text: String?, _ parse: (String) throws -> T) throws(JWTError) -> T? {
            guard let text else { return nil }
            do { return try parse(text) } catch { throw JWTError("cannot read the JWT \(what) for \(algorithm.rawValue): \(error)") }
        }
        let signing = try load("private key", privateText, parseSigning)
        let given = try load("public key", publicText, parseVerifying)
        guard let verifying = given ?? signing.map(publicKey) else { throw JWTError.missingKey }
        if let signing, !same(publicKey(signing), verifying) { throw JWTError.keyMismatch }
        return (signing, verifying)
    }

    /// etcd's option list after `jwt,`: `sign-method` (required), `priv-key` and `pub-key`
    /// (files), `ttl` (a duration in nanoseconds, parsed by the caller). Unknown options are
    /// ignored, as etcd ignores them (it warns).
    public convenience init(options: [String: String], ttlNanoseconds: Int64?, readFile: (String) throws -> [UInt8]) throws(JWTError) {
        guard let method = options["sign-method"], let algorithm = Algorithm(rawValue: method) else {
            throw JWTError("auth: invalid auth signature method \"\(options["sign-method"] ?? "")\" (one of \(Algorithm.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        func read(_ option: String) throws(JWTError) -> [UInt8]? {
            guard let path = options[option], !path.isEmpty else { return nil }
            do { return try readFile(path) } catch { throw JWTError("cannot read \(option) \(path): \(error)") }
        }
        let ttl: Duration = ttlNanoseconds.map { .nanoseconds($0) } ?? .seconds(300)
        guard ttl > .zero else { throw JWTError("the JWT ttl must be positive") }
        try self.init(algorithm: algorithm, privateKeyPEM: try read("priv-key"), publicKeyPEM: try read("pub-key"), ttl: ttl)
    }

    @Sendable public static func unixSeconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }

    public func issue(for user: String, in state: AuthState) throws(EtcdError) -> String {
        let passwordHash = state.users[user]?.passwordHash ?? ""
        let revision = state.revision
        let seconds = ttl.components.seconds + (ttl.components.attoseconds > 0 ? 1 : 0)
        let claims: JSONValue = .object([
            Array("username".utf8): .string(Array(user.utf8)),
            Array("revision".utf8): .number(literal: Array(String(revision).utf8)),
            Array("exp".utf8): .number(literal: Array(String(now() + seconds).utf8)),
            Array("pwd".utf8): .string(Array(Self.passwordDigest(passwordHash).utf8)),
        ])
        let signingInput = header + "." + Base64URL.encode(claims.canonicalBytes())
        guard let signature = sign(Array(signingInput.utf8)) else { throw .verifyOnly }
        return signingInput + "." + Base64URL.encode(signature)
    }

    public func user(of token: String, in state: AuthState) -> String? {
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3,
              let headerBytes = Base64URL.decode(parts[0]),
              case .object(let header)? = try? JSONValue(parsing: headerBytes),
              // Only this member's algorithm: a token naming another ("none", or HS256 signed
              // with a public key as the secret) is refused before any signature check.
              header[Array("alg".utf8)] == .string(Array(algorithm.rawValue.utf8)),
              let signature = Base64URL.decode(parts[2]),
              verify(signature, over: Array(token.utf8.prefix(parts[0].count + 1 + parts[1].count))),
              let payload = Base64URL.decode(parts[1]),
              case .object(let claims)? = try? JSONValue(parsing: payload),
              case .string(let name)? = claims[Array("username".utf8)],
              case .number(let expLiteral)? = claims[Array("exp".utf8)],
              let exp = Int64(String(decoding: expLiteral, as: UTF8.self)), now() < exp
        else { return nil }
        let user = String(decoding: name, as: UTF8.self)
        guard let current = state.users[user],
              claims[Array("pwd".utf8)] == .string(Array(Self.passwordDigest(current.passwordHash).utf8))
        else { return nil }
        return user
    }

    public func removeAll() {}

    static func passwordDigest(_ passwordHash: String) -> String {
        Base64URL.encode(Array(Crypto.SHA256.hash(data: Array(passwordHash.utf8)).prefix(8)))
    }

    private func sign(_ input: [UInt8]) -> [UInt8]? {
        do {
            switch (key, algorithm) {
            case (.rsa(let signing?, _), _):
                let padding: _RSA.Signing.Padding = isPSS ? .PSS : .insecurePKCS1v1_5
                switch algorithm {
                case .RS384, .PS384: return Array(try signing.signature(for: SHA384.hash(data: input), padding: padding).rawRepresentation)
                case .RS512, .PS512: return Array(try signing.signature(for: SHA512.hash(data: input), padding: padding).rawRepresentation)
                default: return Array(try signing.signature(for: Crypto.SHA256.hash(data: input), padding: padding).rawRepresentation)
                }
            case (.p256(let signing?, _), _): return Array(try signing.signature(for: input).rawRepresentation)
            case (.p384(let signing?, _), _): return Array(try signing.signature(for: input).rawRepresentation)
            case (.p521(let signing?, _), _): return Array(try signing.signature(for: input).rawRepresentation)
            case (.hmac(let secret), .HS384): return Array(HMAC<SHA384>.authenticationCode(for: input, using: secret))
            case (.hmac(let secret), .HS512): return Array(HMAC<SHA512>.authenticationCode(for: input, using: secret))
            case (.hmac(let secret), _): return Array(HMAC<Crypto.SHA256>.authenticationCode(for: input, using: secret))
            default: return nil
            }
        } catch {
            return nil
        }
    }

    private func verify(_ signature: [UInt8], over input: [UInt8]) -> Bool {
        switch key {
        case .rsa(_, let verifying):
            let padding: _RSA.Signing.Padding = isPSS ? .PSS : .insecurePKCS1v1_5
            let s = _RSA.Signing.RSASignature(rawRepresentation: signature)
            switch algorithm {
            case .RS384, .PS384: return verifying.isValidSignature(s, for: SHA384.hash(data: input), padding: padding)
            case .RS512, .PS512: return verifying.isValidSignature(s, for: SHA512.hash(data: input), padding: padding)
            default: return verifying.isValidSignature(s, for: Crypto.SHA256.hash(data: input), padding: padding)
            }
        case .p256(_, let verifying):
            guard let s = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return verifying.isValidSignature(s, for: input)
        case .p384(_, let verifying):
            guard let s = try? P384.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return verifying.isValidSignature(s, for: input)
        case .p521(_, let verifying):
            guard let s = try? P521.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return verifying.isValidSignature(s, for: input)
        case .hmac(let secret):
            switch algorithm {
            case .HS384: return HMAC<SHA384>.isValidAuthenticationCode(signature, authenticating: input, using: secret)
            case .HS512: return HMAC<SHA512>.isValidAuthenticationCode(signature, authenticating: input, using: secret)
            default: return HMAC<Crypto.SHA256>.isValidAuthenticationCode(signature, authenticating: input, using: secret)
            }
        }
    }

    private var isPSS: Bool { [.PS256, .PS384, .PS512].contains(algorithm) }
}

/// A JWT configuration that cannot be used; the text says what and why.
public struct JWTError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }

    static let missingKey = JWTError("auth: missing key data (a JWT method needs priv-key, or pub-key to verify only; HS methods need priv-key)")
    static let keyMismatch = JWTError("auth: public and private keys don't match")
}

/// Base64 with the URL alphabet and no padding (RFC 4648 §5), as JWTs are written.
enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let values: [Int8] = {
        var v = [Int8](repeating: -1, count: 256)
        for (i, c) in alphabet.enumerated() { v[Int(c)] = Int8(i) }
        return v
    }()

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var i = 0
        while i + 2 < bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            i += 3
        }
        if bytes.count - i == 1 {
            let n = UInt32(bytes[i]) << 16
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)]]
        } else if bytes.count - i == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [alphabet[Int(n >> 18)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)]]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// nil for characters outside the alphabet, padding, or a length no encoding has.
    static func decode<C: Collection>(_ text: C) -> [UInt8]? where C.Element == UInt8 {
        guard text.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count * 3 / 4)
        var acc: UInt32 = 0
        var bits = 0
        for c in text {
            let v = values[Int(c)]
            guard v >= 0 else { return nil }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        // The leftover bits must be zero, or two texts would decode to the same bytes.
        guard acc & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return out
    }
}
