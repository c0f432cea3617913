import CCrypt
import Foundation

/// Verifies bcrypt hashes imported from another system (`$2a$`, `$2b$`, `$2y$`), through
/// libxcrypt's `crypt_r`. Never used to make a hash: an imported hash is replaced by Argon2id
/// on the next successful login.
///
/// bcrypt only reads the first 72 bytes of a password; that is a property of the imported
/// hash, and it ends with the rehash.
enum BcryptVerifier {
    /// The highest cost accepted (2^16 rounds): a stored hash must not be able to stall a thread.
    static let maximumCost = 16

    /// Whether `hash` looks like a bcrypt hash this verifier handles: a known variant, a cost
    /// of two decimal digits from 4 to `maximumCost`, and 53 characters of bcrypt's base64.
    static func handles(_ hash: String) -> Bool {
        let bytes = Array(hash.utf8)
        guard bytes.count == 60, bytes[0] == UInt8(ascii: "$"), bytes[1] == UInt8(ascii: "2"),
              [UInt8(ascii: "a"), UInt8(ascii: "b"), UInt8(ascii: "y")].contains(bytes[2]), bytes[3] == UInt8(ascii: "$"),
              bytes[6] == UInt8(ascii: "$"), bytes[4..<6].allSatisfy({ (0x30...0x39).contains($0) }),
              let cost = Int(String(decoding: bytes[4..<6], as: UTF8.self)), (4...maximumCost).contains(cost)
        else { return false }
        return bytes[7...].allSatisfy { byte in
            byte == UInt8(ascii: ".") || byte == UInt8(ascii: "/") || (byte >= 0x30 && byte <= 0x39)
                || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
        }
    }

    /// Whether `password` (UTF-8, no NUL) matches `hash`. Blocks for the hash's cost.
    static func verifyBlocking(_ password: [UInt8], against hash: String) -> Bool {
        guard handles(hash) else { return false }
        let data = UnsafeMutablePointer<crypt_data>.allocate(capacity: 1)
        defer {
            memset(data, 0, MemoryLayout<crypt_data>.size)
            data.deallocate()
        }
        memset(data, 0, MemoryLayout<crypt_data>.size)
        let computed: [UInt8]? = (password + [0]).withUnsafeBufferPointer { phrase in
            hash.withCString { setting in
                phrase.baseAddress!.withMemoryRebound(to: CChar.self, capacity: phrase.count) { phrasePointer in
                    guard let result = crypt_r(phrasePointer, setting, data), result.pointee != UInt8(ascii: "*") else { return nil }
                    return Array(String(cString: result).utf8)
                }
            }
        }
        guard let computed else { return false }
        return constantTimeEquals(computed, Array(hash.utf8))
    }

    /// Compares without returning early, so the time does not tell how much matched.
    static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}
