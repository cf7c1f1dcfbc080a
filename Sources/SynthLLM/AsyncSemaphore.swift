import Foundation

/// Bounds how many tasks hold a permit at once; waiters are served first come, first served.
public final class AsyncSemaphore: @unchecked Sendable {
    private let lock = NSLock()
    private var available: Int
    private var waiters: [(id: UInt64, cont: CheckedContinuation<Void, Error>)] = []
    private var nextID: UInt64 = 0

    public init(_ permits: Int) {
        available = permits
    }

    public func acquire() async throws {
        let id: UInt64 = lock.withLock {
            nextID += 1
            return nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, Error>) in
                // Decided once, under the lock: granted now, refused (already cancelled) or queued.
                // Only a queued waiter is ever resumed by someone else (release or onCancel).
                enum Outcome { case granted, cancelled, queued }
                let outcome: Outcome = lock.withLock {
                    if Task.isCancelled { return .cancelled }
                    if available > 0 {
                        available -= 1
                        return .granted
                    }
                    waiters.append((id, cont))
                    return .queued
                }
                switch outcome {
                case .granted: cont.resume()
                case .cancelled: cont.resume(throwing: CancellationError())
                case .queued: break
                }
            }
        } onCancel: {
            let waiter: CheckedContinuation<Void, Error>? = lock.withLock {
                guard let i = waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return waiters.remove(at: i).cont
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    public func release() {
        let next: CheckedContinuation<Void, Error>? = lock.withLock {
            if waiters.isEmpty {
                available += 1
                return nil
            }
            return waiters.removeFirst().cont
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
