import Foundation

/// A chat model that answers a structured request: what the engine asks for each record, each
/// judgement and each invariant check. `LLMClient` is the one that speaks HTTP to a provider; the
/// engine's own tests use a scripted one in process.
public protocol ChatModel: Sendable {
    /// The most requests it takes at once (a job's concurrency is capped by it).
    var maxInFlight: Int { get }
    /// Why no request can succeed (a provider with no API key, say), or nil when it can be asked.
    var unavailableReason: String? { get }
    /// One answer. Throws `ProviderError` (fatal, exhausted, unusable, unreachable) or `CancellationError`.
    func complete(_ request: ChatRequest) async throws -> ChatCompletion
    /// Whether the model cannot be reached now: for how long no connection could be made, and the
    /// last connection error (no URL: it can carry credentials). Nil once a request got an answer.
    var unreachable: (seconds: Int, error: String)? { get }
}

extension ChatModel {
    public var unreachable: (seconds: Int, error: String)? { nil }
}

extension LLMClient: ChatModel {
    public var maxInFlight: Int { config.maxInFlight }

    public var unreachable: (seconds: Int, error: String)? {
        reachability.withLock { r in
            guard let since = r.since else { return nil }
            return (Int(Date().timeIntervalSince(since)), r.lastError)
        }
    }

    public var unavailableReason: String? {
        guard config.lacksItsKey else { return nil }
        let variable = ProviderConfig.environmentPrefix(config.kind) + "_API_KEY"
        return "provider \(config.name) has no API key: set \(variable) or its api_key in the config file"
    }
}
