import XCTest

/// Histories that once failed the property suite, replayed by seed. Each name says what broke.
final class RegressionTests: XCTestCase {
    /// Restoring a replica re-derived its HLC from the wall clock instead of resuming exactly
    /// where it stopped, so its re-encoded state differed from what it was restored from.
    func testRestartResumesTheClockExactlyWhereItStopped() {
        assertHistoryConverges(seed: 14_759_809_780_509_501_332)
        assertHistoryConverges(seed: 2_484_588_876_927_678_408)
    }

    /// Lease grants were encoded in application order but restored sorted by dot, so states
    /// holding concurrent grants of one lease id did not round-trip byte for byte.
    func testConcurrentGrantsOfOneLeaseEncodeInCanonicalOrder() {
        assertHistoryConverges(seed: 4_759_950_250_400_770_256)
        assertHistoryConverges(seed: 17_225_541_164_765_819_022)
        assertHistoryConverges(seed: 9_366_713_248_957_405_634)
    }
}
