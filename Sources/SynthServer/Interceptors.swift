import SynthAPI
import SynthCore

/// A call as the interceptors see it, before its request is decoded.
struct InboundCall: Sendable {
    let method: MethodInfo
    let apiKey: String
    /// Told once the call's key proves valid (the connection then takes full-size frames).
    let authenticated: @Sendable (Caller) -> Void
    /// Set by authentication for every method that needs a key.
    var caller: Caller?
}

/// Runs around every call, in order, before its handler: what applies to all methods alike.
protocol CallInterceptor: Sendable {
    func intercept(_ call: inout InboundCall) async throws
}

/// Every method but the open ones needs a valid key, whose scope allows the method; the call's
/// caller is its org and key.
struct Authentication: CallInterceptor {
    let core: JobService

    func intercept(_ call: inout InboundCall) async throws {
        guard call.method.scope != .open else { return }
        let caller = try await core.authenticate(call.apiKey)
        call.caller = caller
        call.authenticated(caller)
        try core.authorize(caller, method: call.method.name, scope: call.method.scope)
    }
}

/// The per-org call rate: past it, RESOURCE_EXHAUSTED / RATE_LIMITED with the time to wait. Open
/// methods are not counted.
struct RateLimit: CallInterceptor {
    let limiter: OrgRateLimiter
    let perMinute: Int

    func intercept(_ call: inout InboundCall) async throws {
        guard let caller = call.caller, let wait = limiter.admit(caller.org) else { return }
        var e = RPCError(.resourceExhausted, "rate limit: \(perMinute) calls a minute per org; retry after the time given", errorCode: "RATE_LIMITED")
        e.status.retryAfterMs = UInt64(wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000)
        throw e
    }
}
