import Foundation

/// Tells watchers that a job changed (records landed, status moved). Watchers re-read the store,
/// so a notification carries nothing and several coalesce into one.
public final class JobHub: @unchecked Sendable {
    private let lock = NSLock()
    private var watchers: [String: [UInt64: AsyncStream<Void>.Continuation]] = [:]
    private var nextID: UInt64 = 0

    public init() {}

    /// A stream that yields after every change to `jobID`. Subscribe before reading the store, so
    /// that no change falls between the read and the wait.
    public func changes(of jobID: String) -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id: UInt64 = lock.withLock {
            nextID += 1
            watchers[jobID, default: [:]][nextID] = continuation
            return nextID
        }
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            self.lock.withLock {
                self.watchers[jobID]?.removeValue(forKey: id)
                if self.watchers[jobID]?.isEmpty == true { self.watchers[jobID] = nil }
            }
        }
        return stream
    }

    public func publish(_ jobID: String) {
        let targets = lock.withLock { Array(watchers[jobID]?.values ?? [:].values) }
        for c in targets { c.yield() }
    }
}
