import LatticeTestSupport
import XCTest
import LatticeCore

final class JSONValueTests: XCTestCase {
    func testNumbersKeepTheirLiteralText() throws {
        let doc = try JSONValue(parsing: #"{"a":1.0,"b":1e3,"c":-0,"d":2.50,"e":6.02E+23,"f":12345678901234567890123}"#)
        XCTAssertEqual(doc.canonicalText, #"{"a":1.0,"b":1e3,"c":-0,"d":2.50,"e":6.02E+23,"f":12345678901234567890123}"#)
        // …but compare by decimal value: another way of writing a number is not a conflict.
        for (a, b) in [("1.0", "1"), ("1e0", "1"), ("10e-1", "1"), ("0.00100", "1e-3"), ("-0", "0"), ("0.0", "0e5"), ("2.50", "25E-1")] {
            XCTAssertEqual(try JSONValue(parsing: a), try JSONValue(parsing: b), "\(a) == \(b)")
            XCTAssertEqual(try JSONValue(parsing: a).hashValue, try JSONValue(parsing: b).hashValue, "\(a) hashes like \(b)")
        }
        for (a, b) in [("1", "1.1"), ("1", "-1"), ("10", "1"), ("1e3", "1e-3"), ("12345678901234567890123", "12345678901234567890124")] {
            XCTAssertNotEqual(try JSONValue(parsing: a), try JSONValue(parsing: b), "\(a) != \(b)")
        }
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
    }

    /// As at key level (a put beats a concurrent delete), an edit beats a concurrent removal of
    /// the member or of an object around it, whichever side has priority.
    func testAnEditSurvivesAConcurrentRemoval() {
        XCTAssertEqual(merge(#"{"a":1}"#, #"{"a":2}"#, #"{}"#), #"{"a":2}"#)
        XCTAssertEqual(merge(#"{"a":1}"#, #"{}"#, #"{"a":2}"#), #"{"a":2}"#)
        XCTAssertEqual(merge(#"{"a":{"x":1,"y":1}}"#, #"{"a":{"x":2,"y":1}}"#, #"{}"#), #"{"a":{"x":2,"y":1}}"#)
        XCTAssertEqual(merge(#"{"a":{"x":1,"y":1}}"#, #"{}"#, #"{"a":{"x":1,"y":3}}"#), #"{"a":{"x":1,"y":3}}"#)
        // Removed at one side, left alone at the other: removed.
        XCTAssertEqual(merge(#"{"a":{"x":1},"b":1}"#, #"{"b":1}"#, #"{"a":{"x":1},"b":2}"#), #"{"b":2}"#)
    }

    /// Numbers compare by value: rewriting 1 as 1.0 at one side is no conflict with a change
    /// elsewhere, and a number changed at one side only takes that side's literal.
    func testNumbersWrittenDifferentlyAreNotAConflict() {
        XCTAssertEqual(merge(#"{"n":1,"m":1}"#, #"{"n":1.0,"m":1}"#, #"{"n":1,"m":2}"#), #"{"m":2,"n":1.0}"#)
        XCTAssertEqual(merge(#"{"n":1}"#, #"{"n":1e0}"#, #"{"n":1.0}"#), #"{"n":1e0}"#, "equal everywhere: the lowest-priority literal, the same on every member")
        XCTAssertEqual(merge(#"{"n":1,"m":1}"#, #"{"n":5,"m":1}"#, #"{"n":1.0,"m":2}"#), #"{"m":2,"n":5}"#)
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
        // Both replace the same element differently: as in a sequence CRDT, both removed "b" and
        // both inserted at its place, so both insertions survive.
        XCTAssertEqual(merge(#"{"f":["a","b","c"]}"#, #"{"f":["a","B1","c"]}"#, #"{"f":["a","B2","c"]}"#), #"{"f":["a","B1","B2","c"]}"#)
        // Adjacent edits: one side appends after "y", the other removes "y": both edits.
        XCTAssertEqual(merge(#"{"f":["y"]}"#, #"{"f":["y","x"]}"#, #"{"f":[]}"#), #"{"f":["x"]}"#)
        XCTAssertEqual(merge(#"{"f":["y"]}"#, #"{"f":[]}"#, #"{"f":["y","x"]}"#), #"{"f":["x"]}"#)
        XCTAssertEqual(merge(#"{"f":["a","y","b"]}"#, #"{"f":["a","x","y","b"]}"#, #"{"f":["a","b"]}"#), #"{"f":["a","x","b"]}"#)
        // An element removed at one side stays removed although the other inserted next to it.
        XCTAssertEqual(merge(#"{"f":["a","b","c"]}"#, #"{"f":["a","c"]}"#, #"{"f":["a","b","n","c"]}"#), #"{"f":["a","n","c"]}"#)
    }

    /// Concurrent creations (no common ancestor) merge objects field by field but take arrays
    /// whole from the winner: two pods created at two sites do not get each other's containers.
    func testConcurrentCreationsTakeArraysWholeFromTheWinner() {
        XCTAssertEqual(merge("{}", #"{"f":[1]}"#, #"{"f":[2]}"#), #"{"f":[2]}"#)
        XCTAssertEqual(merge("{}", #"{"spec":{"containers":[{"name":"a"}],"x":1}}"#, #"{"spec":{"containers":[{"name":"b"}],"y":2}}"#),
                       #"{"spec":{"containers":[{"name":"b"}],"x":1,"y":2}}"#)
        // With a common ancestor, both sides adding the same array member keep both elements.
        XCTAssertEqual(merge(#"{"k":1}"#, #"{"k":1,"f":["a"]}"#, #"{"k":1,"f":["b"]}"#), #"{"f":["a","b"],"k":1}"#)
    }

    /// An object edited in place in a list without keys (e.g. `managedFields`) at both sides is
    /// one object with both edits.
    func testObjectsEditedInPlaceInAListMergeFieldByField() {
        XCTAssertEqual(merge(#"{"l":[{"m":"a","t":1,"u":1},{"m":"b"}]}"#, #"{"l":[{"m":"a","t":2,"u":1},{"m":"b"}]}"#, #"{"l":[{"m":"a","t":1,"u":3},{"m":"b"}]}"#),
                       #"{"l":[{"m":"a","t":2,"u":3},{"m":"b"}]}"#)
    }

    /// The same named element added by both sides at different places is kept once; an in-place
    /// merge never pairs an element with a different one that a side kept elsewhere.
    func testElementsAddedByBothSidesAreKeptOnceAndEditsStayWithTheirElement() {
        XCTAssertEqual(merge(#"{"c":[{"name":"a"},{"name":"b"}]}"#, #"{"c":[{"name":"x"},{"name":"a"},{"name":"b"}]}"#,
                             #"{"c":[{"name":"a"},{"name":"x"},{"name":"b"}]}"#),
                       #"{"c":[{"name":"x"},{"name":"a"},{"name":"b"}]}"#)
        // A plain list keeps them as two insertions (as a sequence CRDT does) unless both sides
        // inserted the element at the same place.
        XCTAssertEqual(merge(#"{"f":["a","b"]}"#, #"{"f":["x","a","b"]}"#, #"{"f":["a","x","b"]}"#), #"{"f":["x","a","x","b"]}"#)
        XCTAssertEqual(merge(#"{"f":["a","b"]}"#, #"{"f":["a","x","y","b"]}"#, #"{"f":["a","y","x","b"]}"#), #"{"f":["a","y","x","b"]}"#)
        // Unkeyed objects: A removed "a" and appended "x"; B edited "a" and "b" in place. B's
        // edits stay on their own elements (the edit of "a" survives A's removal).
        XCTAssertEqual(merge(#"{"l":[{"k":"a"},{"k":"b"}]}"#, #"{"l":[{"k":"b"},{"k":"x"}]}"#, #"{"l":[{"k":"a","v":1},{"k":"b","w":2}]}"#),
                       #"{"l":[{"k":"a","v":1},{"k":"b","w":2},{"k":"x"}]}"#)
    }

    /// Large lists added or edited at both sides merge in linear time (a quadratic comparison
    /// of insertions would take hours here).
    func testLargeConcurrentListsMergeWithoutQuadraticWork() {
        let a = (0..<40_000).map { "\($0 * 2)" }.joined(separator: ",")
        let b = (0..<40_000).map { "\($0 * 2 + 1)" }.joined(separator: ",")
        let merged = merge(#"{"k":1}"#, "{\"k\":1,\"l\":[\(a)]}", "{\"k\":1,\"l\":[\(b)]}")
        XCTAssertEqual(merged.count, "{\"k\":1,\"l\":[\(a),\(b)]}".count)
        let named = (0..<20_000).map { "{\"name\":\"n\($0)\"}" }.joined(separator: ",")
        let edited = (0..<20_000).map { "{\"name\":\"n\($0)\",\"x\":1}" }.joined(separator: ",")
        let result = merge("{\"l\":[\(named)]}", #"{"l":[]}"#, "{\"l\":[\(edited)]}")
        XCTAssertEqual(result, canonical("{\"l\":[\(edited)]}"), "every element edited at one side survives its removal at the other")
    }

    /// Kubernetes lists keyed by `name` (`type` for conditions) merge element by element.
    func testKubernetesListsMergeByName() {
        let base = #"{"containers":[{"name":"app","image":"app:1","env":[{"name":"X","value":"0"}]}]}"#
        let a = #"{"containers":[{"name":"app","image":"app:1","env":[{"name":"X","value":"0"},{"name":"A","value":"1"}]}]}"#
        let b = #"{"containers":[{"name":"app","image":"app:2","env":[{"name":"X","value":"0"}]},{"name":"sidecar","image":"proxy:1"}]}"#
        let expected = #"{"containers":[{"env":[{"name":"X","value":"0"},{"name":"A","value":"1"}],"image":"app:2","name":"app"},{"image":"proxy:1","name":"sidecar"}]}"#
        XCTAssertEqual(merge(base, a, b), expected)
        XCTAssertEqual(merge(base, b, a), expected)
        // Conditions by type: two controllers update two conditions.
        let conditions = #"{"conditions":[{"type":"Ready","status":"False"},{"type":"DiskPressure","status":"False"}]}"#
        XCTAssertEqual(merge(conditions, #"{"conditions":[{"type":"Ready","status":"True"},{"type":"DiskPressure","status":"False"}]}"#,
                             #"{"conditions":[{"type":"Ready","status":"False"},{"type":"DiskPressure","status":"True"}]}"#),
                       #"{"conditions":[{"status":"True","type":"Ready"},{"status":"True","type":"DiskPressure"}]}"#)
        // An element removed at one side and edited at the other survives, in its place.
        XCTAssertEqual(merge(#"{"v":[{"name":"a"},{"name":"b","x":1},{"name":"c"}]}"#, #"{"v":[{"name":"a"},{"name":"c"}]}"#,
                             #"{"v":[{"name":"a"},{"name":"b","x":2},{"name":"c"}]}"#),
                       #"{"v":[{"name":"a"},{"name":"b","x":2},{"name":"c"}]}"#)
        // Removed at one side, unchanged at the other: removed.
        XCTAssertEqual(merge(#"{"v":[{"name":"a"},{"name":"b"}]}"#, #"{"v":[{"name":"a"}]}"#, #"{"v":[{"name":"a"},{"name":"b"},{"name":"c"}]}"#),
                       #"{"v":[{"name":"a"},{"name":"c"}]}"#)
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
