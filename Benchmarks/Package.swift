// swift-tools-version:6.1
import PackageDescription

// Microbenchmarks of the hot paths, in a package of their own so that the main build never
// resolves the benchmark harness: `cd Benchmarks && swift package benchmark` (scripts/bench
// runs it). ordo-one/benchmark with only its malloc interposer (allocation counts).
let package = Package(
    name: "IdentityBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Identity", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        // The raw signature checks the key-pair verification is measured against.
        .package(url: "https://github.com/apple/swift-crypto.git", "4.1.0"..<"6.0.0"),
    ],
    targets: [
        .executableTarget(
            name: "IdentityBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "IdentityDomain", package: "Identity"),
                .product(name: "IdentityPorts", package: "Identity"),
                .product(name: "CryptoAdapter", package: "Identity"),
                .product(name: "InMemoryAdapter", package: "Identity"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPAdapter", package: "Identity"),
            ],
            path: "Benchmarks/IdentityBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
