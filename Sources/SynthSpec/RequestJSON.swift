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

    /// Where a key stands in the body, as a field path (`advanced.shuffle`): the first place it
    /// occurs, outside the maps whose keys are the user's own names.
    static func path(of key: String, in bytes: [UInt8]) -> String? {
        guard let root = JSONValue.parse(bytes) else { return nil }
        let userMaps: Set<String> = ["categories", "output_split", "response_policy", "axis_distribution"]
        func search(_ v: JSONValue, _ prefix: String) -> String? {
            switch v {
            case .object(let pairs):
                for (k, _) in pairs where k == key { return prefix.isEmpty ? k : prefix + "." + k }
                for (k, child) in pairs {
                    let here = prefix.isEmpty ? k : prefix + "." + k
                    if userMaps.contains(k), case .object(let entries) = child {
                        // The map's keys are names; its values may be messages.
                        for (name, value) in entries { if let found = search(value, here + "." + name) { return found } }
                    } else if let found = search(child, here) {
                        return found
                    }
                }
            case .array(let items):
                for (i, item) in items.enumerated() { if let found = search(item, "\(prefix)[\(i)]") { return found } }
            default:
                break
            }
            return nil
        }
        return search(root, "")
    }

    static func fieldError(_ error: JSONDecodingError, _ bytes: [UInt8]) -> PBFieldError {
        switch error {
        case .unknownField(let name):
            return PBFieldError(path(of: name, in: bytes) ?? name, "unknown field: not part of the request", name)
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
