import Foundation
import SwiftProtobuf
import SynthProto

/// The entry for fuzzing a request (Sources/Fuzz, `make fuzz`): as a JSON body (RequestJSON and the
/// validator) or as a binary GenerateRequest (the prescan, the decoder and the validator), as the
/// server reads each. A body that reads and validates must render back to JSON that reads to the
/// same request.
public enum SpecFuzz {
    static let validator = Validator(maxCount: 100_000)

    public static func request(_ data: [UInt8]) {
        guard let first = data.first else { return }
        let body = Array(data.dropFirst())
        if first & 1 == 0 {
            guard let parsed = try? RequestJSON.read(body) else { return }
            do {
                try validator.validate(parsed)
            } catch let e as SpecError {
                precondition(!e.fieldErrors.isEmpty || e.code != .validation, "a VALIDATION_ERROR without a field error")
                return
            } catch {
                preconditionFailure("the validator threw \(error)")
            }
            // Valid: what the server would store renders and reads back unchanged.
            let rendered = RequestJSON.render(parsed.request)
            guard let again = try? RequestJSON.read(Array(rendered.utf8)) else {
                preconditionFailure("a valid request renders to JSON that does not read: \(rendered)")
            }
            precondition(again.request == parsed.request, "a valid request changes when rendered and read again: \(rendered)")
        } else {
            guard (try? RequestPrescan.check(generateOrPlan: body)) != nil,
                  let request = try? PBGenerateRequest(serializedBytes: body) else { return }
            _ = try? validator.validate(request)
        }
    }
}
