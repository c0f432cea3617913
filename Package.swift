// swift-tools-version:6.1
import PackageDescription

// One set of settings for every target (as Hummingbird does): with InternalImportsByDefault a
// target writes `public import X` only where X is part of its public API.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Identity",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "IdentityDomain", targets: ["IdentityDomain"]),
        .library(name: "IdentityPorts", targets: ["IdentityPorts"]),
        .library(name: "IdentityAdapterSupport", targets: ["IdentityAdapterSupport"]),
        .library(name: "IdentityApplication", targets: ["IdentityApplication"]),
        .library(name: "InMemoryAdapter", targets: ["InMemoryAdapter"]),
        .library(name: "CryptoAdapter", targets: ["CryptoAdapter"]),
        .library(name: "PostgresAdapter", targets: ["PostgresAdapter"]),
        .library(name: "SQLiteAdapter", targets: ["SQLiteAdapter"]),
        .library(name: "AMQPAdapter", targets: ["AMQPAdapter"]),
        .library(name: "HTTPAdapter", targets: ["HTTPAdapter"]),
        .library(name: "IdentityComposition", targets: ["IdentityComposition"]),
        .library(name: "IdentityConformance", targets: ["IdentityConformance"]),
        .library(name: "IdentityVerifier", targets: ["IdentityVerifier"]),
        .library(name: "MailAdapter", targets: ["MailAdapter"]),
        .executable(name: "DemoServer", targets: ["DemoServer"]),
    ],
    // Which store presets `IdentityComposition` offers, and so which adapters (and their
    // packages) a host that uses it links: all three by default.
    traits: [
        .trait(name: "SQLite", description: "The SQLite store preset (sqlite-nio)."),
        .trait(name: "PostgreSQL", description: "The PostgreSQL store presets (postgres-nio)."),
        .trait(name: "RabbitMQ", description: "The RabbitMQ command transport (librabbitmq); needs PostgreSQL.", enabledTraits: ["PostgreSQL"]),
        .default(enabledTraits: ["SQLite", "PostgreSQL", "RabbitMQ"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "4.1.0"..<"6.0.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        // No traits: the environment-variable provider (for the environment and `.env`) is in the core.
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: []),
        // Tracing: adapters use the API (`Tracing`); only DemoServer links the OTLP exporter, over
        // HTTP with protobuf (the `OTLPHTTP` trait alone, so gRPC is not built).
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
        // Documentation only: `swift package generate-documentation` (scripts/docs).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin.git", from: "1.5.0"),
    ],
    targets: [
        // MARK: core (Foundation only)
        .target(name: "IdentityDomain", swiftSettings: swiftSettings),
        .target(name: "IdentityPorts", dependencies: ["IdentityDomain"], swiftSettings: swiftSettings),
        .target(
            name: "IdentityApplication",
            dependencies: ["IdentityDomain", "IdentityPorts"],
            swiftSettings: swiftSettings
        ),

        // MARK: what adapters share (Foundation only): deadlines, the event JSON, revocation
        // memory and messages, the throttle rule. Adapters may import it; the core never does.
        .target(
            name: "IdentityAdapterSupport", dependencies: ["IdentityDomain", "IdentityPorts"], swiftSettings: swiftSettings
        ),

        // MARK: driven adapters
        .target(name: "InMemoryAdapter", dependencies: ["IdentityPorts", "IdentityAdapterSupport"], swiftSettings: swiftSettings),
        .systemLibrary(
            name: "CArgon2",
            pkgConfig: "libargon2",
            providers: [.apt(["libargon2-dev"])]
        ),
        .systemLibrary(name: "CCrypt", providers: [.apt(["libcrypt-dev"])]),
        .target(
            name: "CryptoAdapter",
            dependencies: [
                "IdentityPorts",
                "CArgon2",
                "CCrypt",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),

        .target(
            name: "PostgresAdapter",
            dependencies: [
                "IdentityPorts",
                "IdentityAdapterSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            resources: [.copy("Migrations")],
            swiftSettings: swiftSettings
        ),

        .target(
            name: "SQLiteAdapter",
            dependencies: [
                "IdentityPorts",
                "IdentityAdapterSupport",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            resources: [.copy("Migrations")],
            swiftSettings: swiftSettings
        ),

        .systemLibrary(name: "CRabbitMQ", pkgConfig: "librabbitmq", providers: [.apt(["librabbitmq-dev"])]),
        .target(
            name: "AMQPAdapter",
            dependencies: [
                "IdentityPorts",
                "IdentityAdapterSupport",
                "CRabbitMQ",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: mail: SMTP (swift-nio, NIOSSL), a folder of .eml files, the templates (swift-mustache)
        .target(
            name: "MailAdapter",
            dependencies: [
                "IdentityPorts",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: driving adapter
        .target(
            name: "HTTPAdapter",
            dependencies: [
                "IdentityApplication",
                "IdentityAdapterSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            resources: [.copy("Resources/openapi.json")],
            swiftSettings: swiftSettings
        ),

        // MARK: the composition point: adapters put together per store, background work as services
        .target(
            name: "IdentityComposition",
            dependencies: [
                "IdentityApplication",
                "InMemoryAdapter",
                "CryptoAdapter",
                .target(name: "SQLiteAdapter", condition: .when(traits: ["SQLite"])),
                .target(name: "PostgresAdapter", condition: .when(traits: ["PostgreSQL"])),
                .product(name: "PostgresNIO", package: "postgres-nio", condition: .when(traits: ["PostgreSQL"])),
                .target(name: "AMQPAdapter", condition: .when(traits: ["RabbitMQ"])),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: verifying our tokens in another service: the JWKS fetched over HTTP, the
        // verification of CryptoAdapter, the authenticator of the core, the middleware of HTTPAdapter
        .target(
            name: "IdentityVerifier",
            dependencies: [
                "IdentityApplication",
                "IdentityPorts",
                "CryptoAdapter",
                "HTTPAdapter",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: conformance suites for adapter authors
        .target(name: "IdentityConformance", dependencies: ["IdentityDomain", "IdentityPorts"], swiftSettings: swiftSettings),

        // MARK: the demo server: the only target that knows every adapter
        .executableTarget(
            name: "DemoServer",
            dependencies: [
                "IdentityComposition",
                "IdentityApplication",
                "InMemoryAdapter",
                "CryptoAdapter",
                "PostgresAdapter",
                "SQLiteAdapter",
                "AMQPAdapter",
                "HTTPAdapter",
                "MailAdapter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: tests
        .testTarget(name: "IdentityDomainTests", dependencies: ["IdentityDomain", "IdentityTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "IdentityAdapterSupportTests", dependencies: ["IdentityAdapterSupport", "IdentityTestSupport"], swiftSettings: swiftSettings
        ),
        .target(
            name: "IdentityTestSupport",
            dependencies: [
                "IdentityApplication", "IdentityComposition", "IdentityConformance", "InMemoryAdapter", "CryptoAdapter",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/IdentityTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IdentityApplicationTests",
            dependencies: ["IdentityApplication", "IdentityComposition", "InMemoryAdapter", "CryptoAdapter", "IdentityTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IdentityCompositionTests",
            dependencies: [
                "IdentityComposition", "IdentityApplication", "IdentityTestSupport", "AMQPAdapter", "PostgresAdapter",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InMemoryAdapterTests",
            dependencies: ["InMemoryAdapter", "IdentityConformance", "IdentityApplication", "IdentityTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CryptoAdapterTests",
            dependencies: [
                "CryptoAdapter", "CArgon2", "IdentityConformance", "IdentityTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PostgresAdapterTests",
            dependencies: [
                "PostgresAdapter", "IdentityAdapterSupport", "IdentityConformance", "IdentityTestSupport", "IdentityApplication",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "HTTPAdapterTests",
            dependencies: [
                "HTTPAdapter", "IdentityTestSupport", "InMemoryAdapter",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SQLiteAdapterTests",
            dependencies: [
                "SQLiteAdapter", "IdentityAdapterSupport", "IdentityConformance", "IdentityTestSupport", "IdentityApplication",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AMQPAdapterTests",
            dependencies: ["AMQPAdapter", "IdentityAdapterSupport", "IdentityConformance", "IdentityApplication", "InMemoryAdapter", "IdentityTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MailAdapterTests",
            dependencies: [
                "MailAdapter", "IdentityConformance",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IdentityVerifierTests",
            dependencies: [
                "IdentityVerifier", "CryptoAdapter", "HTTPAdapter", "InMemoryAdapter", "IdentityTestSupport", "IdentityApplication",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DemoServerTests",
            dependencies: [
                "DemoServer", "PostgresAdapter", "IdentityTestSupport", "IdentityApplication", "MailAdapter", .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            exclude: ["Peers"],
            swiftSettings: swiftSettings
        ),
    ]
)
