import Foundation
import SynthConcurrency
import SynthMetrics

/// Decides which provider request goes next and where: every request of every job asks it for a
/// grant, and it answers in this order:
///
/// 1. **The org's fair share.** Among the orgs with a request waiting for a provider, the one with
///    the fewest requests in flight to it relative to its weight goes first.
/// 2. **The job's.** Within that org, the job with the fewest requests in flight to the provider;
///    within the job, first come, first served. A job never has more than its own limit in flight
///    (over all providers: its critic calls count too).
/// 3. **An endpoint with room.** Of the provider's endpoints in service, the one with the fewest
///    outstanding requests relative to its capacity (times its weight); a retry prefers another.
///
/// So capacity is shared max-min fairly: an org that asks for less than its share gets all it
/// asks, the others divide the rest, and nothing stays idle while anyone waits.
///
/// Endpoint health: `ejectAfterFailures` failures in a row (no connection, a 5xx, a lost answer)
/// take an endpoint out for `ejectSeconds`, doubled at each ejection in a row up to
/// `ejectMaxSeconds`; then it gets one probe request, and an answer brings it back. When every
/// endpoint of a provider is out, requests go to all of them anyway (better to learn the provider
/// is back than to wait blind); the job's own reachability rules then apply.
public final class RequestScheduler: Sendable {
    /// A job's place in the scheduler: from `join` to `leave`.
    public struct Ticket: Sendable, Hashable {
        public let id: UInt64
    }

    /// Leave to send one request to one endpoint; given back with `release`.
    public struct Grant: Sendable {
        public let pool: Int
        public let endpoint: Int
        let job: UInt64
        /// Its org stays known while a grant of it is out (it has requests in flight).
        let org: String
        /// The one request let through to an endpoint whose time out has run: its outcome decides
        /// whether the endpoint comes back.
        public let isProbe: Bool
    }

    /// What a granted request came to, for the endpoint's health.
    public enum Outcome: Sendable {
        /// An HTTP answer below 500 (a 429 included: the server is there).
        case answered
        /// No connection, a 5xx, a lost or timed-out answer.
        case failed(String)
        /// Nothing learnt (cancelled before an answer).
        case unknown
    }

    /// One endpoint as the scheduler sees it.
    public struct EndpointSpec: Sendable {
        public var label: String
        public var capacity: Int
        public var weight: Double

        public init(label: String, capacity: Int, weight: Double = 1) {
            self.label = label
            self.capacity = max(1, capacity)
            self.weight = weight.isFinite && weight > 0 ? weight : 1
        }
    }

    public struct EjectionPolicy: Sendable {
        public var afterFailures: Int
        public var firstSeconds: Double
        public var maxSeconds: Double

        public init(afterFailures: Int = 3, firstSeconds: Double = 1, maxSeconds: Double = 60) {
            self.afterFailures = max(1, afterFailures)
            self.firstSeconds = firstSeconds.isFinite ? max(0.01, firstSeconds) : 1
            self.maxSeconds = maxSeconds.isFinite ? max(self.firstSeconds, maxSeconds) : 60
        }
    }

    /// An endpoint's state for Health and the metrics.
    public struct EndpointStatus: Sendable, Equatable {
        public enum State: String, Sendable { case inService = "ok", ejected, probing }
        public var pool: String
        public var label: String
        public var state: State
        public var outstanding: Int
        public var capacity: Int
        public var answered: Int64
        public var failed: Int64
        public var ejections: Int64
        /// Seconds until an ejected endpoint is probed.
        public var backInSeconds: Double
        public var lastError: String
    }

    private struct Waiter {
        let id: UInt64
        let avoid: Int?
        let cont: CheckedContinuation<Grant, Error>
    }

    /// A job's counts and waiters. A class, touched only under the scheduler's lock: the
    /// decision reads every waiting job for every grant, and a struct of dictionaries would be
    /// copied each time.
    private final class Job {
        let org: Org
        let limit: Int
        var inFlight = 0
        /// By pool index.
        var inFlightByPool: [Int]
        var waiting: [[Waiter]]

        init(org: Org, limit: Int, pools: Int) {
            self.org = org
            self.limit = limit
            inFlightByPool = Array(repeating: 0, count: pools)
            waiting = Array(repeating: [], count: pools)
        }
    }

    private final class Org {
        let name: String
        let weight: Double
        var jobs = 0
        var inFlightByPool: [Int]

        init(name: String, weight: Double, pools: Int) {
            self.name = name
            self.weight = weight
            inFlightByPool = Array(repeating: 0, count: pools)
        }

        var idle: Bool { jobs <= 0 && inFlightByPool.allSatisfy { $0 <= 0 } }
    }

    private struct EndpointState {
        let spec: EndpointSpec
        var outstanding = 0
        var failuresInARow = 0
        var ejectionsInARow = 0
        var ejectedUntil: ContinuousClock.Instant?
        var probing = false
        var answered: Int64 = 0
        var failed: Int64 = 0
        var ejections: Int64 = 0
        var lastError = ""
    }

    private struct Pool {
        let name: String
        let policy: EjectionPolicy
        var endpoints: [EndpointState]
        var waiters = 0
        /// The jobs with a request waiting for this pool.
        var waitingJobs = Set<UInt64>()
    }

    private struct State {
        var pools: [Pool] = []
        var poolIndex: [String: Int] = [:]
        var jobs: [UInt64: Job] = [:]
        var orgs: [String: Org] = [:]
        var weights: [String: Double]
        var nextID: UInt64 = 0
    }

    private let state: Locked<State>

    /// `weights`: each org's share relative to the others (1 for an org not named).
    public init(orgWeights: [String: Double] = [:]) {
        state = Locked(State(weights: orgWeights.filter { $0.value.isFinite && $0.value > 0 }))
    }

    /// Adds a provider's endpoints (once, at start); returns the pool's index.
    @discardableResult
    public func addPool(_ name: String, endpoints: [EndpointSpec], policy: EjectionPolicy = EjectionPolicy()) -> Int {
        state.withLock { s in
            if let i = s.poolIndex[name] { return i }
            s.pools.append(Pool(name: name, policy: policy, endpoints: endpoints.map { EndpointState(spec: $0) }))
            s.poolIndex[name] = s.pools.count - 1
            return s.pools.count - 1
        }
    }

    /// A job joins: `limit` bounds its requests in flight over all providers.
    public func join(org: String, limit: Int) -> Ticket {
        state.withLock { s in
            s.nextID += 1
            let o: Org
            if let known = s.orgs[org] {
                o = known
            } else {
                o = Org(name: org, weight: s.weights[org] ?? 1, pools: s.pools.count)
                s.orgs[org] = o
            }
            o.jobs += 1
            s.jobs[s.nextID] = Job(org: o, limit: max(1, limit), pools: s.pools.count)
            return Ticket(id: s.nextID)
        }
    }

    /// The job is done with the scheduler (its requests have all been released or cancelled).
    public func leave(_ ticket: Ticket) {
        let stranded: [Waiter] = state.withLock { s in
            guard let job = s.jobs.removeValue(forKey: ticket.id) else { return [] }
            var out: [Waiter] = []
            for (pool, ws) in job.waiting.enumerated() where !ws.isEmpty {
                s.pools[pool].waiters -= ws.count
                s.pools[pool].waitingJobs.remove(ticket.id)
                out += ws
            }
            job.org.jobs -= 1
            if job.org.idle { s.orgs.removeValue(forKey: job.org.name) }
            return out
        }
        for w in stranded { w.cont.resume(throwing: CancellationError()) }
    }

    /// Waits for leave to send one request of `ticket`'s job to `pool`; `avoiding` an endpoint
    /// (the one a retry failed on) when another has room.
    public func acquire(pool: Int, ticket: Ticket, avoiding: Int? = nil) async throws -> Grant {
        let id: UInt64 = state.withLock {
            $0.nextID += 1
            return $0.nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Grant, Error>) in
                let ready: [(CheckedContinuation<Grant, Error>, Grant)]? = state.withLock { s in
                    guard !Task.isCancelled, let job = s.jobs[ticket.id], pool < job.waiting.count else { return nil }
                    job.waiting[pool].append(Waiter(id: id, avoid: avoiding, cont: cont))
                    s.pools[pool].waiters += 1
                    s.pools[pool].waitingJobs.insert(ticket.id)
                    return Self.dispatch(&s, pool: pool)
                }
                guard let ready else {
                    cont.resume(throwing: CancellationError())
                    return
                }
                for (c, g) in ready { c.resume(returning: g) }
            }
        } onCancel: {
            let waiter: Waiter? = state.withLock { s in
                guard let job = s.jobs[ticket.id], pool < job.waiting.count,
                      let i = job.waiting[pool].firstIndex(where: { $0.id == id }) else { return nil }
                let w = job.waiting[pool].remove(at: i)
                if job.waiting[pool].isEmpty { s.pools[pool].waitingJobs.remove(ticket.id) }
                s.pools[pool].waiters -= 1
                return w
            }
            waiter?.cont.resume(throwing: CancellationError())
        }
    }

    /// Gives a grant back, with what its request came to; the next waiters go.
    public func release(_ grant: Grant, _ outcome: Outcome) {
        var wakeAt: ContinuousClock.Instant?
        let ready: [(CheckedContinuation<Grant, Error>, Grant)] = state.withLock { s in
            let now = ContinuousClock.now
            var e = s.pools[grant.pool].endpoints[grant.endpoint]
            e.outstanding -= 1
            let policy = s.pools[grant.pool].policy
            if grant.isProbe { e.probing = false }
            switch outcome {
            case .answered:
                // An answer, probe or not, shows the server is there: it is back in service.
                e.answered += 1
                e.failuresInARow = 0
                if e.ejectedUntil != nil {
                    e.ejectedUntil = nil
                    e.ejectionsInARow = 0
                }
            case .failed(let why):
                e.failed += 1
                e.failuresInARow += 1
                e.lastError = why
                // Out after failures in a row; a failed probe puts it out for twice as long. A
                // request sent before it went out counts, but cannot put it out again.
                if grant.isProbe || (e.ejectedUntil == nil && e.failuresInARow >= policy.afterFailures) {
                    let seconds = min(policy.maxSeconds, policy.firstSeconds * pow(2, Double(min(e.ejectionsInARow, 30))))
                    e.ejectedUntil = now + .milliseconds(Int64(seconds * 1000))
                    e.ejectionsInARow += 1
                    e.ejections += 1
                    wakeAt = e.ejectedUntil
                }
            case .unknown:
                break
            }
            let ejected = e.ejections > s.pools[grant.pool].endpoints[grant.endpoint].ejections
            s.pools[grant.pool].endpoints[grant.endpoint] = e
            if ejected { SynthMetrics.endpointEjected(provider: s.pools[grant.pool].name, endpoint: e.spec.label) }
            if let org = s.orgs[grant.org] {
                org.inFlightByPool[grant.pool] -= 1
                if org.idle { s.orgs.removeValue(forKey: org.name) }
            }
            var pools = [grant.pool]
            if let job = s.jobs[grant.job] {
                job.inFlight -= 1
                job.inFlightByPool[grant.pool] -= 1
                // The job's limit counts every pool, so its waiters elsewhere may go now too.
                for p in job.waiting.indices where p != grant.pool && !job.waiting[p].isEmpty { pools.append(p) }
            }
            return pools.flatMap { Self.dispatch(&s, pool: $0) }
        }
        for (c, g) in ready { c.resume(returning: g) }
        // When its time out runs, its probe goes even if nothing else happens in the pool then.
        if let wakeAt { wake(pool: grant.pool, at: wakeAt) }
    }

    /// Grants what can go in `pool` at `instant` (an endpoint's time out has run).
    private func wake(pool: Int, at instant: ContinuousClock.Instant) {
        Task { [weak self] in
            try? await Task.sleep(until: instant + .milliseconds(1), clock: .continuous)
            guard let self else { return }
            let ready = self.state.withLock { s in Self.dispatch(&s, pool: pool) }
            for (c, g) in ready { c.resume(returning: g) }
        }
    }

    /// Whether a pool has an endpoint in service other than `endpoint` (a retry goes there at once).
    public func hasOther(pool: Int, than endpoint: Int) -> Bool {
        state.withLock { s in
            let now = ContinuousClock.now
            return s.pools[pool].endpoints.indices.contains { i in
                i != endpoint && Self.inService(s.pools[pool].endpoints[i], now: now)
            }
        }
    }

    /// Every endpoint's state, pool by pool.
    public func endpointStatus() -> [EndpointStatus] {
        state.withLock { s in
            let now = ContinuousClock.now
            return s.pools.flatMap { pool in
                pool.endpoints.map { e in
                    let back = e.ejectedUntil.map { max(0, Double(($0 - now).components.seconds) + Double(($0 - now).components.attoseconds) / 1e18) }
                    let state: EndpointStatus.State = e.probing ? .probing : (e.ejectedUntil == nil ? .inService : (back! > 0 ? .ejected : .probing))
                    return EndpointStatus(pool: pool.name, label: e.spec.label, state: state, outstanding: e.outstanding,
                                          capacity: e.spec.capacity, answered: e.answered, failed: e.failed, ejections: e.ejections,
                                          backInSeconds: back ?? 0, lastError: e.lastError)
                }
            }
        }
    }

    /// Requests waiting for a grant, by pool name.
    public func waiting() -> [(pool: String, requests: Int)] {
        state.withLock { s in s.pools.map { ($0.name, $0.waiters) } }
    }

    // MARK: - deciding

    private static func inService(_ e: EndpointState, now: ContinuousClock.Instant) -> Bool {
        e.ejectedUntil == nil || (e.ejectedUntil! <= now && !e.probing)
    }

    /// The endpoint a request goes to now, and whether it goes as a probe; nil when none has room.
    private static func pickEndpoint(_ pool: inout Pool, avoiding: Int?, now: ContinuousClock.Instant) -> (endpoint: Int, probe: Bool)? {
        // An endpoint whose time out has run takes one probe, whatever it still has out from
        // before; until the probe is answered, nothing else.
        func due(_ e: EndpointState) -> Bool { e.ejectedUntil.map { $0 <= now } ?? false }
        let anyUsable = pool.endpoints.contains { $0.ejectedUntil == nil || (due($0) && !$0.probing) }
        func usable(_ e: EndpointState) -> Bool {
            if !anyUsable { return e.outstanding < e.spec.capacity }  // every endpoint is out: try them all
            if e.ejectedUntil != nil { return due(e) && !e.probing }
            return e.outstanding < e.spec.capacity
        }
        var best: Int?
        var bestKey = (Double.infinity, 0.0)
        var fallback: Int?
        for (i, e) in pool.endpoints.enumerated() where usable(e) {
            let size = Double(e.spec.capacity) * e.spec.weight
            // The least loaded for its size; of equals, the larger (more room to grow into). A
            // probe first of all: it is what brings capacity back.
            let key = (e.ejectedUntil != nil && anyUsable ? -1 : Double(e.outstanding) / size, -size)
            if i == avoiding {
                fallback = i
                continue
            }
            if key < bestKey {
                best = i
                bestKey = key
            }
        }
        guard let chosen = best ?? fallback else { return nil }
        let probe = anyUsable && pool.endpoints[chosen].ejectedUntil != nil
        if probe { pool.endpoints[chosen].probing = true }
        return (chosen, probe)
    }

    /// Grants every waiter of a pool that can go now, fairly; the continuations to resume outside
    /// the lock.
    private static func dispatch(_ s: inout State, pool p: Int) -> [(CheckedContinuation<Grant, Error>, Grant)] {
        var out: [(CheckedContinuation<Grant, Error>, Grant)] = []
        guard s.pools[p].waiters > 0 else { return out }
        let now = ContinuousClock.now
        while true {
            // The org furthest below its share, then its job furthest below, then first come.
            var chosen: Job?
            var chosenID: UInt64 = 0
            var key = (Double.infinity, Int.max, UInt64.max)
            for id in s.pools[p].waitingJobs {
                guard let job = s.jobs[id], job.inFlight < job.limit, let first = job.waiting[p].first else { continue }
                let k = (Double(job.org.inFlightByPool[p]) / job.org.weight, job.inFlightByPool[p], first.id)
                if k < key {
                    key = k
                    chosen = job
                    chosenID = id
                }
            }
            guard let job = chosen, let waiter = job.waiting[p].first,
                  let (e, probe) = pickEndpoint(&s.pools[p], avoiding: waiter.avoid, now: now) else { break }
            job.waiting[p].removeFirst()
            if job.waiting[p].isEmpty { s.pools[p].waitingJobs.remove(chosenID) }
            s.pools[p].waiters -= 1
            s.pools[p].endpoints[e].outstanding += 1
            job.inFlight += 1
            job.inFlightByPool[p] += 1
            job.org.inFlightByPool[p] += 1
            out.append((waiter.cont, Grant(pool: p, endpoint: e, job: chosenID, org: job.org.name, isProbe: probe)))
        }
        return out
    }
}
