
/// Bounds how many tasks hold a permit at once; waiters are served first come, first served.
public final class AsyncSemaphore: Sendable {
    private struct State {
        var available: Int
        var waiters: [(id: UInt64, cont: CheckedContinuation<Void, Error>)] = []
        var nextID: UInt64 = 0
    }

    private let state: Locked<State>

    public init(_ permits: Int) {
        state = Locked(State(available: permits))
    }

    public func acquire() async throws {
        let id: UInt64 = state.withLock {
            $0.nextID += 1
            return $0.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, Error>) in
                // Decided once, under the lock: granted now, refused (already cancelled) or queued.
                // Only a queued waiter is ever resumed by someone else (release or onCancel).
                enum Outcome { case granted, cancelled, queued }
                let outcome: Outcome = state.withLock {
                    if Task.isCancelled { return .cancelled }
                    if $0.available > 0 {
                        $0.available -= 1
                        return .granted
                    }
                    $0.waiters.append((id, cont))
                    return .queued
                }
                switch outcome {
                case .granted: cont.resume()
                case .cancelled: cont.resume(throwing: CancellationError())
                case .queued: break
                }
            }
        } onCancel: {
            let waiter: CheckedContinuation<Void, Error>? = state.withLock {
                guard let i = $0.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return $0.waiters.remove(at: i).cont
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    public func release() {
        let next: CheckedContinuation<Void, Error>? = state.withLock {
            if $0.waiters.isEmpty {
                $0.available += 1
                return nil
            }
            return $0.waiters.removeFirst().cont
        }
        next?.resume()
    }

    /// Runs `body` holding one permit.
    public func withPermit<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await acquire()
        defer { release() }
        return try await body()
    }
}
