// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "synthd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "synthd", targets: ["synthd"]),
        .executable(name: "synth", targets: ["synth"]),
        .executable(name: "dedup-bench", targets: ["dedup-bench"]),
        .executable(name: "stream-bench-seed", targets: ["stream-bench-seed"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .target(name: "SynthProto", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // The method table: each RPC's name, kind, scope and types, for the server and the clients alike.
        .target(name: "SynthAPI", dependencies: ["SynthProto", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // Optimised in debug builds too: the spell check's index is built from 100,000 words at start.
        .target(name: "SynthSpec", dependencies: ["SynthProto", "SynthConcurrency", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                resources: [.copy("Vocabulary")],
                swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .target(name: "SynthWire", dependencies: ["SynthConcurrency", .product(name: "NIOCore", package: "swift-nio")]),
        // Locks, permits and lanes (threads of their own for blocking work), shared by every layer.
        .target(name: "SynthConcurrency"),
        // What synthd counts (swift-metrics' API only; the synthd executable picks the backend).
        .target(name: "SynthMetrics", dependencies: ["SynthConcurrency", .product(name: "CoreMetrics", package: "swift-metrics")]),
        .target(name: "SynthStore", dependencies: [
            "CLMDB", "SynthProto", "SynthConcurrency", "SynthMetrics",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "SynthLLM", dependencies: ["CCurl", "SynthConcurrency", "SynthMetrics", "SynthSpec", .product(name: "Logging", package: "swift-log")]),
        // The join's sketch filter, with an AVX2 kernel chosen at run time. Optimised in debug builds too.
        .target(name: "CSketch", cSettings: [.unsafeFlags(["-O2"])]),
        // Optimised in debug builds too: tests compare it with brute force on thousands of records.
        .target(name: "SynthQuality", dependencies: ["CSketch"], swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .target(name: "SynthEngine", dependencies: [
            "SynthSpec", "SynthStore", "SynthLLM", "SynthQuality", "SynthProto", "SynthConcurrency", "SynthMetrics",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Crypto", package: "swift-crypto"),
        ], resources: [.copy("Prompts")]),
        // The application: every operation for a typed caller, and its policy; no transport.
        .target(name: "SynthCore", dependencies: [
            "SynthAPI", "SynthSpec", "SynthStore", "SynthEngine", "SynthLLM", "SynthProto", "SynthConcurrency", "SynthQuality",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
        // The framed protocol's edge: it sees the application (SynthCore) and nothing behind it.
        .target(name: "SynthServer", dependencies: [
            "SynthCore", "SynthAPI", "SynthWire", "SynthProto", "SynthConcurrency", "SynthMetrics",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The standard gRPC edge (HTTP/2): the same application behind grpc-swift's transport. The
        // service code generated from proto/ by protoc-gen-grpc-swift-2 is committed beside it.
        .target(name: "SynthGRPC", dependencies: [
            "SynthCore", "SynthAPI", "SynthProto", "SynthServer", "SynthConcurrency", "SynthMetrics",
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOCertificateReloading", package: "swift-nio-extras"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
        .target(name: "SynthClient", dependencies: [
            "SynthAPI", "SynthWire", "SynthProto", "SynthSpec", "SynthConcurrency",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOTLS", package: "swift-nio"),
        ]),
        .executableTarget(name: "dedup-bench", dependencies: ["SynthQuality"]),
        // Fuzzing (`make fuzz`): the targets' bodies, which the tests also run on every saved input
        // (seeds and the regressions of crashes found), and one executable per target. Built as
        // they are here, an executable replays files; built with -DFUZZING and
        // -sanitize=fuzzer,address it is a libFuzzer binary.
        .target(name: "SynthFuzz", dependencies: [
            "SynthWire", "SynthCore", "SynthAPI", "SynthSpec", "SynthEngine", "SynthLLM", "SynthProto",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
        .executableTarget(name: "fuzz-frames", dependencies: ["SynthFuzz"], path: "Sources/Fuzz/frames",
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
        .executableTarget(name: "fuzz-request", dependencies: ["SynthFuzz"], path: "Sources/Fuzz/request",
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
        .executableTarget(name: "fuzz-answer", dependencies: ["SynthFuzz"], path: "Sources/Fuzz/answer",
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
        .executableTarget(name: "stream-bench-seed", dependencies: ["SynthEngine", "SynthStore", "SynthSpec", "SynthProto"]),
        .executableTarget(name: "synthd", dependencies: [
            "SynthServer", "SynthGRPC", "SynthCore", "SynthStore", "SynthEngine", "SynthSpec", "SynthConcurrency", "SynthMetrics", "SynthProto",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "synth", dependencies: [
            "SynthAPI", "SynthClient", "SynthSpec", "SynthProto",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "SynthWireTests", dependencies: [
            "SynthWire", "SynthProto",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        .testTarget(name: "SynthSpecTests", dependencies: [
            "SynthSpec", "SynthProto", "SynthEngine",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "SynthQualityTests", dependencies: ["SynthQuality", "CSketch"]),
        // Every saved fuzz input (fuzz/seeds, fuzz/regressions) through its target, without a fuzzing build.
        .testTarget(name: "SynthFuzzTests", dependencies: ["SynthFuzz"]),
        // The engine in process against a scripted model: no sockets, no HTTP.
        .testTarget(name: "SynthEngineTests", dependencies: [
            "SynthEngine", "SynthCore", "SynthLLM", "SynthStore", "SynthSpec", "SynthProto", "SynthConcurrency",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "SynthStoreTests", dependencies: ["SynthStore", "SynthProto"]),
        .testTarget(name: "SynthServerTests", dependencies: [
            "SynthAPI", "SynthCore", "SynthServer", "SynthGRPC", "SynthClient", "SynthStore", "SynthEngine", "SynthProto", "SynthWire", "SynthSpec", "SynthLLM", "SynthQuality",
            "SynthConcurrency",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
        ]),
    ]
)
