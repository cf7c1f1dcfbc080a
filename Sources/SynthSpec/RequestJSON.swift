import Foundation
import SwiftProtobuf
import SynthProto

/// A request body as read: the request that decodes from it, and what its shape refused.
public struct ParsedRequest: Sendable {
    public var request: PBJobRequest
    /// Unknown fields, wrong types and repeated keys, each with its path.
    public var shapeErrors: [PBFieldError]
    /// The paths of wrong types and repeated keys: rules about them are not reported on top.
    public var refusedPaths: [String]
    /// Lists and maps the body gives but leaves empty (a decoded message cannot tell them from
    /// absent ones; `"invariants": []` breaks the 1-to-10 rule).
    public var emptyLists: Set<String>

    public init(_ request: PBJobRequest) {
        self.request = request
        shapeErrors = []
        refusedPaths = []
        emptyLists = []
    }
}

/// The documentation's JSON body <-> JobRequest. The proto's field names are the JSON keys, so
/// this is the protobuf JSON mapping, read strictly and with every problem reported at once.
public enum RequestJSON {
    /// Reads a body: JSON text whose one value is an object. Throws MALFORMED_REQUEST (with the
    /// line and column) only when the text is not JSON or is over the limits; unknown fields and
    /// wrong types are returned, with the request that the rest of the body makes, so that the
    /// validator reports them beside its own findings.
    public static func read(_ bytes: [UInt8]) throws -> ParsedRequest {
        guard bytes.count <= RequestLimits.requestJSONBytes else {
            throw SpecError(.malformedRequest, "the request body is not a valid request",
                            fieldErrors: [PBFieldError("(body)", "at most \(RequestLimits.requestJSONBytes) bytes (no valid request is longer)", "\(bytes.count) bytes")])
        }
        let root: JSONValue
        do {
            root = try JSONValue.parse(bytes, maxValues: RequestLimits.requestJSONValues)
        } catch {
            throw SpecError(.malformedRequest, "the request body is not valid JSON: \(error)",
                            fieldErrors: [PBFieldError("(body)", "must be JSON: \(error.problem)", "line \(error.line), column \(error.column)")])
        }
        guard case .object = root else {
            throw SpecError(.malformedRequest, "the request body must be one JSON object",
                            fieldErrors: [PBFieldError("(body)", "must be a JSON object", RequestShape.describe(root))])
        }
        var walk = RequestShape.Walk()
        let cleaned = RequestShape.clean(root, &walk)
        var options = JSONDecodingOptions()
        options.ignoreUnknownFields = false
        var parsed: ParsedRequest
        do {
            parsed = ParsedRequest(try PBJobRequest(jsonUTF8Bytes: cleaned.serialized(), options: options))
        } catch {
            // The shape table and protobuf disagree: a defect of ours, said as it is.
            throw SpecError(.malformedRequest, "the request body is not a valid request: \(error)")
        }
        parsed.shapeErrors = walk.errors.map { PBFieldError($0.0, $0.1, $0.2) }
        parsed.refusedPaths = walk.refused
        parsed.emptyLists = walk.emptyLists
        return parsed
    }

    /// Reads a body that must have no unknown field or wrong type (the rules are the
    /// validator's): throws VALIDATION_ERROR listing every such problem.
    public static func parse(_ bytes: [UInt8]) throws -> PBJobRequest {
        let parsed = try read(bytes)
        if !parsed.shapeErrors.isEmpty {
            var errors = Validator.Errors()
            for e in parsed.shapeErrors { errors.add(e.field, e.rule, e.value) }
            if let error = errors.thrown() { throw error }
        }
        return parsed.request
    }

    public static func parse(_ text: String) throws -> PBJobRequest { try parse(Array(text.utf8)) }

    /// The request as JSON with the documentation's field names.
    public static func render(_ request: PBJobRequest) -> String {
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        return (try? request.jsonString(options: options)) ?? "{}"
    }
}
