import Foundation
import IdentityDomain
import IdentityPorts

/// How commands and replies look on the broker. A command message has the command's name as
/// its `type` property and the command's fields as a JSON body; a reply is
/// `{"outcome":"user","user":{...}}`, `{"outcome":"done"}`, `{"outcome":"rejected","reason":...}`
/// or `{"outcome":"unavailable","backend":...}`. Instants are epoch milliseconds.
enum CommandWire {
    struct Undecodable: Error, CustomStringConvertible {
        let description: String
    }

    static func body(of command: IdentityCommand) -> Data {
        switch command {
        case .registerUser(let command): encode(command)
        case .updateProfile(let command): encode(command)
        case .deleteAccount(let command): encode(command)
        case .revokeToken(let command): encode(command)
        case .rehashPassword(let command): encode(command)
        case .verifyEmail(let command): encode(command)
        case .resendVerification(let command): encode(command)
        case .requestPasswordReset(let command): encode(command)
        case .confirmPasswordReset(let command): encode(command)
        }
    }

    /// The `type` of every command a worker decodes.
    static let commandTypes: Set<String> = ["RegisterUser", "UpdateProfile", "DeleteAccount", "RevokeToken", "RehashPassword"]

    static func command(type: String?, body: Data) throws(Undecodable) -> IdentityCommand {
        do {
            switch type {
            case "RegisterUser": return .registerUser(try decoder.decode(RegisterUser.self, from: body))
            case "UpdateProfile": return .updateProfile(try decoder.decode(UpdateProfile.self, from: body))
            case "DeleteAccount": return .deleteAccount(try decoder.decode(DeleteAccount.self, from: body))
            case "RevokeToken": return .revokeToken(try decoder.decode(RevokeToken.self, from: body))
            case "RehashPassword": return .rehashPassword(try decoder.decode(RehashPassword.self, from: body))
            case "VerifyEmail": return .verifyEmail(try decoder.decode(VerifyEmail.self, from: body))
            case "ResendVerification": return .resendVerification(try decoder.decode(ResendVerification.self, from: body))
            case "RequestPasswordReset": return .requestPasswordReset(try decoder.decode(RequestPasswordReset.self, from: body))
            case "ConfirmPasswordReset": return .confirmPasswordReset(try decoder.decode(ConfirmPasswordReset.self, from: body))
            default: throw Undecodable(description: "unknown command type \(type.map { "\"\($0.prefix(64))\"" } ?? "(none)")")
            }
        } catch let error as Undecodable {
            throw error
        } catch {
            throw Undecodable(description: "the body is not a valid \(type ?? "command")")
        }
    }

    private struct Reply: Codable {
        var outcome: String
        var user: UserRecord?
        var reason: CommandRejection?
        var backend: String?
    }

    static func body(of reply: CommandReply) -> Data {
        switch reply {
        case .user(let user): encode(Reply(outcome: "user", user: user))
        case .done: encode(Reply(outcome: "done"))
        case .rejected(let reason): encode(Reply(outcome: "rejected", reason: reason))
        }
    }

    static func unavailableBody(backend: String) -> Data {
        encode(Reply(outcome: "unavailable", backend: backend))
    }

    /// The reply in `body`; `BackendUnavailable` when the worker could not apply the command.
    static func reply(from body: Data) throws -> CommandReply {
        guard let reply = try? decoder.decode(Reply.self, from: body) else {
            throw Undecodable(description: "the reply is not valid")
        }
        switch (reply.outcome, reply.user, reply.reason) {
        case ("user", let user?, _): return .user(user)
        case ("done", _, _): return .done
        case ("rejected", _, let reason?): return .rejected(reason)
        case ("unavailable", _, _): throw BackendUnavailable(backend: reply.backend ?? "worker")
        default: throw Undecodable(description: "the reply is not valid")
        }
    }

    private static func encode<T: Encodable>(_ value: T) -> Data {
        // Plain structs of strings, numbers and dates: encoding cannot fail.
        (try? encoder.encode(value)) ?? Data("{}".utf8)
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .millisecondsSince1970
        return encoder
    }()

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return decoder
    }()
}
