public import Foundation
public import IdentityPorts
import NIOPosix

/// Delivers mail into a directory, one `.eml` file per mail holding the very bytes SMTP would
/// carry: the embedded default, and a mailbox for tests and development.
///
/// Files are named `<date>-<message id>.eml` (the message's `Date`, UTC, to the millisecond),
/// so they sort by time and never collide; the same message sent again (a retry) replaces
/// its file instead of adding one. Each file is written to a temporary name and renamed, so a
/// reader never sees half a mail. The writing runs on NIO's thread pool, never on the
/// caller's event loop.
public struct FileMailer: Mailer {
    /// Where the files go (created, with its parents, when missing).
    public let directory: URL

    /// Creates the mailer for `directory`.
    public init(directory: URL) {
        self.directory = directory
    }

    public func send(_ message: MailMessage) async throws {
        try MailAddressCheck.check(message)
        let bytes = Data(MailRendering.render(message))
        let name = Self.fileName(for: message)
        let directory = self.directory
        do {
            try await NIOThreadPool.singleton.runIfActive {
                // The mail carries a live token: only the server's user may read it.
                try FileManager.default.createDirectory(
                    at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]
                )
                let temporary = directory.appendingPathComponent(".\(name).\(UUID().uuidString.lowercased()).tmp")
                guard FileManager.default.createFile(atPath: temporary.path, contents: bytes, attributes: [.posixPermissions: 0o600]) else {
                    throw MailDeliveryFailure(isPermanent: false, reason: "cannot write the mail file in \(directory.path)")
                }
                // rename(2) replaces an earlier file of the same mail atomically.
                guard rename(temporary.path, directory.appendingPathComponent(name).path) == 0 else {
                    let code = errno
                    try? FileManager.default.removeItem(at: temporary)
                    throw MailDeliveryFailure(isPermanent: false, reason: "cannot rename the mail file (errno \(code))")
                }
            }
        } catch let failure as MailDeliveryFailure {
            throw failure
        } catch {
            throw MailDeliveryFailure(isPermanent: false, reason: "cannot write the mail file: \(error.localizedDescription)")
        }
    }

    /// `20261203T165448.123Z-<uuid>.eml`.
    static func fileName(for message: MailMessage) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: message.date)
        let milliseconds = Int((message.date.timeIntervalSince1970 * 1000).rounded(.down)) % 1000
        func pad(_ value: Int?, _ width: Int) -> String {
            let text = String(value ?? 0)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let stamp = pad(parts.year, 4) + pad(parts.month, 2) + pad(parts.day, 2) + "T" + pad(parts.hour, 2) + pad(parts.minute, 2)
            + pad(parts.second, 2) + "." + pad((milliseconds + 1000) % 1000, 3) + "Z"
        return "\(stamp)-\(message.id.uuidString.lowercased()).eml"
    }
}
