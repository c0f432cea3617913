// swift-tools-version:6.1
import PackageDescription

// A host application that embeds Identity the way an adopter would: by path here, by URL
// and version in a real project.
let package = Package(
    name: "HostApp",
    platforms: [.macOS(.v15)],
    dependencies: [
        // Only the PostgreSQL preset: the host links neither SQLite nor librabbitmq.
        .package(name: "Identity", path: "../..", traits: ["PostgreSQL"]),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
    ],
    targets: [
        .target(
            name: "HostAppKit",
            dependencies: [
                .product(name: "IdentityComposition", package: "Identity"),
                .product(name: "HTTPAdapter", package: "Identity"),
                .product(name: "CryptoAdapter", package: "Identity"),
                .product(name: "PostgresAdapter", package: "Identity"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "HostApp", dependencies: ["HostAppKit", .product(name: "PostgresAdapter", package: "Identity")]
        ),
        .testTarget(
            name: "HostAppTests",
            dependencies: [
                "HostAppKit", .product(name: "PostgresAdapter", package: "Identity"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
    ]
)
