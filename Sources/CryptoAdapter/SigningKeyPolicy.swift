public import Foundation
public import IdentityPorts

/// One step of a rotation, as `SigningKeyPolicy.plan` decides it.
public enum SigningKeyStep: Sendable, Equatable {
    /// Make a key that signs from `activatesAt` (and is published from now).
    case create(activatesAt: Date)
    /// `next` → `active`: its `activatesAt` has come, and it is the newest key that has.
    case promote(kid: String)
    /// → `retired`: a newer key signs from `retiredAt`; it stays published until `publishedUntil`.
    case retire(kid: String, retiredAt: Date, publishedUntil: Date)
    /// → `gone`: no live token can carry it; leaves the JWKS, its private key is erased.
    case unpublish(kid: String)
    /// Gone for longer than the retention: the record is deleted.
    case delete(kid: String)
}

/// The rotation rule of contract §10, as pure functions of the stored keys and `now`.
///
/// - The key that signs at `now` is the newest key (by `activatesAt`) of the configured
///   algorithm, `next` or `active`, whose `activatesAt` has come: every instance switches at
///   that instant by its own clock, without waiting for the rotation to run.
/// - A new key is made `publicationLead` (≥ 600 s) before it signs: every `rotationInterval`
///   after the signing key started, or on demand, unless one is already waiting. The first key
///   (or the first of a newly configured algorithm) signs at once: nothing else could.
/// - A replaced key stays published until `retiredAt + tokenLifetime + 3 × leeway`: its last
///   token expires by then, whichever instance signed it and whatever the clocks within the
///   leeway (one leeway for the verifier's acceptance, one for the signer's clock, one for the
///   clock that unpublishes, as with `TokenService.cutoffExpiry`).
/// - Keys of another algorithm are unpublished at once: their tokens are refused anyway.
public struct SigningKeyPolicy: Sendable, Equatable {
    /// The shortest publication lead the contract allows: a key is in the JWKS this long before it signs.
    public static let minimumPublicationLead: TimeInterval = 600

    /// The algorithm keys are made for; keys of another are unpublished.
    public let algorithm: JWTAlgorithm
    /// How long a key signs before the next one replaces it (`JWT_KEY_ROTATION_DAYS`, 30).
    public let rotationInterval: TimeInterval
    /// How long a new key is published before it signs (600 s).
    public let publicationLead: TimeInterval
    /// The tokens' lifetime.
    public let tokenLifetime: TimeInterval
    /// The tokens' clock leeway.
    public let leeway: TimeInterval
    /// How long a `gone` record is kept (for `keys list`) before it is deleted.
    public let goneRetention: TimeInterval

    /// Creates the policy; throws `TokenConfigurationError` for an HMAC algorithm, a lead under
    /// 600 s, or a rotation interval not longer than the lead plus a token's lifetime.
    public init(
        algorithm: JWTAlgorithm, tokenLifetime: TimeInterval, leeway: TimeInterval, rotationInterval: TimeInterval = 30 * 86_400,
        publicationLead: TimeInterval = minimumPublicationLead, goneRetention: TimeInterval = 7 * 86_400
    ) throws {
        guard algorithm.isAsymmetric else { throw TokenConfigurationError("\(algorithm.rawValue) has no key pairs to rotate") }
        guard publicationLead >= Self.minimumPublicationLead else {
            throw TokenConfigurationError("a new signing key must be published at least 600 s before it signs")
        }
        guard rotationInterval > publicationLead + tokenLifetime else {
            throw TokenConfigurationError("JWT_KEY_ROTATION_DAYS must be longer than the publication lead and a token's lifetime")
        }
        self.algorithm = algorithm
        self.rotationInterval = rotationInterval
        self.publicationLead = publicationLead
        self.tokenLifetime = tokenLifetime
        self.leeway = leeway
        self.goneRetention = goneRetention
    }

    /// The key that signs at `now` (see the type's summary), or nil when none does.
    public func signingKey(in keys: [SigningKeyRecord], now: Date) -> SigningKeyRecord? {
        Self.signingKey(in: keys, algorithm: algorithm, now: now)
    }

    /// The keys the JWKS lists at `now`: those of the configured algorithm that are `next`,
    /// `active`, or `retired` and not yet past `publishedUntil`, oldest first. The keys a
    /// token may be verified with are exactly these.
    public func published(_ keys: [SigningKeyRecord], now: Date) -> [SigningKeyRecord] {
        Self.published(keys, algorithm: algorithm, now: now)
    }

    static func signingKey(in keys: [SigningKeyRecord], algorithm: JWTAlgorithm, now: Date) -> SigningKeyRecord? {
        keys.filter { $0.algorithm == algorithm.rawValue && ($0.state == .next || $0.state == .active) && $0.activatesAt <= now }
            .max { ($0.activatesAt, $0.createdAt, $0.kid) < ($1.activatesAt, $1.createdAt, $1.kid) }
    }

    static func published(_ keys: [SigningKeyRecord], algorithm: JWTAlgorithm, now: Date) -> [SigningKeyRecord] {
        keys.filter { key in
            guard key.algorithm == algorithm.rawValue else { return false }
            switch key.state {
            case .next, .active: return true
            case .retired: return key.publishedUntil.map { now <= $0 } ?? true
            case .gone: return false
            }
        }
    }

    /// What a rotation at `now` does to `keys` (`rotateNow`: make a new key even if the signing
    /// key is not due, as `DemoServer keys rotate` asks), in the order to apply the steps.
    public func plan(_ keys: [SigningKeyRecord], now: Date, rotateNow: Bool = false) -> [SigningKeyStep] {
        var steps: [SigningKeyStep] = []
        let own = keys.filter { $0.algorithm == algorithm.rawValue }
        for key in keys where key.algorithm != algorithm.rawValue && key.state != .gone {
            steps.append(.unpublish(kid: key.kid))
        }
        // Keys that sign or signed: each signed until the next one's activation.
        let started = own.filter { ($0.state == .next || $0.state == .active) && $0.activatesAt <= now }
            .sorted { ($0.activatesAt, $0.createdAt, $0.kid) < ($1.activatesAt, $1.createdAt, $1.kid) }
        for (key, successor) in zip(started, started.dropFirst()) {
            let publishedUntil = successor.activatesAt.addingTimeInterval(tokenLifetime + 3 * leeway)
            steps.append(.retire(kid: key.kid, retiredAt: successor.activatesAt, publishedUntil: publishedUntil))
            if publishedUntil < now { steps.append(.unpublish(kid: key.kid)) }
        }
        if let signing = started.last, signing.state == .next { steps.append(.promote(kid: signing.kid)) }
        for key in own where key.state == .retired {
            if let until = key.publishedUntil, until < now { steps.append(.unpublish(kid: key.kid)) }
        }
        for key in keys where key.state == .gone {
            if (key.publishedUntil ?? key.createdAt).addingTimeInterval(goneRetention) < now { steps.append(.delete(kid: key.kid)) }
        }
        let waiting = own.contains { $0.state == .next && $0.activatesAt > now }
        if let signing = started.last {
            let due = now >= signing.activatesAt.addingTimeInterval(rotationInterval - publicationLead)
            if !waiting, due || rotateNow { steps.append(.create(activatesAt: now.addingTimeInterval(publicationLead))) }
        } else {
            steps.append(.create(activatesAt: now))
        }
        return steps
    }

    /// `steps` as changes of `keys` (a created key is `created`, which `.create` needs).
    func changes(applying steps: [SigningKeyStep], to keys: [SigningKeyRecord], created: SigningKeyRecord?) -> [SigningKeyChange] {
        var working = Dictionary(uniqueKeysWithValues: keys.map { ($0.kid, $0) })
        var touched: [String] = []
        var changes: [SigningKeyChange] = []
        func update(_ kid: String, _ body: (inout SigningKeyRecord) -> Void) {
            guard var key = working[kid] else { return }
            body(&key)
            working[kid] = key
            if !touched.contains(kid) { touched.append(kid) }
        }
        for step in steps {
            switch step {
            case .create:
                if let created { changes.append(.insert(created)) }
            case .promote(let kid):
                update(kid) { $0.state = .active }
            case .retire(let kid, let retiredAt, let publishedUntil):
                update(kid) {
                    $0.state = .retired
                    $0.retiredAt = retiredAt
                    $0.publishedUntil = publishedUntil
                }
            case .unpublish(let kid):
                update(kid) {
                    $0.state = .gone
                    $0.sealedPrivateKey = Data()
                    if $0.publishedUntil == nil { $0.publishedUntil = $0.retiredAt ?? $0.activatesAt }
                }
            case .delete(let kid):
                working[kid] = nil
                touched.removeAll { $0 == kid }
                changes.append(.delete(kid: kid))
            }
        }
        return changes + touched.compactMap { working[$0].map(SigningKeyChange.update) }
    }
}
