import Foundation
import SwiftProtobuf
import SynthAPI
import SynthProto

/// What every call passes before its handler, on every edge alike (the framed protocol and gRPC
/// share one gate, so one org's calls count once against its rate whichever way they come):
/// authentication, the key's scope, the per-org call rate; then the request's bounds and its
/// strict decoding.
public final class CallGate: Sendable {
    let core: JobService
    let limiter: OrgRateLimiter?
    let perMinute: Int

    /// `perMinute` 0: no rate limit.
    public init(core: JobService, perMinute: Int, burst: Int) {
        self.core = core
        self.perMinute = perMinute
        limiter = OrgRateLimiter(perMinute: perMinute, burst: burst)
    }

    /// The call's caller, once its key is valid, allowed the method, and its org under its rate.
    /// Open methods need no key, are not counted, and have an empty caller. `authenticated` is
    /// told as soon as the key proves valid (before scope and rate).
    public func admit(_ method: MethodInfo, apiKey: String, authenticated: (Caller) -> Void = { _ in }) async throws -> Caller {
        guard method.scope != .open else { return Caller(org: "", keyID: "") }
        let caller = try await core.authenticate(apiKey)
        authenticated(caller)
        try core.authorize(caller, method: method.name, scope: method.scope)
        if let limiter, let wait = limiter.admit(caller.org) {
            var e = RPCError(.resourceExhausted, "rate limit: \(perMinute) calls a minute per org; retry after the time given",
                             errorCode: "RATE_LIMITED")
            e.status.retryAfterMs = UInt64(wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000)
            throw e
        }
        return caller
    }

    /// Decodes a call's request as `M`, the method's request type: refused before decoding when it
    /// is larger than any valid one (or, for Generate and Plan, its lists are far over their
    /// maximum), and refused after when it holds fields `M` does not define, at any depth.
    public static func decode<M: SwiftProtobuf.Message>(_ bytes: some Collection<UInt8>, for method: MethodInfo) throws -> M {
        let most = largestRequest(method)
        guard bytes.count <= most else {
            throw RPCError(.invalidArgument, "the \(method.name) request is \(bytes.count) bytes; no valid one is larger than \(most) bytes",
                           errorCode: "REQUEST_TOO_LARGE")
        }
        let body = Array(bytes)
        if method.name == Methods.generate.info.name || method.name == Methods.plan.info.name {
            // Lists of hundreds of thousands of empty items are refused before they are decoded.
            try JobService.prescanGenerateOrPlan(body)
        }
        let message: M
        do {
            message = try M(serializedBytes: body)
        } catch {
            throw RPCError.invalid("the request is not a valid \(M.protoMessageName)")
        }
        guard message.unknownFields.data.isEmpty else {
            throw RPCError.invalid("the request has fields that \(M.protoMessageName) does not define")
        }
        // Unknown fields deeper down survive a decode too: decoding again without them and
        // comparing sizes finds them wherever they are.
        var options = BinaryDecodingOptions()
        options.discardUnknownFields = true
        if let stripped = try? M(serializedBytes: body, options: options),
           let a: [UInt8] = try? stripped.serializedBytes(), let b: [UInt8] = try? message.serializedBytes(), a.count != b.count {
            throw RPCError.invalid("the request has fields inside it that \(M.protoMessageName) does not define")
        }
        return message
    }

    /// The largest request body the method can validly take.
    public static func largestRequest(_ method: MethodInfo) -> Int {
        // Ids, a page token, a status, a key name: a few hundred bytes at most.
        method.name == Methods.generate.info.name || method.name == Methods.plan.info.name ? JobService.largestGenerateRequestBytes : 8192
    }

    /// The status of a call still open when the server stops: UNAVAILABLE, which clients retry.
    public static let stopping = RPCError(.unavailable, "the server is shutting down; retry the call (a watch resumes with after_seq)",
                                          errorCode: "SHUTTING_DOWN")
}
