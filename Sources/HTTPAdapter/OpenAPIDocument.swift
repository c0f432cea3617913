import Foundation

/// The OpenAPI 3.1 description of every route (`GET /openapi.json`), shipped as the resource
/// `openapi.json` and kept in step with `IdentityHTTP.routeTable` by the tests.
enum OpenAPIDocument {
    static let json: String = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json"),
              let text = try? String(contentsOf: url, encoding: .utf8)
        else { preconditionFailure("the openapi.json resource is missing from the HTTPAdapter bundle") }
        return text
    }()
}
