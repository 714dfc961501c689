import XCTest
import LatticeTestSupport
@testable import LatticeStorage

/// Seeded simulations of what a power loss or a bit flip leaves on disk. A failing seed is
/// printed in the assertion message; add it as a regression test.
final class WALCrashSimulationTests: StorageTestCase {
    /// Random batches, then a power loss during the last one: each 512-byte sector of that batch
    /// independently reached the disk or still holds its old content (zeros after the durable
    /// data). Recovery never throws, keeps every earlier batch and the last one whole or not at
    /// all.
    func testPowerLossDuringTheLastBatchKeepsEveryEarlierBatch() throws {
        for seed in 1...150 {
            var random = SplitMix64(seed: UInt64(seed))
            let walDir = path("wal-\(seed)")
            let segmentBytes = 16384
            let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: segmentBytes, fsync: false)
            var durable: [WALEntry] = []
            var last: [WALEntry] = []
            for b in 0..<Int(random.next(upTo: 12) + 1) {
                let batch = (0...random.next(upTo: 5)).map { _ in randomEntry(&random) }
                try log.append(batch)
                if b > 0 { durable += last }
                last = batch
            }
            let segment = log.segmentPaths.last!
            log.close()

            // Where the last batch lies in the current segment.
            let scan = readFile(segment).withUnsafeBytes { SegmentScanner.scan($0, firstIndex: 0, keepAfter: 0) }
            let batchBytes = WALFormat.framedBytes(last)
            let batchEnd = scan.end
            let batchStart = batchEnd - batchBytes
            modifyFile(segment) { bytes in
                var sector = batchStart / 512 * 512
                while sector < batchEnd {
                    if random.next(upTo: 2) == 0 {  // this sector never reached the disk
                        for i in max(sector, batchStart)..<min(sector + 512, bytes.count) { bytes[i] = 0 }
                    }
                    sector += 512
                }
            }

            let context = "seed \(seed)"
            let recovered: [WALRecord]
            do {
                recovered = try WriteAheadLog.open(directory: walDir, segmentBytes: segmentBytes, fsync: false).entries
            } catch {
                XCTFail("\(context): \(error)")
                continue
            }
            let entries = recovered.map(\.entry)
            XCTAssertTrue(entries == durable || entries == durable + last, "\(context): the last batch whole or not at all")
            removeTemporaryDirectory(walDir)
        }
    }

    /// One flipped bit anywhere in any batch stops startup at that batch, the last one included:
    /// every batch before a crash's unfinished one was acknowledged. The one exception, shared by
    /// any checksum-based log: a flip that clears the only set bit of a sector's share of the
    /// last batch reads exactly like that sector never being written, and the batch is dropped
    /// as a torn write.
    func testASingleBitFlipIsNeverSilentlyDropped() throws {
        var exceptions = 0
        for seed in 1...200 {
            var random = SplitMix64(seed: UInt64(seed) &* 7919)
            let walDir = path("wal-\(seed)")
            let batches = (0..<Int(random.next(upTo: 8) + 1)).map { _ in
                (0...random.next(upTo: 4)).map { _ in randomEntry(&random) }
            }
            let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 65536, fsync: false)
            for batch in batches { try log.append(batch) }
            log.close()
            let (starts, end) = frameOffsets(batches)
            let victim = Int(random.next(upTo: UInt64(batches.count)))
            let frameEnd = victim + 1 < batches.count ? starts[victim + 1] : end
            let bit = Int(random.next(upTo: UInt64((frameEnd - starts[victim]) * 8)))
            let byte = starts[victim] + bit / 8
            let segment = walDir + "/" + segmentName(1)
            var before: [UInt8] = []
            modifyFile(segment) { before = $0; $0[byte] ^= UInt8(1 << (bit % 8)) }

            let context = "seed \(seed): bit \(bit) of batch \(victim) of \(batches.count)"
            // Whether the flip emptied the share of its sector that the body holds.
            let bodyStart = starts[victim] + 28
            let sector = byte / 512 * 512
            let emptiedShare = byte >= bodyStart
                && (max(sector, bodyStart)..<min(sector + 512, frameEnd)).allSatisfy { $0 == byte || before[$0] == 0 }
            if victim == batches.count - 1 && emptiedShare {
                exceptions += 1
                let (_, recovered, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 65536, fsync: false)
                XCTAssertEqual(recovered.map(\.entry), batches.dropLast().flatMap { $0 }, context)
                XCTAssertNotNil(note, context)
            } else {
                let error = assertStorageError { try WriteAheadLog.open(directory: walDir, segmentBytes: 65536, fsync: false) }
                XCTAssertEqual(error?.kind, .corruption, context)
                XCTAssertEqual(error?.offset, starts[victim], context)
                XCTAssertEqual(error?.path, segment, context)
            }
            removeTemporaryDirectory(walDir)
        }
        XCTAssertLessThan(exceptions, 10)
    }

    /// Payloads of 0…1500 bytes, about a third of them zero bytes, as protobuf often has.
    private func randomEntry(_ random: inout SplitMix64) -> WALEntry {
        let count = Int(random.next(upTo: 4) == 0 ? random.next(upTo: 1500) : random.next(upTo: 120))
        let payload = (0..<count).map { _ in random.next(upTo: 3) == 0 ? 0 : UInt8(truncatingIfNeeded: random.next()) }
        return WALEntry(type: UInt8(truncatingIfNeeded: random.next(upTo: 4)), payload: payload)
    }
}

