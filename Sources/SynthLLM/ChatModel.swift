import Foundation
import SynthConcurrency

/// A chat model that answers a structured request: what the engine asks for each record, each
/// judgement and each invariant check. `LLMClient` is the one that speaks HTTP to a provider; the
/// engine's own tests use a scripted one in process.
public protocol ChatModel: Sendable {
    /// The servers that answer for it, each with its capacity: the scheduler's pool for it.
    var endpoints: [RequestScheduler.EndpointSpec] { get }
    /// Why no request can succeed (a provider with no API key, say), or nil when it can be asked.
    var unavailableReason: String? { get }
    /// One answer for `requester`, each try sent when and where its scheduler grants. Throws
    /// `ProviderError` (fatal, exhausted, unusable, unreachable) or `CancellationError`.
    func complete(_ request: ChatRequest, for requester: Requester) async throws -> ChatCompletion
    /// Whether the model cannot be reached now: for how long no connection could be made, and the
    /// last connection error (no URL: it can carry credentials). Nil once a request got an answer.
    var unreachable: (seconds: Int, error: String)? { get }
}

extension ChatModel {
    public var unreachable: (seconds: Int, error: String)? { nil }
    /// Requests it takes at once, all endpoints together.
    public var capacity: Int { endpoints.reduce(0) { $0 + $1.capacity } }
}

/// Who a request is for: the job's ticket with the scheduler, and the pool of the provider asked.
public struct Requester: Sendable {
    public let scheduler: RequestScheduler
    public let ticket: RequestScheduler.Ticket
    public let pool: Int
    /// The job's first fatal answer: set before that request's grant goes back, and asked each
    /// time a grant is given, so requests still waiting then never send.
    public let halt: HaltFlag?
    /// The spend limits the job's requests count against, if any.
    public let spend: SpendGuard?

    public init(scheduler: RequestScheduler, ticket: RequestScheduler.Ticket, pool: Int, halt: HaltFlag? = nil, spend: SpendGuard? = nil) {
        self.scheduler = scheduler
        self.ticket = ticket
        self.pool = pool
        self.halt = halt
        self.spend = spend
    }

    /// A grant for one try, unless the job has halted.
    public func acquire(avoiding: Int? = nil) async throws -> RequestScheduler.Grant {
        let grant = try await scheduler.acquire(pool: pool, ticket: ticket, avoiding: avoiding)
        if let fatal = halt?.error {
            scheduler.release(grant, .unknown)
            throw fatal
        }
        return grant
    }

    /// Runs `body` (given the endpoint) holding one grant; an error it throws counts against
    /// the endpoint unless it is a cancellation or an answer that could not be used.
    public func withGrant<T: Sendable>(_ body: (Int) async throws -> T) async throws -> T {
        let grant = try await acquire()
        do {
            let value = try await body(grant.endpoint)
            scheduler.release(grant, .answered)
            return value
        } catch let e as ProviderError where e.kind == .unreachable || e.kind == .exhausted {
            scheduler.release(grant, .failed(e.message))
            throw e
        } catch let e as ProviderError where e.kind == .fatal || e.kind == .unusable || e.kind == .capped {
            if e.kind != .unusable { halt?.set(e) }
            scheduler.release(grant, .answered)
            throw e
        } catch {
            scheduler.release(grant, .unknown)
            throw error
        }
    }
}

extension LLMClient: ChatModel {
    public var endpoints: [RequestScheduler.EndpointSpec] {
        Self.endpointSpecs(config)
    }

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

/// The first fatal answer of a job, shared by its requests: those still waiting to send end with
/// it too, whichever of them the job hears of first.
public final class HaltFlag: Sendable {
    private let first = Locked<ProviderError?>(nil)
    public init() {}
    public var error: ProviderError? { first.withLock { $0 } }
    public func set(_ e: ProviderError) { first.withLock { if $0 == nil { $0 = e } } }
}
