import IdentityPorts

/// The addresses we put in a header or an SMTP envelope: `local@domain` in printable ASCII,
/// without the characters that would end a header field or an SMTP command. Anything else
/// (CR, LF, spaces, angle brackets, non-ASCII that would need SMTPUTF8) is refused, and a
/// send with such an address fails permanently: no retry makes it valid.
public enum MailAddressCheck {
    /// RFC 5321's limit on a forward path.
    static let maximumLength = 254

    /// Why `address` cannot be used, or nil when it can.
    public static func problem(with address: String) -> String? {
        let bytes = Array(address.utf8)
        guard !bytes.isEmpty else { return "the address is empty" }
        guard bytes.count <= maximumLength else { return "the address is longer than \(maximumLength) bytes" }
        for byte in bytes {
            // Printable ASCII without space, the angle brackets, quotes, backslash, comma, ...
            guard byte > 0x20, byte < 0x7F else {
                return byte >= 0x80
                    ? "the address is not ASCII (SMTPUTF8 is not supported)"
                    : "the address contains a control character or a space"
            }
            guard !Self.forbidden.contains(byte) else { return "the address contains a forbidden character" }
        }
        guard let at = bytes.firstIndex(of: UInt8(ascii: "@")), at > 0, at < bytes.count - 1,
              bytes.lastIndex(of: UInt8(ascii: "@")) == at else {
            return "the address is not local@domain"
        }
        let domain = bytes[(at + 1)...]
        let dot = UInt8(ascii: ".")
        guard domain.first != dot, domain.last != dot, !zip(domain, domain.dropFirst()).contains(where: { $0 == dot && $1 == dot }) else {
            return "the address's domain is malformed"
        }
        return nil
    }

    /// The domain part of a checked address.
    static func domain(of address: String) -> Substring {
        guard let at = address.lastIndex(of: "@") else { return "localhost" }
        return address[address.index(after: at)...]
    }

    private static let forbidden: Set<UInt8> = Set("<>()[]\\,;:\"".utf8)

    /// A permanent failure when either address of `message` is unusable.
    static func check(_ message: MailMessage) throws(MailDeliveryFailure) {
        for (role, address) in [("sender", message.from.address), ("recipient", message.to.address)] {
            if let problem = problem(with: address) {
                throw MailDeliveryFailure(isPermanent: true, reason: "invalid \(role) address: \(problem)")
            }
        }
    }
}
