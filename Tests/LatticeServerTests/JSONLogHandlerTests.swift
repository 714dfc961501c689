import Foundation
import LatticeServer
import LatticeTestSupport
import Logging
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Log lines are etcd's (zap's JSON encoder): the fields log pipelines for etcd parse, valid
/// JSON whatever the message holds, written to every `--log-outputs` target.
final class JSONLogHandlerTests: XCTestCase {
    func testLinesHaveEtcdsFieldsAndAreValidJSON() throws {
        let line = JSONLogHandler.line(
            level: .warning, timestamp: "2026-12-04T17:47:34.269Z", caller: "LatticeServer/LatticeServer.swift:131",
            message: "a \"quoted\" message\nwith a newline, a tab\t, a backslash \\ and \u{1}",
            metadata: ["name": "site-a", "count": .stringConvertible(3), "ok": .stringConvertible(true),
                       "urls": .array(["http://127.0.0.1:2379", "http://127.0.0.1:2380"]),
                       "nested": .dictionary(["b": "2", "a": .stringConvertible(1.5)])])
        XCTAssertEqual(line.last, UInt8(ascii: "\n"))
        XCTAssertFalse(line.dropLast().contains(UInt8(ascii: "\n")), "one record per line")
        XCTAssertEqual(String(decoding: line, as: UTF8.self), """
            {"level":"warn","ts":"2026-12-04T17:47:34.269Z","caller":"LatticeServer/LatticeServer.swift:131",\
            "msg":"a \\"quoted\\" message\\nwith a newline, a tab\\t, a backslash \\\\ and \\u0001",\
            "count":3,"name":"site-a","nested":{"a":1.5,"b":"2"},"ok":true,"urls":["http://127.0.0.1:2379","http://127.0.0.1:2380"]}

            """)
        let decoded = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any]
        XCTAssertEqual(decoded?["msg"] as? String, "a \"quoted\" message\nwith a newline, a tab\t, a backslash \\ and \u{1}")
    }

    func testEveryOutputGetsEachLineAndAnUnopenableFileIsEtcdsError() throws {
        let dirs = TemporaryDirectories(prefix: "lattice-log")
        defer { dirs.removeAll() }
        let dir = dirs.make()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let outputs = try LogOutputs("\(dir)/a.log, \(dir)/b.log")
        var logger = Logger(label: "test") { _ in JSONLogHandler(outputs: outputs, level: .info) }
        logger[metadataKey: "member"] = "m1"
        logger.debug("below the level")
        logger.info("ready to serve client requests", metadata: ["name": "default"])
        logger.critical("stopping")
        for file in ["a.log", "b.log"] {
            let text = try String(contentsOfFile: "\(dir)/\(file)", encoding: .utf8)
            let lines = text.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            XCTAssertEqual(lines.count, 2, text)
            XCTAssertEqual(lines.map { $0?["level"] as? String }, ["info", "fatal"])
            XCTAssertEqual(lines.first??["msg"] as? String, "ready to serve client requests")
            XCTAssertEqual(lines.first??["name"] as? String, "default")
            XCTAssertEqual(lines.first??["member"] as? String, "m1")
            XCTAssertTrue((lines.first??["caller"] as? String)?.hasPrefix("LatticeServerTests/JSONLogHandlerTests.swift:") ?? false)
            let ts = lines.first??["ts"] as? String ?? ""
            XCTAssertNotNil(ts.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression), ts)
        }
        XCTAssertThrowsError(try LogOutputs("/nonexistent-dir/x.log")) { error in
            XCTAssertEqual("\(error)", "couldn't open sink \"/nonexistent-dir/x.log\": open /nonexistent-dir/x.log: no such file or directory")
        }
    }
}
