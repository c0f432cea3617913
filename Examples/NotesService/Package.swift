// swift-tools-version:6.1
import PackageDescription

// Another service of the same system: it issues no tokens and stores no accounts, it only
// verifies the identity service's tokens (IdentityVerifier: the published keys, revocations
// through the shared PostgreSQL). It depends on Identity by path here, by URL and version in a
// real project, with no trait: it links neither SQLite nor librabbitmq nor the composition.
let package = Package(
    name: "NotesService",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Identity", path: "../..", traits: []),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        .target(
            name: "NotesServiceKit",
            dependencies: [
                .product(name: "IdentityVerifier", package: "Identity"),
                .product(name: "HTTPAdapter", package: "Identity"),
                .product(name: "CryptoAdapter", package: "Identity"),
                .product(name: "PostgresAdapter", package: "Identity"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "NotesService",
            dependencies: [
                "NotesServiceKit",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "NotesServiceTests", dependencies: ["NotesServiceKit"]),
    ]
)
