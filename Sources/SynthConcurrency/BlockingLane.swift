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
    private let queue = Locked<[@Sendable () -> Void]>([])
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
        let handoff = Handoff<Result<T, Error>>()
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            queue.withLock { $0.append { handoff.put(Result { try body() }); cont.resume() } }
            wake.signal()
        }
        return try handoff.take().get()
    }

    /// The same for work that cannot fail.
    public func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        let handoff = Handoff<T>()
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            queue.withLock { $0.append { handoff.put(body()); cont.resume() } }
            wake.signal()
        }
        return handoff.take()
    }
}

/// A lane's result on its way back to the task that waits for it, published with a release store
/// and read after an acquire load. The continuation alone orders the two for the machine, but not
/// for ThreadSanitizer: when the lane's thread resumes it before the task has suspended (quick
/// work), the runtime's fast path carries no annotation, and the task's first reads of the result
/// are reported as a race with the lane's writes. The atomic costs nothing next to the thread hop.
private final class Handoff<Value>: @unchecked Sendable {
    private var value: Value?
    private let ready = Atomic<Bool>(false)

    func put(_ v: Value) {
        value = v
        ready.store(true, ordering: .releasing)
    }

    func take() -> Value {
        precondition(ready.load(ordering: .acquiring), "a lane's result read before it was put")
        return value.take()!
    }
}
