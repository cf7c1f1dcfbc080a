import Foundation
import SynthConcurrency

/// A sum of dollars that provider requests may not pass: a job's `max_provider_cost_usd`, or an
/// org's monthly provider budget. Before a request is sent, the most it can cost (its prompt and
/// its whole `max_tokens` of answer, at the model's price) is held; when its answer is in, the
/// hold gives way to what it really cost. A request whose hold would take spent plus held past the
/// limit is not sent: so the limit is never passed, whatever the answers turn out to cost.
public final class SpendLimit: Sendable {
    /// How the limit is named in the reason a job ends with.
    public let name: String
    public let dollars: Double
    private struct State {
        var spent: Double
        var held: Double
        /// The period the spend counts in ("2026-12" for a monthly budget); a new one starts at 0.
        var period: String
        /// Requests waiting for holds of requests in flight to give way to what they cost.
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state: Locked<State>
    private let period: (@Sendable () -> String)?

    /// `spent`: what has been spent already (a resumed job's usage, the org's month so far).
    /// `period`, for a budget that starts again each month: the current period's name.
    public init(name: String, dollars: Double, spent: Double, period: (@Sendable () -> String)? = nil) {
        self.name = name
        self.dollars = dollars
        self.period = period
        state = Locked(State(spent: spent, held: 0, period: period?() ?? ""))
    }

    /// Spent and held now.
    public var figures: (spent: Double, held: Double) { state.withLock { ($0.spent, $0.held) } }

    private enum Try { case held, capped(Double), wait }

    /// Holds `usd`: at once when it fits beside what is spent and held; after requests in flight
    /// have settled when it would fit without their holds; never (nil: what is spent) when it
    /// cannot fit even with nothing in flight.
    fileprivate func hold(_ usd: Double) async -> Double? {
        let slack = 1e-12
        while true {
            let now = period?()
            var outcome = Try.wait
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                outcome = state.withLock { s -> Try in
                    if let now, now != s.period {
                        s.period = now
                        s.spent = 0
                    }
                    if s.spent + s.held + usd <= dollars + slack {
                        s.held += usd
                        return .held
                    }
                    if s.held <= slack || s.spent + usd > dollars + slack { return .capped(s.spent) }
                    s.waiters.append(c)
                    return .wait
                }
                if case .wait = outcome { return }
                c.resume()
            }
            switch outcome {
            case .held: return nil
            case .capped(let spent): return spent
            case .wait: continue
            }
        }
    }

    fileprivate func release(held: Double, spent: Double) {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.held = max(0, s.held - held)
            s.spent += spent
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }
}

/// The limits one job's requests count against (its own cap and its org's budget).
public struct SpendGuard: Sendable {
    public let limits: [SpendLimit]

    public init(_ limits: [SpendLimit]) { self.limits = limits }

    /// Holds `usd` against every limit (waiting, while requests in flight may leave room), or
    /// none of them and throws the error that ends the job, naming the limit it would pass.
    public func hold(_ usd: Double, provider: String) async throws {
        for (i, limit) in limits.enumerated() {
            if let spent = await limit.hold(usd) {
                for earlier in limits[..<i] { earlier.release(held: usd, spent: 0) }
                throw ProviderError(kind: .capped, provider: provider, message: String(
                    format: "%@ of $%.4f was reached: $%.4f spent, and the next request could cost up to $%.4f",
                    limit.name, limit.dollars, spent, usd))
            }
        }
    }

    /// Gives back a hold, counting what the request really cost.
    public func settle(held: Double, spent: Double) {
        for limit in limits { limit.release(held: held, spent: spent) }
    }
}
