#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSketch
import Synchronization

/// How many helper threads may run at once. The process's pool has one fewer than its cores, so
/// that several large indexes (jobs) at once never put more join threads than cores to work: two
/// joins on two cores, each with a helper, spent about a quarter of their time spinning.
final class HelperSlots: Sendable {
    let limit: Int
    private let taken = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    static let process = HelperSlots(limit: max(0, JoinHelper.cores - 1))

    /// Takes a slot; false when all are taken.
    func take() -> Bool {
        var n = taken.load(ordering: .relaxed)
        while n < limit {
            let r = taken.compareExchange(expected: n, desired: n + 1, ordering: .acquiringAndReleasing)
            if r.exchanged { return true }
            n = r.original
        }
        return false
    }

    func give() {
        taken.wrappingSubtract(1, ordering: .acquiringAndReleasing)
    }

    var inUse: Int { taken.load(ordering: .relaxed) }
}

/// The thread that shares an index's work with its owner: it takes tasks of each published check
/// and files accepted texts. Between calls it polls for a short while, then sleeps until woken.
final class JoinHelper {
    let core: JoinCore
    private let stopping = Atomic<Bool>(false)
    private let sleeping = Atomic<Bool>(false)
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    #if canImport(Darwin)
    private var thread: pthread_t?
    #else
    private var thread = pthread_t()
    #endif
    private var started = false

    /// Online processors.
    static let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    /// A check with less sketch work than this (in vectors; about 30 microseconds on one
    /// thread) does not wake a sleeping helper: it would be done before the helper got going. A
    /// helper still polling takes part in any check.
    static let wakeWork = 100_000
    /// Polls before sleeping: about 60 microseconds (a pause is about 30 ns here), several times
    /// the gap between back-to-back checks, short enough that a job whose records arrive one by
    /// one does not keep a core busy.
    static let polls = 2_000

    /// Nil when the thread could not be started.
    init?(core: JoinCore) {
        self.core = core
        // Read here, before the owner publishes its next check, so the helper takes part in it.
        firstSeen = core.published
        mutex.initialize(to: pthread_mutex_t())
        cond.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
        let box = Unmanaged.passRetained(self).toOpaque()
        started = pthread_create(&thread, nil, { arg in
            let helper = Unmanaged<JoinHelper>.fromOpaque((arg as UnsafeMutableRawPointer?)!).takeRetainedValue()
            helper.loop()
            return nil
        }, box) == 0
        guard started else {
            Unmanaged<JoinHelper>.fromOpaque(box).release()
            return nil
        }
        Self.live.wrappingAdd(1, ordering: .relaxed)
    }

    /// The check last published when the helper was made.
    private let firstSeen: Int

    /// Helper threads running, in the whole process.
    static let live = Atomic<Int>(0)

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    /// Ends the thread (after any task or add it has taken) and waits for it.
    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(mutex)
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
        #if canImport(Darwin)
        if started, let thread { pthread_join(thread, nil) }
        #else
        if started { pthread_join(thread, nil) }
        #endif
    }

    /// Wakes the thread if it sleeps.
    func wake() {
        guard sleeping.load(ordering: .sequentiallyConsistent) else { return }
        pthread_mutex_lock(mutex)
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    private func loop() {
        var scratch = ProbeSketches()
        var seen = firstSeen
        // The helper's own stamp for its probe sketches, one per check it joins.
        var stamp = 0
        var idle = 0
        while !stopping.load(ordering: .acquiring) {
            if core.tryAdd() {
                idle = 0
                continue
            }
            let s = core.published
            if s != seen {
                seen = s
                stamp += 1
                core.helperInWork.store(true, ordering: .sequentiallyConsistent)
                if core.work(s, stamp: stamp, fromFront: false, &scratch) { core.helperChecks.wrappingAdd(1, ordering: .relaxed) }
                core.helperInWork.store(false, ordering: .releasing)
                idle = 0
                continue
            }
            idle += 1
            if idle < Self.polls {
                csketch_pause()
                continue
            }
            pthread_mutex_lock(mutex)
            sleeping.store(true, ordering: .sequentiallyConsistent)
            if !stopping.load(ordering: .sequentiallyConsistent) && !core.pending(after: seen) {
                pthread_cond_wait(cond, mutex)
            }
            sleeping.store(false, ordering: .relaxed)
            pthread_mutex_unlock(mutex)
            idle = 0
        }
        Self.live.wrappingAdd(-1, ordering: .relaxed)
    }
}

/// Waiting for another thread: a pause, and every thousandth time the processor is given up, so
/// that a waiter does not hold a core from the thread it waits for.
struct Spin {
    private var n = 0

    @inline(__always) mutating func pause() {
        n += 1
        if n & 1023 == 0 {
            sched_yield()
        } else {
            csketch_pause()
        }
    }
}
