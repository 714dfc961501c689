import XCTest
import LatticeTestSupport
@testable import LatticeStorage

/// Seeded simulations of what a power loss or a bit flip leaves on disk. A failing seed is
/// printed in the assertion message; add it as a regression test.
final class WALCrashSimulationTests: StorageTestCase {
    /// Random batches, then a power loss during the last one: each 512-byte sector of that batch
    /// independently reached the disk or still holds its old content (zeros after the durable
    /// data). Recovery never throws, keeps every earlier batch and at most a prefix of the last.
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
            let batchBytes = last.reduce(0) { $0 + 9 + $1.payload.count }
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
            XCTAssertEqual(Array(entries.prefix(durable.count)), durable, context)
            XCTAssertLessThanOrEqual(entries.count, durable.count + last.count, context)
            XCTAssertEqual(Array(entries.dropFirst(durable.count)), Array(last.prefix(entries.count - durable.count)), context)
            removeTemporaryDirectory(walDir)
        }
    }

    /// One flipped bit anywhere in a record followed by another record stops startup at that
    /// record's offset; in the very last record it is truncated instead.
    func testASingleBitFlipIsNeverSilentlyDroppedBeforeTheEnd() throws {
        for seed in 1...200 {
            var random = SplitMix64(seed: UInt64(seed) &* 7919)
            let walDir = path("wal-\(seed)")
            let entries = (0..<Int(random.next(upTo: 20) + 2)).map { _ in randomEntry(&random) }
            let (log, _, _) = try WriteAheadLog.open(directory: walDir, segmentBytes: 65536, fsync: false)
            try log.append(entries)
            log.close()
            let offsets = recordOffsets(entries)
            let victim = Int(random.next(upTo: UInt64(entries.count)))
            let bit = Int(random.next(upTo: UInt64((9 + entries[victim].payload.count) * 8)))
            let segment = walDir + "/" + segmentName(1)
            modifyFile(segment) { $0[offsets[victim] + bit / 8] ^= UInt8(1 << (bit % 8)) }

            let context = "seed \(seed): bit \(bit) of record \(victim) of \(entries.count)"
            if victim == entries.count - 1 {
                let (_, recovered, note) = try WriteAheadLog.open(directory: walDir, segmentBytes: 65536, fsync: false)
                XCTAssertEqual(recovered.map(\.entry), Array(entries.dropLast()), context)
                XCTAssertNotNil(note, context)
            } else {
                let error = assertStorageError { try WriteAheadLog.open(directory: walDir, segmentBytes: 65536, fsync: false) }
                XCTAssertEqual(error?.kind, .corruption, context)
                XCTAssertEqual(error?.offset, offsets[victim], context)
                XCTAssertEqual(error?.path, segment, context)
            }
            removeTemporaryDirectory(walDir)
        }
    }

    /// Payloads of 0…1500 bytes, about a third of them zero bytes, as protobuf often has.
    private func randomEntry(_ random: inout SplitMix64) -> WALEntry {
        let count = Int(random.next(upTo: 4) == 0 ? random.next(upTo: 1500) : random.next(upTo: 120))
        let payload = (0..<count).map { _ in random.next(upTo: 3) == 0 ? 0 : UInt8(truncatingIfNeeded: random.next()) }
        return WALEntry(type: UInt8(truncatingIfNeeded: random.next(upTo: 4)), payload: payload)
    }
}

