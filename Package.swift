// swift-tools-version:6.0
import Foundation
import PackageDescription

let package = Package(
    name: "lattice",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "lattice", targets: ["lattice"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // JWT auth tokens: RSA (PKCS #1 v1.5, PSS), ECDSA and HMAC signatures.
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
    ],
    targets: [
        .target(name: "ProtoWire"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .target(name: "GRPCWire", dependencies: [
            "CZlib",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOHPACK", package: "swift-nio-http2"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP2", package: "swift-nio-http2"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .target(name: "EtcdAPI", dependencies: ["ProtoWire"]),
        .target(name: "LatticeCore", dependencies: ["ProtoWire"]),
        .target(name: "CCRC32C"),
        .target(name: "LatticeStorage", dependencies: ["CCRC32C"]),
        .target(name: "LatticeStore", dependencies: ["LatticeCore", "EtcdAPI", "LatticeStorage", "ProtoWire"]),
        .target(name: "LatticeReplication", dependencies: [
            "GRPCWire", "EtcdAPI", "LatticeStore", "LatticeCore", "ProtoWire",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // TLS for client and peer listeners (BoringSSL through swift-nio-ssl); kept out of
        // GRPCWire so that the transport's fuzz target builds without it.
        .target(name: "LatticeTLS", dependencies: [
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        .target(name: "LatticeServer", dependencies: [
            "GRPCWire", "EtcdAPI", "LatticeStore", "LatticeCore", "LatticeReplication", "LatticeStorage", "LatticeTLS",
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // `--auth-token jwt,…` (kept apart so that only the server binary links swift-crypto).
        .target(name: "LatticeJWT", dependencies: [
            "LatticeServer", "LatticeStore", "LatticeCore",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
        ]),
        .executableTarget(name: "lattice", dependencies: [
            "LatticeServer", "LatticeJWT", "GRPCWire", "EtcdAPI", "ProtoWire", "LatticeStorage", "LatticeReplication", "LatticeCore", "LatticeTLS",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        .testTarget(name: "ProtoWireTests", dependencies: ["ProtoWire"]),
        // Helpers shared by the test targets (not part of any product).
        .target(name: "LatticeTestSupport", path: "Tests/LatticeTestSupport"),
        .testTarget(name: "LatticeCoreTests", dependencies: ["LatticeCore", "ProtoWire", "LatticeTestSupport"]),
        .testTarget(name: "GRPCWireTests", dependencies: [
            "GRPCWire",
            .product(name: "NIOHPACK", package: "swift-nio-http2"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        .testTarget(name: "EtcdAPITests", dependencies: ["EtcdAPI", "ProtoWire"], resources: [.copy("Fixtures")]),
        .testTarget(name: "LatticeStoreTests", dependencies: ["LatticeStore", "LatticeCore", "EtcdAPI", "LatticeTestSupport"]),
        .testTarget(name: "LatticeReplicationTests", dependencies: [
            "LatticeReplication", "LatticeStore", "LatticeCore", "EtcdAPI", "GRPCWire", "LatticeServer", "LatticeTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "LatticeStorageTests", dependencies: ["LatticeStorage", "LatticeTestSupport"]),
        .testTarget(name: "LatticeJWTTests", dependencies: [
            "LatticeJWT", "LatticeServer", "LatticeStore", "LatticeCore",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
        ]),
        .testTarget(name: "LatticeServerTests", dependencies: [
            "LatticeServer", "LatticeReplication", "GRPCWire", "EtcdAPI", "LatticeStore", "ProtoWire", "LatticeCore", "LatticeTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
    ]
)

// Fuzz targets (libFuzzer), built only for fuzzing: `scripts/fuzz` sets LATTICE_FUZZ=1 and
// builds them with `-sanitize=fuzzer` in `.build-fuzz` (see docs/robustness.md).
if ProcessInfo.processInfo.environment["LATTICE_FUZZ"] == "1" {
    let fuzzers: [(String, [Target.Dependency])] = [
        ("FuzzEtcdMessages", ["EtcdAPI", "LatticeCore", "ProtoWire"]),
        ("FuzzReplicaState", ["LatticeCore"]),
        ("FuzzWAL", ["LatticeStorage"]),
        ("FuzzSnapshotFile", ["LatticeStorage"]),
        ("FuzzBoltFile", ["LatticeStorage"]),
        ("FuzzJSONMerge", ["LatticeCore"]),
        ("FuzzGRPCServer", ["GRPCWire", .product(name: "NIOCore", package: "swift-nio"),
                            .product(name: "NIOEmbedded", package: "swift-nio")]),
    ]
    package.targets.append(.target(name: "FuzzSupport", path: "Fuzz/FuzzSupport"))
    for (name, dependencies) in fuzzers {
        package.targets.append(.executableTarget(name: name, dependencies: dependencies + ["FuzzSupport"], path: "Fuzz/\(name)",
                                                 swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
        package.products.append(.executable(name: name, targets: [name]))
    }
}
