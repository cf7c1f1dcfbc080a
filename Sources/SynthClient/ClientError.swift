import SynthProto

/// A call that did not end OK: the server's status, or a transport failure.
public struct ClientError: Error, Sendable, CustomStringConvertible {
    public var status: PBStatus

    public init(_ status: PBStatus) {
        self.status = status
    }

    public init(_ code: PBStatusCode, _ message: String, errorCode: String = "") {
        status = PBStatus()
        status.code = code
        status.message = message
        status.errorCode = errorCode
    }

    public var code: PBStatusCode { status.code }

    /// Every part of the status on its own line: the code, the error code, the message, then each
    /// field error and suggestion.
    public var description: String {
        var lines = ["status: \(Self.name(status.code))"]
        if !status.errorCode.isEmpty { lines.append("error code: \(status.errorCode)") }
        lines.append("message: \(status.message)")
        for f in status.fieldErrors {
            lines.append("field \(f.field): \(f.rule)" + (f.value.isEmpty ? "" : " (got \(f.value))"))
        }
        for s in status.suggestions {
            lines.append("did you mean: \(s.word) -> \(s.suggestions.joined(separator: ", "))")
        }
        if status.retryAfterMs > 0 { lines.append("retry after: \(status.retryAfterMs) ms") }
        return lines.joined(separator: "\n")
    }

    /// gRPC's spelling of a code: INVALID_ARGUMENT and so on.
    public static func name(_ code: PBStatusCode) -> String {
        switch code {
        case .ok: return "OK"
        case .cancelled: return "CANCELLED"
        case .unknown: return "UNKNOWN"
        case .invalidArgument: return "INVALID_ARGUMENT"
        case .deadlineExceeded: return "DEADLINE_EXCEEDED"
        case .notFound: return "NOT_FOUND"
        case .alreadyExists: return "ALREADY_EXISTS"
        case .permissionDenied: return "PERMISSION_DENIED"
        case .resourceExhausted: return "RESOURCE_EXHAUSTED"
        case .failedPrecondition: return "FAILED_PRECONDITION"
        case .aborted: return "ABORTED"
        case .outOfRange: return "OUT_OF_RANGE"
        case .unimplemented: return "UNIMPLEMENTED"
        case .internal: return "INTERNAL"
        case .unavailable: return "UNAVAILABLE"
        case .dataLoss: return "DATA_LOSS"
        case .unauthenticated: return "UNAUTHENTICATED"
        case .UNRECOGNIZED(let n): return "CODE_\(n)"
        }
    }
}
