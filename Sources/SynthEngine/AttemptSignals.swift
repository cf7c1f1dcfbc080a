import SynthConcurrency
import SynthLLM

/// Whether a job's generator can be reached: since when it cannot, the last connection error,
/// and the wait before a slot that could not reach it goes back. The job's detail says it waits.
final class Reachability: Sendable {
    private struct State {
        var since: ContinuousClock.Instant?
        var lastError = ""
        var failures = 0
    }

    private let state = Locked(State())
    let jobID: String
    let provider: String
    let engine: Engine

    init(jobID: String, provider: String, engine: Engine) {
        self.jobID = jobID
        self.provider = provider
        self.engine = engine
    }

    var since: ContinuousClock.Instant? { state.withLock { $0.since } }
    var lastError: String { state.withLock { $0.lastError } }

    /// A request got an answer (whatever it was).
    func answered() {
        let was = state.withLock { s -> Bool in
            defer { s = State() }
            return s.since != nil
        }
        if was { engine.setWaiting(jobID, nil) }
    }

    /// A request found no way through; returns how long its slot waits: 1 s, doubling with each
    /// failure in a row, at most 30 s.
    func failed(_ error: String) -> Duration {
        let failures = state.withLock { s -> Int in
            if s.since == nil { s.since = .now }
            s.lastError = error
            s.failures += 1
            return s.failures
        }
        engine.setWaiting(jobID, "waiting for provider \(provider), which cannot be reached: \(error); "
                          + "the job goes on when it answers, or ends after \(Int(engine.config.providerUnreachableTimeoutSeconds)) s")
        return .milliseconds(Int64(min(30_000, 1000 << min(failures - 1, 5))))
    }
}
