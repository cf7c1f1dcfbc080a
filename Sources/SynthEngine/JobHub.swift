import SynthConcurrency

/// Tells watchers that a job changed (records landed, status moved). Watchers re-read the store,
/// so a notification carries nothing and several coalesce into one.
public final class JobHub: Sendable {
    private struct State {
        var watchers: [String: [UInt64: AsyncStream<Void>.Continuation]] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Locked(State())

    public init() {}

    /// A stream that yields after every change to `jobID`. Subscribe before reading the store, so
    /// that no change falls between the read and the wait.
    public func changes(of jobID: String) -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id: UInt64 = state.withLock {
            $0.nextID += 1
            $0.watchers[jobID, default: [:]][$0.nextID] = continuation
            return $0.nextID
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock {
                $0.watchers[jobID]?.removeValue(forKey: id)
                if $0.watchers[jobID]?.isEmpty == true { $0.watchers[jobID] = nil }
            }
        }
        return stream
    }

    public func publish(_ jobID: String) {
        let targets = state.withLock { Array($0.watchers[jobID]?.values ?? [:].values) }
        for c in targets { c.yield() }
    }
}
