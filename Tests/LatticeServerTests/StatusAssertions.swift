import GRPCWire
import XCTest

/// Runs `body` and asserts that it fails with exactly this gRPC status code and message.
func expectStatus(_ code: GRPCStatus.Code, _ message: String, file: StaticString = #filePath, line: UInt = #line,
                  _ body: () async throws -> Void) async {
    do {
        try await body()
        XCTFail("expected \(code) \(message)", file: file, line: line)
    } catch let status as GRPCStatus {
        XCTAssertEqual(status.code, code, file: file, line: line)
        XCTAssertEqual(status.message, message, file: file, line: line)
    } catch {
        XCTFail("unexpected \(error)", file: file, line: line)
    }
}
