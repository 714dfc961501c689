@testable import GRPCWire
import NIOHPACK
import XCTest

/// The request header checks etcd's transport makes (and the ones it does not), and grpc-go's
/// reading of a call's path. The same cases run against the real etcd 3.5.1 in
/// `scripts/e2e/grpc_differential.py`.
final class RequestHeaderBlockTests: XCTestCase {
    private let good: [(String, String)] = [
        (":method", "POST"), (":scheme", "http"), (":path", "/etcdserverpb.KV/Range"), (":authority", "localhost"),
        ("te", "trailers"), ("content-type", "application/grpc"),
    ]

    private func wellFormed(_ fields: [(String, String)]) -> Bool {
        RequestHeaderBlock.isWellFormed(HPACKHeaders(fields))
    }

    func testBlocksEtcdServesAreWellFormed() {
        XCTAssertTrue(wellFormed(good))
        XCTAssertTrue(wellFormed(good.filter { $0.0 != ":scheme" }), "no :scheme")
        XCTAssertTrue(wellFormed(good.filter { $0.0 != ":authority" }), "no :authority")
        for forbiddenBySpecButServed in ["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"] {
            XCTAssertTrue(wellFormed(good + [(forbiddenBySpecButServed, "x")]), forbiddenBySpecButServed)
        }
        XCTAssertTrue(wellFormed(good.map { $0.0 == "te" ? ("te", "gzip") : $0 }), "te other than trailers")
        XCTAssertTrue(wellFormed(good + [("x-value", " a\tb ")]), "tab and surrounding spaces in a value")
        XCTAssertTrue(wellFormed(good + [("x-value", "café")]), "bytes above 0x7f in a value")
        XCTAssertTrue(wellFormed(good + [("x-token!#$%&'*+-.^_`|~09", "v")]), "every token character in a name")
    }

    func testMalformedBlocksAreRefused() {
        let cases: [(String, [(String, String)])] = [
            ("upper-case name", good + [("X-Upper", "v")]),
            ("space in a name", good + [("x bad", "v")]),
            ("non-ASCII name", good + [("x-é", "v")]),
            ("empty name", good + [("", "v")]),
            ("pseudo-header after a regular one", good.filter { $0.0 != ":authority" } + [(":authority", "other")]),
            ("unknown pseudo-header", [(":foo", "bar")] + good),
            ("response pseudo-header", [(":status", "200")] + good),
            ("duplicate pseudo-header", [(":path", "/a/b")] + good),
            ("line feed in a value", good + [("x-value", "a\nb")]),
            ("carriage return in a value", good + [("x-value", "a\rb")]),
            ("NUL in a value", good + [("x-value", "a\u{0}b")]),
            ("DEL in a value", good + [("x-value", "a\u{7F}b")]),
            ("control character in a pseudo-header", good.map { $0.0 == ":path" ? (":path", "/a\u{1}/b") : $0 }),
        ]
        for (name, block) in cases {
            XCTAssertFalse(wellFormed(block), name)
        }
    }

    func testMethodPathsAreReadAsGrpcGoReadsThem() {
        let services: Set<String> = ["etcdserverpb.KV"]
        func status(_ path: String) -> GRPCStatus { GRPCMethodPath.unservedStatus(path, services: services) }
        XCTAssertEqual(status("/etcdserverpb.KV/Nope").message, "unknown method Nope for service etcdserverpb.KV")
        XCTAssertEqual(status("/etcdserverpb.KV/").message, "unknown method  for service etcdserverpb.KV")
        XCTAssertEqual(status("/etcdserverpb.KV/Range/x").message, "unknown service etcdserverpb.KV/Range")
        XCTAssertEqual(status("//Range").message, "unknown service ")
        XCTAssertEqual(status("/other.Service/X").code, .unimplemented)
        for malformed in ["", "/", "/etcdserverpb.KV", "noslash"] {
            XCTAssertEqual(status(malformed).code, .resourceExhausted, malformed)
        }
        XCTAssertEqual(status("").message, #"malformed method name: """#)
        XCTAssertEqual(status("/etcdserverpb.KV").message, #"malformed method name: "/etcdserverpb.KV""#)
        XCTAssertEqual(GRPCMethodPath.goQuoted("a\"b\\c\td\u{1}é"), #""a\"b\\c\td\x01é""#)
    }
}
