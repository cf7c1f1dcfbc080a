import Foundation
import Synchronization

/// Threads of their own for work that blocks: LMDB write transactions (which wait on fsync) and
/// CPU-heavy steps such as the near-duplicate join. Swift's cooperative pool has one thread per
/// core (two here); work that holds one of them for milliseconds delays every other task in the
/// process, a cheap `Health` call included. `run` hands the work to the lane's threads and
/// suspends the caller until it is done, so the pool's threads stay free.
///
/// Lanes live as long as the process: the two shared ones below are all synthd needs.
public final class BlockingLane: Sendable {
    private let queue = Mutex<[@Sendable () -> Void]>([])
    private let wake = DispatchSemaphore(value: 0)
    public let name: String

    /// Store writes: one thread, since LMDB lets one write transaction run at a time anyway.
    public static let writes = BlockingLane(name: "synthd-writes", threads: 1)
    /// Computation (the near-duplicate check, split hashing): a thread per core.
    public static let compute = BlockingLane(name: "synthd-compute", threads: max(1, ProcessInfo.processInfo.activeProcessorCount))

    public init(name: String, threads: Int) {
        self.name = name
        for i in 0..<max(1, threads) {
            let thread = Thread { [self] in loop() }
            thread.name = threads == 1 ? name : "\(name)-\(i)"
            thread.start()
        }
    }

    private func loop() {
        while true {
            wake.wait()
            let item = queue.withLock { $0.isEmpty ? nil : $0.removeFirst() }
            item?()
        }
    }

    /// Hands `body` to the lane's threads and returns at once (work nobody waits for).
    public func submit(_ body: @escaping @Sendable () -> Void) {
        queue.withLock { $0.append(body) }
        wake.signal()
    }

    /// Runs `body` on one of the lane's threads and returns what it returns (or throws what it throws).
    /// Work already handed over runs to its end even if the caller is cancelled.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
            queue.withLock { $0.append { cont.resume(with: Result { try body() }) } }
            wake.signal()
        }
    }

    /// The same for work that cannot fail.
    public func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (cont: CheckedContinuation<T, Never>) in
            queue.withLock { $0.append { cont.resume(returning: body()) } }
            wake.signal()
        }
    }
}
