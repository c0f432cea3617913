import Hummingbird
import HTTPTypes
import IdentityDomain
import Foundation

/// Reads request bodies under the rules of contract §1: a media type we accept (415), at most
/// `maxBodySize` bytes, refused before it is buffered whole (413), strict JSON (400), and
/// known fields of the right type only (422).
enum RequestBody {
    /// The largest body accepted.
    static let maxBodySize = 16 * 1024

    enum MediaType: Equatable {
        case json, form
    }

    /// The request's media type, if it is one of `accepted`; otherwise a 415 problem.
    static func mediaType(of request: Request, accepting accepted: [MediaType]) throws -> MediaType {
        let header = request.headers[.contentType] ?? ""
        // The common spellings, without Foundation's trimming (a visible share of a refresh).
        if header == "application/json", accepted.contains(.json) { return .json }
        if header == "application/x-www-form-urlencoded", accepted.contains(.form) { return .form }
        let parts = header.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        let essence = parts.first ?? ""
        let charsetOK = parts.dropFirst().allSatisfy { parameter in
            !parameter.hasPrefix("charset=") || ["charset=utf-8", "charset=\"utf-8\""].contains(parameter)
        }
        let found: MediaType? =
            switch essence {
            case "application/json": .json
            case "application/x-www-form-urlencoded": .form
            default: nil
            }
        guard let found, accepted.contains(found), charsetOK else {
            let names = accepted.map { $0 == .json ? "application/json" : "application/x-www-form-urlencoded" }
            throw Problem(.unsupportedMediaType, detail: "Content-Type must be " + names.joined(separator: " or "))
        }
        return found
    }

    /// The body's bytes; stops reading and answers 413 as soon as it exceeds the limit.
    static func bytes(of request: Request) async throws -> [UInt8] {
        if let declared = request.headers[.contentLength].flatMap(Int.init), declared > maxBodySize {
            throw tooLarge
        }
        do {
            let buffer = try await request.body.collect(upTo: maxBodySize)
            return Array(buffer.readableBytesView)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw tooLarge
        }
    }

    static let tooLarge = Problem(.contentTooLarge, detail: "the body must be at most \(maxBodySize) bytes")

    /// A JSON object body.
    static func jsonObject(of request: Request) async throws -> RequestFields {
        _ = try mediaType(of: request, accepting: [.json])
        return try parseJSONObject(try await bytes(of: request))
    }

    static func parseJSONObject(_ bytes: [UInt8]) throws -> RequestFields {
        guard case .object(let members) = try StrictJSONParser.parse(bytes) else {
            throw Problem(.unprocessableContent, title: "Validation failed", detail: "the body must be a JSON object",
                          errors: [FieldError(pointer: "", detail: "must be an object")])
        }
        return RequestFields(members)
    }

    /// An `application/x-www-form-urlencoded` body, strictly decoded.
    static func parseForm(_ bytes: [UInt8]) throws -> RequestFields {
        var members: [(key: String, value: JSONValue)] = []
        var seen = Set<String>()
        for pair in bytes.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            let kv = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            let key = try percentDecode(kv[0])
            let value = kv.count > 1 ? try percentDecode(kv[1]) : ""
            guard seen.insert(key).inserted else {
                throw Problem(.badRequest, title: "Malformed form", detail: "the field \(JSONWriter.quoted(key)) appears twice")
            }
            members.append((key, .string(value)))
        }
        return RequestFields(members)
    }

    private static func percentDecode(_ bytes: ArraySlice<UInt8>) throws -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "+") {
                out.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.endIndex, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
                else { throw Problem(.badRequest, title: "Malformed form", detail: "invalid percent-encoding") }
                out.append(high << 4 | low)
                index += 2
            } else {
                out.append(byte)
            }
            index += 1
        }
        guard let text = String(validating: out, as: UTF8.self) else {
            throw Problem(.badRequest, title: "Malformed form", detail: "form fields must be UTF-8")
        }
        if text.unicodeScalars.contains("\u{0}") {
            throw Problem(.badRequest, title: "Malformed form", detail: "NUL characters are not allowed")
        }
        return text
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// The top-level fields of a body, read with one `FieldError` per missing, mistyped or
/// unknown field (no silent mass assignment).
struct RequestFields {
    private let members: [(key: String, value: JSONValue)]
    private var errors: [FieldError] = []

    init(_ members: [(key: String, value: JSONValue)]) {
        self.members = members
    }

    /// A string field; records an error when it is required and absent, or not a string.
    mutating func string(_ name: String, required: Bool) -> String? {
        guard let value = members.first(where: { $0.key == name })?.value else {
            if required { errors.append(FieldError(pointer: pointer(name), detail: "is required")) }
            return nil
        }
        guard case .string(let string) = value else {
            errors.append(FieldError(pointer: pointer(name), detail: "must be a string, not \(value.typeName)"))
            return nil
        }
        return string
    }

    /// Whether the field is present at all.
    func has(_ name: String) -> Bool {
        members.contains { $0.key == name }
    }

    /// Every structural problem: missing or mistyped fields read so far, and any field not in `known`.
    func problems(known: Set<String>) -> [FieldError] {
        errors + members.filter { !known.contains($0.key) }.map {
            FieldError(pointer: pointer($0.key), detail: "is not a known field")
        }
    }

    private func pointer(_ key: String) -> String {
        FieldError.pointer(to: key)
    }
}
