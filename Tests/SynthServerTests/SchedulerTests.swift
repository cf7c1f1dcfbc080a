import Foundation
import Logging
import SynthAPI
import SynthClient
import SynthConcurrency
import SynthEngine
import SynthLLM
import SynthProto
import Testing

/// Holds what a set of waiting requests were granted, in order.
final class GrantLog: Sendable {
    private let grants = Locked<[(tag: String, grant: RequestScheduler.Grant)]>([])
    func add(_ tag: String, _ g: RequestScheduler.Grant) { grants.withLock { $0.append((tag, g)) } }
    var all: [(tag: String, grant: RequestScheduler.Grant)] { grants.withLock { $0 } }
    func count(_ tag: String) -> Int { all.filter { $0.tag == tag }.count }
    /// Takes one grant of `tag` out (to release it).
    func take(_ tag: String) -> RequestScheduler.Grant? {
        grants.withLock { g in
            guard let i = g.firstIndex(where: { $0.tag == tag }) else { return nil }
            return g.remove(at: i).grant
        }
    }
}

/// Waits until `condition` holds (a few seconds at most, scaled for sanitizers).
func settle(_ what: String, seconds: Double = 10, _ condition: @escaping @Sendable () throws -> Bool) async throws {
    try await withTimeout(seconds, what) {
        while try !condition() { try await Task.sleep(for: .milliseconds(5)) }
    }
}

/// The scheduler's decisions, on its own: which request goes next and to which endpoint.
@Suite struct RequestSchedulerTests {
    /// Starts `n` requests of `ticket` that wait for grants and log them under `tag`.
    /// Releases one of `tag`'s grants and waits for the grant it frees to be given.
    func releaseOne(_ s: RequestScheduler, _ log: GrantLog, _ tag: String) async throws {
        let freed = try #require(log.take(tag))
        let before = log.all.count
        s.release(freed, .answered)
        try await settle("a grant after a release") { log.all.count == before + 1 }
    }

    func ask(_ s: RequestScheduler, _ pool: Int, _ ticket: RequestScheduler.Ticket, _ n: Int, _ tag: String, _ log: GrantLog) -> [Task<Void, Never>] {
        (0..<n).map { _ in Task { if let g = try? await s.acquire(pool: pool, ticket: ticket) { log.add(tag, g) } } }
    }

    @Test func capacityIsSharedByOrgsFirstThenByJobs() async throws {
        let s = RequestScheduler()
        let pool = s.addPool("p", endpoints: [.init(label: "a", capacity: 4)])
        let log = GrantLog()
        // Org A: three jobs; job a1 takes every place first.
        let a1 = s.join(org: "A", limit: 100), a2 = s.join(org: "A", limit: 100), a3 = s.join(org: "A", limit: 100)
        var tasks = ask(s, pool, a1, 4, "a1", log)
        try await settle("a1 to hold 4") { log.count("a1") == 4 }
        tasks += ask(s, pool, a1, 6, "a1", log) + ask(s, pool, a2, 6, "a2", log) + ask(s, pool, a3, 6, "a3", log)
        let b = s.join(org: "B", limit: 100)
        tasks += ask(s, pool, b, 6, "b", log)
        // Nothing more is granted until a place frees.
        try await Task.sleep(for: .milliseconds(50))
        #expect(log.all.count == 4)
        // As a1's requests end, B comes first (it has none in flight against A's four), until the
        // two orgs hold two each; A's next then goes to one of its jobs with none, not to a1.
        for _ in 0..<3 {
            try await releaseOne(s, log, "a1")
        }
        #expect(log.count("b") == 2, "B's share of 4 places against one other org is 2: \(log.all.map(\.tag))")
        #expect(log.count("a1") == 1 && log.count("a2") + log.count("a3") == 1, "\(log.all.map(\.tag))")
        for t in tasks { t.cancel() }
        for t in [a1, a2, a3, b] { s.leave(t) }
    }

    @Test func weightsDivideTheShareAndAJobNeverPassesItsLimit() async throws {
        let s = RequestScheduler(orgWeights: ["B": 3])
        let pool = s.addPool("p", endpoints: [.init(label: "a", capacity: 8)])
        let log = GrantLog()
        let a = s.join(org: "A", limit: 100), b = s.join(org: "B", limit: 100), small = s.join(org: "C", limit: 1)
        var tasks = ask(s, pool, a, 8, "a", log)
        try await settle("A to hold 8") { log.count("a") == 8 }
        tasks += ask(s, pool, a, 20, "a", log) + ask(s, pool, b, 20, "b", log) + ask(s, pool, small, 5, "c", log)
        // Free all eight places one by one: B (weight 3) ends with three times A's share, and C
        // (limit 1) never holds more than one whatever its share.
        for _ in 0..<8 {
            try await releaseOne(s, log, "a")
        }
        #expect(log.count("c") == 1, "\(log.all.map(\.tag))")
        #expect(log.count("b") == 5 && log.count("a") == 2, "weights 3:1 over the 7 places C leaves: \(log.all.map(\.tag))")
        // C's one request ends: its next goes at once (it is furthest below its share).
        s.release(try #require(log.take("c")), .answered)
        try await settle("C's next request") { log.count("c") == 1 }
        for t in tasks { t.cancel() }
        for t in [a, b, small] { s.leave(t) }
    }

    @Test func requestsGoToTheEndpointLeastLoadedForItsCapacity() async throws {
        let s = RequestScheduler()
        let pool = s.addPool("p", endpoints: [.init(label: "small", capacity: 2), .init(label: "big", capacity: 6)])
        let log = GrantLog()
        let t = s.join(org: "A", limit: 100)
        let tasks = ask(s, pool, t, 8, "a", log)
        try await settle("8 grants") { log.all.count == 8 }
        let byEndpoint = Dictionary(grouping: log.all, by: { $0.grant.endpoint }).mapValues(\.count)
        #expect(byEndpoint[0] == 2 && byEndpoint[1] == 6, "\(byEndpoint)")
        // Full: a ninth waits.
        let ninth = ask(s, pool, t, 1, "a", log)
        try await Task.sleep(for: .milliseconds(30))
        #expect(log.all.count == 8)
        for task in tasks + ninth { task.cancel() }
        s.leave(t)
    }

    @Test func anEndpointFailingInARowIsTakenOutThenProbedBackIn() async throws {
        let s = RequestScheduler()
        let pool = s.addPool("p", endpoints: [.init(label: "x", capacity: 4), .init(label: "y", capacity: 4)],
                             policy: .init(afterFailures: 3, firstSeconds: 0.3, maxSeconds: 5))
        let t = s.join(org: "A", limit: 100)
        // Three failures in a row on x take it out.
        var failed = 0
        while failed < 3 {
            let g = try await s.acquire(pool: pool, ticket: t)
            if g.endpoint == 0 {
                s.release(g, .failed("connection refused"))
                failed += 1
            } else {
                s.release(g, .answered)
            }
        }
        #expect(s.endpointStatus()[0].state == .ejected && s.endpointStatus()[0].ejections == 1)
        #expect(s.hasOther(pool: pool, than: 1) == false && s.hasOther(pool: pool, than: 0))
        // While it is out, every request goes to y.
        for _ in 0..<10 {
            let g = try await s.acquire(pool: pool, ticket: t)
            #expect(g.endpoint == 1)
            s.release(g, .answered)
        }
        // Once its time is up it gets one probe; a failed probe takes it out for twice as long.
        try await Task.sleep(for: .milliseconds(350))
        var probe = try await s.acquire(pool: pool, ticket: t)
        #expect(probe.endpoint == 0, "the probe goes to the endpoint whose time is up")
        let other = try await s.acquire(pool: pool, ticket: t)
        #expect(other.endpoint == 1, "one probe at a time")
        s.release(other, .answered)
        s.release(probe, .failed("connection refused"))
        let out = s.endpointStatus()[0]
        #expect(out.state == .ejected && out.ejections == 2 && out.backInSeconds > 0.35, "\(out)")
        // After the longer wait an answered probe brings it back for good.
        try await Task.sleep(for: .milliseconds(650))
        probe = try await s.acquire(pool: pool, ticket: t)
        #expect(probe.endpoint == 0)
        s.release(probe, .answered)
        #expect(s.endpointStatus()[0].state == .inService)
        // When every endpoint is out, requests still go (to all), rather than wait blind.
        for e in 0..<2 {
            var n = 0
            while n < 3 {
                let g = try await s.acquire(pool: pool, ticket: t)
                s.release(g, g.endpoint == e ? .failed("refused") : .answered)
                if g.endpoint == e { n += 1 }
            }
        }
        #expect(s.endpointStatus().allSatisfy { $0.state == .ejected })
        let g = try await withTimeout(2, "a grant with every endpoint out") { try await s.acquire(pool: pool, ticket: t) }
        s.release(g, .unknown)
        s.leave(t)
    }

    /// A request sent before an endpoint went out is not its probe, and the probe goes when the
    /// time out runs even if nothing else happens in the pool then.
    @Test func theProbeGoesOnTimeAndOnlyItsOutcomeCounts() async throws {
        let s = RequestScheduler()
        let pool = s.addPool("p", endpoints: [.init(label: "x", capacity: 4), .init(label: "y", capacity: 1)],
                             policy: .init(afterFailures: 3, firstSeconds: 0.2, maxSeconds: 5))
        let t = s.join(org: "A", limit: 100)
        let stale = try await s.acquire(pool: pool, ticket: t, avoiding: 1)
        #expect(stale.endpoint == 0)
        for _ in 0..<3 {
            let g = try await s.acquire(pool: pool, ticket: t, avoiding: 1)
            #expect(g.endpoint == 0)
            s.release(g, .failed("HTTP 503"))
        }
        #expect(s.endpointStatus()[0].state == .ejected)
        let held = try await s.acquire(pool: pool, ticket: t)
        #expect(held.endpoint == 1, "x is out: y takes it")
        // y is full and x out: the next waits, and goes to x as its probe when x's time is up,
        // with no release to set it off.
        let probe = try await withTimeout(2, "the probe when the time out runs") { try await s.acquire(pool: pool, ticket: t) }
        #expect(probe.endpoint == 0 && probe.isProbe)
        // The stale request failing now does not put x out again; the probe's answer brings it back.
        s.release(stale, .failed("HTTP 503"))
        #expect(s.endpointStatus()[0].ejections == 1)
        s.release(probe, .answered)
        #expect(s.endpointStatus()[0].state == .inService)
        s.release(held, .answered)
        s.leave(t)
    }

    @Test func aCancelledWaiterLeavesNoTrace() async throws {
        let s = RequestScheduler()
        let pool = s.addPool("p", endpoints: [.init(label: "x", capacity: 1)])
        let t = s.join(org: "A", limit: 10)
        let held = try await s.acquire(pool: pool, ticket: t)
        let waiter = Task { try await s.acquire(pool: pool, ticket: t) }
        try await settle("the waiter to queue") { s.waiting().first?.requests == 1 }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(s.waiting().first?.requests == 0)
        s.release(held, .answered)
        let next = try await withTimeout(2, "the place freed") { try await s.acquire(pool: pool, ticket: t) }
        s.release(next, .answered)
        s.leave(t)
    }
}

/// The line of jobs waiting for a running place.
@Suite struct AdmissionQueueTests {
    @Test func aLongLineIsFairAndCheapToAnswerFor() {
        var q = AdmissionQueue()
        for i in 0..<20_000 { q.append("a\(i)", org: "A") }
        q.append("b0", org: "B")
        q.append("b1", org: "B")
        let running = ["A": 3]
        // B has none running against A's three: both its jobs go before A's 20,000.
        #expect(q.place(of: "b0", running: running, weights: [:]) == 1)
        #expect(q.place(of: "b1", running: running, weights: [:]) == 2)
        #expect(q.place(of: "a0", running: running, weights: [:]) == 3)
        // Weight 4 for A: b0 (B has 0 against A's 3/4), a0 (3/4 < B's 1), a1 (4/4 ties B's 1/1 and
        // came first), then b1 (B's 1 < A's 5/4).
        #expect(q.place(of: "b1", running: running, weights: ["A": 4]) == 4)
        // Places are worked out for the first 10,000 only.
        #expect(q.place(of: "a9997", running: running, weights: [:]) == 10_000)
        #expect(q.place(of: "a9998", running: running, weights: [:]) == nil)
        #expect(q.remove("a5") && !q.remove("a5") && q.count == 20_001)
        #expect(q.popNext(running: running, weights: [:])?.id == "b0")
        #expect(q.popNext(running: ["A": 0, "B": 5], weights: [:])?.id == "a0")
        #expect(!q.contains("a0") && q.contains("a1") && q.count == 19_999)
    }
}

/// Endpoint pools against fake providers over real HTTP, and fair shares through a real synthd.
@Suite(.serialized) struct FleetTests {
    static let longDomain = "logistics operations for a freight company"

    @Test func aFleetSharesByCapacityAndAJobStaysExactWhenAnEndpointDies() async throws {
        let f2 = try await FakeProvider.start(["--latency-ms", "60"])
        let f3 = try await FakeProvider.start(["--latency-ms", "60"])
        defer { f2.stop(); f3.stop() }
        try await withHarness(fakeArgs: ["--latency-ms", "60"], jobConcurrency: 14, seconds: 240, engine: { c in
            var p = c.providers["openai"]!
            let first = p.baseURL
            p.baseURL = ""
            p.endpoints = [.init(baseURL: first, maxInFlight: 2), .init(baseURL: "http://127.0.0.1:\(f2.port)/v1", maxInFlight: 4),
                           .init(baseURL: "http://127.0.0.1:\(f3.port)/v1", maxInFlight: 8)]
            p.ejectSeconds = 0.5
            c.providers["openai"] = p
        }) { h in
            let client = try await h.client(try h.org("acme"))
            let job = try await h.generate(client, count: 400)
            // Half-way, the largest endpoint dies (SIGKILL: requests in flight to it are lost).
            try await settle("the job to reach 150 records", seconds: 120) { (try h.store.job(id: job.jobID)?.job.accepted ?? 0) >= 150 }
            let beforeKill = try [h.fake, f2, f3].map { try $0.stats() }
            f3.stop()
            let final = try await h.waitForEnd(client, job.jobID, seconds: 180)
            #expect(final.status == "succeeded" && final.accepted == 400, "\(final)")
            // Exact: 400 records, each once, in sequence.
            let records = try h.store.records(jobID: job.jobID, after: 0, limit: 1000)
            #expect(records.count == 400 && records.map(\.seq) == Array(1...400))
            #expect(Set(records.map(\.json)).count == 400)
            // Each endpoint was held to its capacity, and got work in proportion to it.
            let peaks = beforeKill.map { $0["max_in_flight"] as? Int ?? -1 }
            #expect(peaks[0] <= 2 && peaks[1] <= 4 && peaks[2] <= 8, "peaks \(peaks)")
            let served = beforeKill.map { $0["generation_requests"] as? Int ?? 0 }
            #expect(served[2] > served[1] && served[1] > served[0] && served[0] > 0, "requests by endpoint \(served)")
            // After the kill the two left took it all; Health names the dead one as taken out.
            let after = try [h.fake, f2].map { try $0.stats()["generation_requests"] as? Int ?? 0 }
            #expect(after[0] > served[0] && after[1] > served[1])
            let health = try await client.unary(Methods.health, PBHealthRequest())
            let dead = try #require(health.components.first { $0.name == "endpoint:openai/127.0.0.1:\(f3.port)" })
            #expect(dead.status == "ejected" || dead.status == "probing", "\(dead)")
            #expect(dead.detail.contains("taken out"), "\(dead.detail)")
            #expect(!dead.detail.contains(Harness.providerSecret))
            let alive = try #require(health.components.first { $0.name == "endpoint:openai/127.0.0.1:\(f2.port)" })
            #expect(alive.status == "ok", "\(alive)")
            #expect(health.status == "degraded")
            await client.close()
        }
    }

    /// A small job of org B beside a large job of org A gets half the provider's capacity: its
    /// requests are about half of all sent while it runs, and it ends long before A's.
    @Test func aSmallJobOfAnotherOrgGetsItsShareBesideALargeOne() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "50"], jobConcurrency: 8, seconds: 240, engine: { c in
            c.providers["openai"]!.maxInFlight = 8
        }) { h in
            let a = try await h.client(try h.org("big"))
            let b = try await h.client(try h.org("small"))
            // A runs two jobs (so the org, not the job, must be what is shared).
            var big = Harness.request(count: 3000)
            big.request.domain = Self.longDomain
            let a1 = try await a.unary(Methods.generate, big).job
            let a2 = try await a.unary(Methods.generate, big).job
            try await settle("A to be running", seconds: 60) { (try h.store.job(id: a1.jobID)?.job.accepted ?? 0) >= 20 }
            let small = try await h.generate(b, count: 60)
            let doneB = try await h.waitForEnd(b, small.jobID, seconds: 120)
            #expect(doneB.status == "succeeded" && doneB.accepted == 60)
            let log = (try h.fake.stats()["log"] as? [[String: Any]] ?? []).filter { $0["path"] as? String != "/v1/models" }
            let bRequests = log.filter { ($0["domain"] as? String)?.hasPrefix("customer support") == true }
            let firstB = try #require(bRequests.compactMap { $0["t"] as? Double }.min())
            let lastB = try #require(bRequests.compactMap { $0["t"] as? Double }.max())
            let during = log.filter { ($0["t"] as? Double).map { $0 >= firstB && $0 <= lastB } ?? false }
            let share = Double(bRequests.count) / Double(during.count)
            // Fair is a half (two orgs); by job it would be a third (B's job against A's two).
            #expect(share > 0.42, "B's share of the requests while it ran: \(share) (\(bRequests.count) of \(during.count))")
            let jobA = try await a.unary(Methods.getJob, { var r = PBGetJobRequest(); r.jobID = a1.jobID; return r }()).job
            #expect(jobA.state == .running, "A's job runs on: \(jobA.status)")
            for id in [a1.jobID, a2.jobID] {
                var cancel = PBCancelJobRequest()
                cancel.jobID = id
                _ = try await a.unary(Methods.cancelJob, cancel)
            }
            await a.close()
            await b.close()
        }
    }

    /// Beyond max_running_jobs, jobs wait, say their place, and a freed place goes to the org
    /// with the fewest running jobs.
    @Test func jobsPastTheRunningLimitQueueAndTheNextPlaceGoesToTheOrgWithFewest() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "100"], jobConcurrency: 2, seconds: 240, engine: { c in
            c.maxRunningJobs = 2
        }) { h in
            let a = try await h.client(try h.org("alpha"))
            let b = try await h.client(try h.org("beta"))
            func get(_ c: SynthClient, _ id: String) async throws -> PBJob {
                var r = PBGetJobRequest()
                r.jobID = id
                return try await c.unary(Methods.getJob, r).job
            }
            let a1 = try await h.generate(a, count: 2000)
            let a2 = try await h.generate(a, count: 2000)
            let a3 = try await h.generate(a, count: 20)
            let a4 = try await h.generate(a, count: 20)
            let b1 = try await h.generate(b, count: 20)
            try await settle("the first two to run") {
                try [a1, a2].allSatisfy { try h.store.job(id: $0.jobID)?.job.status == "running" }
            }
            // B has no job running and A two, so B's job comes before A's queued ones.
            let q3 = try await get(a, a3.jobID), q4 = try await get(a, a4.jobID), qb = try await get(b, b1.jobID)
            #expect(qb.state == .queued && qb.detail.code == "QUEUED" && qb.detail.message.contains("place 1 of 3"), "\(qb.detail)")
            #expect(q3.detail.message.contains("place 2 of 3") && q4.detail.message.contains("place 3 of 3"), "\(q3.detail) \(q4.detail)")
            #expect(qb.detail.message.contains("max_running_jobs 2"))
            let health = try await a.unary(Methods.health, PBHealthRequest())
            #expect(health.components.first { $0.name == "engine" }?.detail.contains("2 running jobs, 3 queued") == true)
            // A place frees: B's job starts, and ends; A's wait on.
            var cancel = PBCancelJobRequest()
            cancel.jobID = a1.jobID
            _ = try await a.unary(Methods.cancelJob, cancel)
            let doneB = try await h.waitForEnd(b, b1.jobID, seconds: 120)
            #expect(doneB.status == "succeeded" && doneB.accepted == 20)
            // Cancelling a queued job takes it out of the line.
            cancel.jobID = a4.jobID
            _ = try await a.unary(Methods.cancelJob, cancel)
            let done3 = try await h.waitForEnd(a, a3.jobID, seconds: 120)
            #expect(done3.status == "succeeded")
            #expect(try await get(a, a4.jobID).status == "cancelled")
            cancel.jobID = a2.jobID
            _ = try await a.unary(Methods.cancelJob, cancel)
            await a.close()
            await b.close()
        }
    }
}
