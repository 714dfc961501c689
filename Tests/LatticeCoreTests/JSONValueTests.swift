import LatticeTestSupport
import XCTest
import LatticeCore

final class JSONValueTests: XCTestCase {
    func testNumbersKeepTheirLiteralText() throws {
        let doc = try JSONValue(parsing: #"{"a":1.0,"b":1e3,"c":-0,"d":2.50,"e":6.02E+23,"f":12345678901234567890123}"#)
        XCTAssertEqual(doc.canonicalText, #"{"a":1.0,"b":1e3,"c":-0,"d":2.50,"e":6.02E+23,"f":12345678901234567890123}"#)
        XCTAssertNotEqual(try JSONValue(parsing: "1.0"), try JSONValue(parsing: "1"), "numbers compare by literal text")
    }

    func testCanonicalFormSortsMembersByBytesAndDropsWhitespace() throws {
        let doc = try JSONValue(parsing: " {\n \"b\" : [ 1 , {\"z\":null, \"a\":true} ],\t\"a\":\"x\", \"B\": false } ")
        XCTAssertEqual(doc.canonicalText, #"{"B":false,"a":"x","b":[1,{"a":true,"z":null}]}"#)
        XCTAssertEqual(try JSONValue(parsing: #"{"b":1,"a":2}"#), try JSONValue(parsing: #"{"a":2, "b":1}"#), "member order does not matter")
    }

    func testStringsAreUnescapedAndReEscapedMinimally() throws {
        let doc = try JSONValue(parsing: #"["\u00e9\/\"\\\n\t\u0001", "\ud83d\ude00", "é"]"#)
        XCTAssertEqual(doc.canonicalText, "[\"é/\\\"\\\\\\n\\t\\u0001\",\"😀\",\"é\"]")
        XCTAssertEqual(try JSONValue(parsing: doc.canonicalText), doc)
    }

    func testStringsCompareByBytesNotByUnicodeEquivalence() throws {
        // "é" precomposed vs "e" + combining acute: equal as Swift Strings, different JSON strings.
        let members = JSONValue.parseObject(Array("{\"\u{E9}\":1,\"e\u{301}\":2}".utf8))
        XCTAssertEqual(members?.count, 2)
    }

    func testInvalidJSONIsRejected() {
        let invalid = ["", " ", "{", "{\"a\":}", "{\"a\":1,}", "[1,]", "01", "1.", ".5", "+1", "-", "1e", "1e+",
                       "NaN", "Infinity", "tru", "nul", "'a'", "{a:1}", "{\"a\" 1}", "[1 2]", "{} {}", "\"\\x\"",
                       "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"tab\there\"", "// c\n{}", "{\"a\":1,\"a\":2}",
                       "\"\\u12\"", "\u{FEFF}{}"]
        for text in invalid {
            XCTAssertThrowsError(try JSONValue(parsing: text), "accepted \(text.debugDescription)")
        }
        let badUTF8: [[UInt8]] = [[0x22, 0xC0, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xF5, 0x80, 0x80, 0x80, 0x22],
                                  [0x22, 0xE2, 0x82, 0x22], [0x22, 0x80, 0x22], [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22]]
        for b in badUTF8 { XCTAssertThrowsError(try JSONValue(parsing: b), "accepted \(b)") }
    }

    func testNestingIsBounded() {
        let deep = String(repeating: "[", count: 300) + String(repeating: "]", count: 300)
        XCTAssertThrowsError(try JSONValue(parsing: deep))
        let fine = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        XCTAssertNoThrow(try JSONValue(parsing: fine))
    }

    func testOnlyObjectsAreMergeable() {
        XCTAssertNotNil(JSONValue.parseObject(bytes(" {} ")))
        for value in ["[1]", "\"s\"", "1", "null", "k8s\0\u{1}\u{2}", "{\"a\":1", ""] {
            XCTAssertNil(JSONValue.parseObject(bytes(value)), value.debugDescription)
        }
    }

    func testCanonicalFormIsAFixpointOnRandomDocuments() throws {
        var rng = SplitMix64(seed: 99)
        for _ in 0..<500 {
            let doc = JSONGenerator.document(&rng, name: "x")
            let written = JSONWriter.write(doc, &rng, pretty: true)
            let parsed = try JSONValue(parsing: written)
            XCTAssertEqual(parsed, doc)
            XCTAssertEqual(try JSONValue(parsing: parsed.canonicalBytes()).canonicalBytes(), parsed.canonicalBytes())
        }
    }
}

final class JSONMergeTests: XCTestCase {
    /// Merges JSON texts: heads lowest priority first.
    private func merge(_ base: String, _ heads: String...) -> String {
        let b = JSONValue.parseObject(bytes(base))!
        let hs = heads.map { JSONValue.parseObject(bytes($0))! }
        return JSONValue.object(JSONMerge.merge(base: b, heads: hs)).canonicalText
    }

    func testDisjointChangesCombine() {
        XCTAssertEqual(merge(#"{"a":1,"b":1}"#, #"{"a":2,"b":1}"#, #"{"a":1,"b":3,"c":4}"#), #"{"a":2,"b":3,"c":4}"#)
    }

    func testDeletionByOneHeadWithTheOtherUnchangedIsKept() {
        XCTAssertEqual(merge(#"{"a":1,"b":1}"#, #"{"b":1}"#, #"{"a":1,"b":2}"#), #"{"b":2}"#)
    }

    func testConflictingScalarsGoToTheWinner() {
        XCTAssertEqual(merge(#"{"a":1}"#, #"{"a":2}"#, #"{"a":3}"#), #"{"a":3}"#)
        XCTAssertEqual(merge(#"{"a":1}"#, #"{"a":2}"#, #"{}"#), #"{}"#, "the winner's deletion wins a conflict")
        XCTAssertEqual(merge(#"{"a":{"x":1}}"#, #"{"a":{"x":2}}"#, #"{}"#), #"{}"#)
        XCTAssertEqual(merge(#"{"a":{"x":1}}"#, #"{}"#, #"{"a":{"x":2}}"#), #"{"a":{"x":2}}"#)
    }

    func testIdenticalChangesAreTakenOnce() {
        XCTAssertEqual(merge(#"{"a":[1]}"#, #"{"a":[1,2]}"#, #"{"a":[1,2]}"#), #"{"a":[1,2]}"#)
    }

    func testNestedObjectsMergeRecursively() {
        XCTAssertEqual(merge(#"{"m":{"l":{"a":"1"}}}"#, #"{"m":{"l":{"a":"1","b":"2"}}}"#, #"{"m":{"l":{"a":"1","c":"3"}},"s":{}}"#),
                       #"{"m":{"l":{"a":"1","b":"2","c":"3"}},"s":{}}"#)
    }

    func testObjectsCreatedOnBothSidesMergeAgainstAnEmptyBase() {
        XCTAssertEqual(merge("{}", #"{"m":{"a":1}}"#, #"{"m":{"b":2}}"#), #"{"m":{"a":1,"b":2}}"#)
    }

    func testArraysMergeAsSequences() {
        // One side inserts at the front, the other appends.
        XCTAssertEqual(merge(#"{"f":["a","b"]}"#, #"{"f":["x","a","b"]}"#, #"{"f":["a","b","y"]}"#), #"{"f":["x","a","b","y"]}"#)
        // One removes, the other appends.
        XCTAssertEqual(merge(#"{"f":["a","b","c"]}"#, #"{"f":["a","c"]}"#, #"{"f":["a","b","c","d"]}"#), #"{"f":["a","c","d"]}"#)
        // Both append at the same place: both kept, the lower side's first.
        XCTAssertEqual(merge(#"{"f":["a"]}"#, #"{"f":["a","x"]}"#, #"{"f":["a","y"]}"#), #"{"f":["a","x","y"]}"#)
        XCTAssertEqual(merge(#"{"f":["a"]}"#, #"{"f":["a","x","z"]}"#, #"{"f":["a","z"]}"#), #"{"f":["a","x","z"]}"#)
        // Both replace the same element differently: the winner's region.
        XCTAssertEqual(merge(#"{"f":["a","b","c"]}"#, #"{"f":["a","B1","c"]}"#, #"{"f":["a","B2","c"]}"#), #"{"f":["a","B2","c"]}"#)
        // Both created the array concurrently.
        XCTAssertEqual(merge("{}", #"{"f":[1]}"#, #"{"f":[2]}"#), #"{"f":[1,2]}"#)
    }

    func testArrayAgainstScalarConflictGoesToTheWinner() {
        XCTAssertEqual(merge(#"{"f":[1]}"#, #"{"f":[1,2]}"#, #"{"f":"none"}"#), #"{"f":"none"}"#)
    }

    func testThreeHeadsMergeInPriorityOrder() {
        XCTAssertEqual(merge(#"{"a":0,"l":[]}"#, #"{"a":1,"l":[1],"x":1}"#, #"{"a":2,"l":[2],"y":1}"#, #"{"a":0,"l":[3],"z":1}"#),
                       #"{"a":2,"l":[1,2,3],"x":1,"y":1,"z":1}"#)
    }

    func testDiff3OnLongArraysStaysBoundedAndDeterministic() {
        // Changes near both ends leave a 2998×2998 middle: above the matching bound, so it is one
        // changed region (taken whole from the side that changed it) instead of a 9M-cell LCS.
        let base = (0..<3000).map { JSONValue.number(literal: bytes(String($0))) }
        var lower = base; lower[1] = .null; lower[2998] = .null
        var higher = base; higher.append(.bool(true))
        let merged = JSONMerge.diff3(base: base, lower: lower, higher: higher)
        XCTAssertEqual(merged, lower + [.bool(true)])
    }
}
