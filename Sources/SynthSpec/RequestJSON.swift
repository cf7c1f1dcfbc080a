import Foundation
import SwiftProtobuf
import SynthProto

/// The documentation's JSON body <-> JobRequest. The proto's field names are the JSON keys, so
/// this is the protobuf JSON mapping, strict about unknown fields.
public enum RequestJSON {
    /// Parses a JSON body. Unknown fields are refused by name; a wrong type names the problem.
    public static func parse(_ bytes: [UInt8]) throws -> PBJobRequest {
        var options = JSONDecodingOptions()
        options.ignoreUnknownFields = false
        do {
            return try PBJobRequest(jsonUTF8Bytes: bytes, options: options)
        } catch let error as JSONDecodingError {
            throw SpecError(.malformedRequest, "the request body is not a valid request", fieldErrors: [fieldError(error, bytes)])
        } catch {
            throw SpecError(.malformedRequest, "the request body is not a valid request: \(error)")
        }
    }

    public static func parse(_ text: String) throws -> PBJobRequest { try parse(Array(text.utf8)) }

    static func fieldError(_ error: JSONDecodingError, _ bytes: [UInt8]) -> PBFieldError {
        switch error {
        case .unknownField(let name):
            return PBFieldError(name, "unknown field: not part of the request", name)
        case .malformedNumber, .numberRange:
            return PBFieldError("(body)", "a number is malformed or out of range for its field", String(describing: error))
        case .unquotedMapKey, .malformedString, .malformedBool, .illegalNull, .missingFieldNames:
            return PBFieldError("(body)", "a value has the wrong type for its field", String(describing: error))
        case .truncated:
            return PBFieldError("(body)", "the JSON ends early", "")
        default:
            return PBFieldError("(body)", "the body must be one JSON object matching the request", String(describing: error))
        }
    }

    /// The request as JSON with the documentation's field names.
    public static func render(_ request: PBJobRequest) -> String {
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        return (try? request.jsonString(options: options)) ?? "{}"
    }
}
