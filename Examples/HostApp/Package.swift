// swift-tools-version:6.1
import PackageDescription

// A host application that embeds Identity the way an adopter would: by path here, by URL
// and version in a real project.
let package = Package(
    name: "HostApp",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Identity", path: "../.."),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
    ],
    targets: [
        .target(
            name: "HostAppKit",
            dependencies: [
                .product(name: "HTTPAdapter", package: "Identity"),
                .product(name: "CryptoAdapter", package: "Identity"),
                .product(name: "InMemoryAdapter", package: "Identity"),
                .product(name: "IdentityApplication", package: "Identity"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ]
        ),
        .executableTarget(name: "HostApp", dependencies: ["HostAppKit"]),
        .testTarget(
            name: "HostAppTests",
            dependencies: ["HostAppKit", .product(name: "HummingbirdTesting", package: "hummingbird")]
        ),
    ]
)
