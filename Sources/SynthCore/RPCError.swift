import SynthEngine
import SynthLLM
import SynthProto
import SynthSpec
import SynthStore

/// A call's failure as the client sees it: a status code, the documented error code where there
/// is one, and a message for people. Built only from what is safe to show: never a path, a stack
/// or a credential.
public struct RPCError: Error, Sendable, CustomStringConvertible {
    public var status: PBStatus
    /// What went wrong underneath, for the server's log: never sent to the client.
    public var cause: (any Error)?

    public init(_ code: PBStatusCode, _ message: String, errorCode: String = "", cause: (any Error)? = nil) {
        status = PBStatus()
        status.code = code
        status.message = message
        status.errorCode = errorCode
        self.cause = cause
    }

    /// Whether the failure is the server's own (INTERNAL, DATA_LOSS, a storage failure): each is
    /// logged with its cause.
    public var isServerFault: Bool {
        status.code == .internal || status.code == .dataLoss || status.errorCode == "STORAGE_FULL"
    }

    public var description: String { "\(status.code): \(status.message)" }

    public static func invalid(_ message: String) -> RPCError { RPCError(.invalidArgument, message) }
    public static func notFound(_ what: String) -> RPCError { RPCError(.notFound, "\(what) not found") }
    public static let unauthenticated = RPCError(.unauthenticated, "missing API key: pass one in the call's api_key")

    /// The one place other modules' errors become statuses.
    public static func from(_ error: Error) -> RPCError {
        switch error {
        case let e as RPCError:
            return e
        case let e as SpecError:
            // Every spec error is the documentation's 400/422: INVALID_ARGUMENT with its own error code.
            var r = RPCError(.invalidArgument, e.message, errorCode: e.code.rawValue)
            r.status.fieldErrors = e.fieldErrors
            r.status.suggestions = e.suggestions
            return r
        case let e as StoreError:
            switch e.code {
            case .notFound: return RPCError(.notFound, e.message)
            case .conflict: return RPCError(.failedPrecondition, e.message)
            // The message names the job and the record or entry, never a path.
            case .corrupt: return RPCError(.dataLoss, e.message, errorCode: "DATA_LOSS", cause: e)
            case .noSpace: return RPCError(.resourceExhausted, "the server's storage is full; retry once an operator has freed space",
                                           errorCode: "STORAGE_FULL", cause: e)
            default: return RPCError(.internal, "storage error", cause: e)
            }
        case let e as EngineError:
            return RPCError(.failedPrecondition, e.message)
        case let e as ProviderError:
            return RPCError(.unavailable, Redact.secrets(e.description))
        case is CancellationError:
            return RPCError(.cancelled, "call cancelled")
        default:
            return RPCError(.internal, "internal error", cause: error)
        }
    }
}
