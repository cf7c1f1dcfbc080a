import Foundation
import Synchronization
import SynthConcurrency
#if canImport(Glibc)
import Glibc
#endif

/// Gives the heap's free pages back to the system after a burst of streaming: glibc keeps what a
/// thread's arena once held, so the batches of many slow streams would otherwise stay in the
/// server's resident size after their connections are gone. At most once every few seconds.
enum MemoryTrim {
    private static let last = Locked<ContinuousClock.Instant?>(nil)
    static let every = Duration.seconds(5)

    /// glibc's `malloc_trim`, looked up at run time (Swift's Glibc module does not declare it).
    private static let trim: (@convention(c) (Int) -> Int32)? = {
        guard let f = dlsym(nil, "malloc_trim") else { return nil }
        return unsafeBitCast(f, to: (@convention(c) (Int) -> Int32).self)
    }()

    static func afterStreams() {
        let due: Bool = last.withLock { at in
            if let at, ContinuousClock.now - at < every { return false }
            at = .now
            return true
        }
        guard due, let trim else { return }
        // Off the threads that serve calls: a trim walks the whole heap.
        BlockingLane.compute.submit { _ = trim(0) }
    }
}
