import IdentityPorts
import IdentityDomain
import Foundation
import Testing

// The mail outbox's checks of `AccountMailConformance`: claims, leases, retries, status.
extension AccountMailConformance {
    /// Fresh stores with `count` mails of one account committed (one a millisecond after the
    /// other from `first`, shuffled before they are written); returns them oldest first.
    func storesWithMail(_ count: Int, first: Date = Fixture.epoch) async throws -> (Stores, [OutgoingMail]) {
        let stores = try await makeStores()
        let ada = try Fixture.user("ada")
        let mails = (0..<count).map { Self.mail(.emailVerification, to: ada, at: first.addingTimeInterval(Double($0) / 1000)) }
        let shuffled = mails.shuffled()
        try await stores.users.insert(ada, events: [], writes: AccountWrites(mail: Array(shuffled.prefix(count / 2))))
        for mail in shuffled.dropFirst(count / 2) {
            try await stores.tokens.record(AccountWrites(mail: [mail]), for: ada.id, events: [], limit: nil)
        }
        return (stores, mails)
    }

    func dueMailIsClaimedOldestFirst() async throws {
        let (stores, mails) = try await storesWithMail(5)
        let at = now.addingTimeInterval(1)
        let first = try await stores.outbox.claimDueMail(limit: 3, now: at, lease: 60)
        #expect(first.map(\.mail) == Array(mails.prefix(3)), "the oldest first, up to the limit")
        #expect(first.allSatisfy { $0.failedAttempts == 0 }, "no attempt has failed yet")
        let rest = try await stores.outbox.claimDueMail(limit: 10, now: at, lease: 60)
        #expect(rest.map(\.mail) == Array(mails.suffix(2)), "then the others, not those claimed")
        #expect(try await stores.outbox.claimDueMail(limit: 10, now: at, lease: 60).isEmpty, "then none")
        #expect(try await stores.outbox.claimDueMail(limit: 0, now: at.addingTimeInterval(3_600), lease: 60).isEmpty, "a limit of 0 claims none")
    }

    func aClaimHoldsItsMailForTheLease() async throws {
        let (stores, mails) = try await storesWithMail(2)
        let at = now.addingTimeInterval(1)
        let lease: TimeInterval = 60
        #expect(try await stores.outbox.claimDueMail(limit: 10, now: at, lease: lease).map(\.mail) == mails)
        #expect(try await stores.outbox.claimDueMail(limit: 10, now: at, lease: lease).isEmpty, "a second claim at once gets none")
        #expect(try await stores.outbox.claimDueMail(limit: 10, now: at.addingTimeInterval(lease - 0.001), lease: lease).isEmpty,
                "nor one a millisecond before the lease ends")
        let again = try await stores.outbox.claimDueMail(limit: 10, now: at.addingTimeInterval(lease + 0.001), lease: lease)
        #expect(again.map(\.mail) == mails, "once the lease has ended (its claimer died), the mail is claimed again")
        #expect(again.allSatisfy { $0.failedAttempts == 0 }, "a lapsed lease is no failed attempt")
        #expect(try await stores.outbox.mailStatus() == MailOutboxStatus(pending: 2, failed: 0, oldestPendingAt: mails[0].createdAt),
                "claimed mail is still pending")
    }

    func deliveredMailIsNeverClaimedAgain() async throws {
        let (stores, mails) = try await storesWithMail(2)
        let at = now.addingTimeInterval(1)
        _ = try await stores.outbox.claimDueMail(limit: 10, now: at, lease: 60)
        try await stores.outbox.markMailSent(id: mails[0].id, now: at.addingTimeInterval(1))
        let later = try await stores.outbox.claimDueMail(limit: 10, now: at.addingTimeInterval(86_400), lease: 60)
        #expect(later.map(\.mail) == [mails[1]], "a delivered mail is not claimed again, even long after its lease")
        #expect(try await stores.outbox.mailStatus() == MailOutboxStatus(pending: 1, failed: 0, oldestPendingAt: mails[1].createdAt),
                "nor counted as pending")
        try await stores.outbox.markMailSent(id: UUID(), now: at)
        try await stores.outbox.markMailFailed(id: UUID(), retryAt: nil, error: "gone", now: at)
        #expect(try await stores.outbox.mailStatus() == MailOutboxStatus(pending: 1, failed: 0, oldestPendingAt: mails[1].createdAt),
                "marking an unknown mail changes nothing")
    }

    func aFailedMailIsDueAgainAtItsRetry() async throws {
        let (stores, mails) = try await storesWithMail(1)
        let mail = mails[0]
        var at = now.addingTimeInterval(1)
        #expect(try await stores.outbox.claimDueMail(limit: 10, now: at, lease: 600).map(\.failedAttempts) == [0])
        for attempt in 1...3 {
            let retryAt = at.addingTimeInterval(30)
            try await stores.outbox.markMailFailed(id: mail.id, retryAt: retryAt, error: "421 try again later", now: at)
            #expect(try await stores.outbox.claimDueMail(limit: 10, now: retryAt.addingTimeInterval(-0.001), lease: 600).isEmpty,
                    "a failed mail is not due before its retry")
            let due = try await stores.outbox.claimDueMail(limit: 10, now: retryAt, lease: 600)
            #expect(due == [MailJob(mail: mail, failedAttempts: attempt)], "it is due at its retry, before its old lease ends, counting the failures")
            at = retryAt
        }
        #expect(try await stores.outbox.mailStatus() == MailOutboxStatus(pending: 1, failed: 0, oldestPendingAt: mail.createdAt),
                "a mail to retry is pending")
        try await stores.outbox.markMailSent(id: mail.id, now: at)
        #expect(try await stores.outbox.mailStatus() == MailOutboxStatus(pending: 0, failed: 0, oldestPendingAt: nil))
    }

    func mailGivenUpIsNotClaimedAndCountsAsFailed() async throws {
        let (stores, mails) = try await storesWithMail(3)
        let at = now.addingTimeInterval(1)
        _ = try await stores.outbox.claimDueMail(limit: 10, now: at, lease: 60)
        try await stores.outbox.markMailFailed(id: mails[0].id, retryAt: nil, error: "550 mailbox unavailable", now: at)
        try await stores.outbox.markMailFailed(id: mails[1].id, retryAt: at, error: "timeout", now: at)
        let later = try await stores.outbox.claimDueMail(limit: 10, now: at.addingTimeInterval(86_400), lease: 60)
        #expect(later.map(\.mail) == [mails[1], mails[2]], "a mail given up on is never claimed again")
        #expect(try await stores.outbox.mailStatus() == MailOutboxStatus(pending: 2, failed: 1, oldestPendingAt: mails[1].createdAt),
                "it counts as failed, not pending")
        try await stores.outbox.markMailFailed(id: mails[1].id, retryAt: nil, error: "10 attempts failed", now: at.addingTimeInterval(86_400))
        #expect(try await stores.outbox.mailStatus() == MailOutboxStatus(pending: 1, failed: 2, oldestPendingAt: mails[2].createdAt))
    }

    func statusCountsPendingAndFailedMail() async throws {
        let (stores, mails) = try await storesWithMail(4, first: now.addingTimeInterval(-120))
        #expect(try await stores.outbox.mailStatus() == MailOutboxStatus(pending: 4, failed: 0, oldestPendingAt: mails[0].createdAt),
                "every committed mail is pending, dated by the oldest")
        let at = now.addingTimeInterval(1)
        _ = try await stores.outbox.claimDueMail(limit: 2, now: at, lease: 60)
        try await stores.outbox.markMailSent(id: mails[0].id, now: at)
        try await stores.outbox.markMailFailed(id: mails[1].id, retryAt: nil, error: "550", now: at)
        #expect(try await stores.outbox.mailStatus() == MailOutboxStatus(pending: 2, failed: 1, oldestPendingAt: mails[2].createdAt),
                "the oldest pending moves on as mail is delivered or given up")
    }

    func concurrentClaimersNeverShareAMail() async throws {
        let (stores, mails) = try await storesWithMail(50)
        let outbox = stores.outbox
        let at = now.addingTimeInterval(1)
        let claims = try await withThrowingTaskGroup(of: [UUID].self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var mine: [UUID] = []
                    while true {
                        let jobs = try await outbox.claimDueMail(limit: 3, now: at, lease: 600)
                        if jobs.isEmpty { return mine }
                        mine += jobs.map(\.mail.id)
                    }
                }
            }
            var all: [[UUID]] = []
            for try await claimed in group { all.append(claimed) }
            return all
        }
        let claimed = claims.flatMap { $0 }
        #expect(claimed.count == mails.count, "8 claimers at once claim each of 50 mails once, none twice")
        #expect(Set(claimed) == Set(mails.map(\.id)), "and every one of them")
    }
}
