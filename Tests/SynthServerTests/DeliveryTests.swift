import Crypto
import Foundation
import SynthAPI
import Testing
import SynthClient
import SynthEngine
import SynthProto
import SynthSpec
import SynthStore
import SynthConcurrency

/// "Quality never blocks delivery" and "billed per accepted record", through the real server: a job
/// that cannot reach its count, a cancelled one and one whose provider goes away all end with what
/// they kept delivered (manifest, splits, report) and billed exactly once.
@Suite struct DeliveryTests {
    /// The splits of a job as FetchSplits sends them: records by split name.
    static func splits(_ client: SynthClient, _ jobID: String) async throws -> [String: [String]] {
        var req = PBFetchSplitsRequest()
        req.jobID = jobID
        var out: [String: [String]] = [:]
        var current = ""
        for try await item in client.stream(Methods.fetchSplits, req) {
            switch item.item {
            case .split(let s):
                current = s.name
                out[current] = out[current] ?? []
            case .record(let r): out[current, default: []].append(String(decoding: r.json, as: UTF8.self))
            case .batch, nil: break
            }
        }
        return out
    }

    static func manifest(_ client: SynthClient, _ jobID: String) async throws -> [String: Any] {
        var req = PBGetManifestRequest()
        req.jobID = jobID
        let bytes = try await client.unary(Methods.getManifest, req).json
        return try #require(try JSONSerialization.jsonObject(with: bytes) as? [String: Any])
    }

    static func report(_ client: SynthClient, _ jobID: String) async throws -> PBQualityReport {
        var req = PBGetQualityReportRequest()
        req.jobID = jobID
        return try await client.unary(Methods.getQualityReport, req).report
    }

    /// Everything an ended job kept: its splits hold exactly its accepted records (each once), in
    /// the planned proportions; the manifest counts them; the report is there.
    static func checkDelivered(_ h: Harness, _ client: SynthClient, _ job: PBJob) async throws {
        let splits = try await Self.splits(client, job.jobID)
        let all = splits.values.flatMap { $0 }
        #expect(all.count == Int(job.accepted))
        #expect(Set(all).count == all.count, "a record is in two splits")
        let stored = try h.store.records(jobID: job.jobID, after: 0, limit: 100_000).map { String(decoding: $0.json, as: UTF8.self) }
        #expect(Set(all) == Set(stored))
        // 80/20 of what was kept, to the record (largest remainder).
        let train = Int((Double(job.accepted) * 0.8).rounded())
        #expect(abs((splits["train"]?.count ?? 0) - train) <= 1, "\(splits.mapValues(\.count)) of \(job.accepted)")
        let manifest = try await Self.manifest(client, job.jobID)
        #expect(manifest["count_accepted"] as? Int == Int(job.accepted))
        #expect(manifest["status"] as? String == job.status)
        let report = try await Self.report(client, job.jobID)
        #expect(report.totalAccepted == job.accepted)
    }

    /// What the org was billed this month.
    static func billed(_ h: Harness, _ org: String) throws -> PBStoredUsage {
        try h.store.usage(org: org, month: Clock.month(Clock.nowMillis())) ?? PBStoredUsage()
    }

    @Test func aJobThatRunsOutOfAttemptsSucceedsShortWithWhatItKept() async throws {
        // Most answers are malformed and there is no slack: the budget of 60 attempts runs out
        // before 60 records are accepted.
        try await withHarness(fakeArgs: ["--rate-malformed", "0.5", "--seed", "11"], engine: { c in
            c.attemptsPerRecord = 1
            c.attemptSlack = 0
        }) { h in
            let key = try h.org("acme")
            let client = try await h.client(key)
            let created = try await client.unary(Methods.generate, Harness.request(count: 60, split: true)).job
            let job = try await h.waitForEnd(client, created.jobID)
            #expect(job.status == "succeeded" && job.state == .succeeded)
            #expect(job.accepted > 0 && job.accepted < 60, "\(job.accepted)")
            #expect(job.detail.code == "ENDED_SHORT")
            #expect(job.detail.message.contains("\(job.accepted) of 60 records") && job.detail.message.contains("attempt budget"),
                    "\(job.detail.message)")
            #expect(job.error.isEmpty)
            try await Self.checkDelivered(h, client, job)
            let report = try await Self.report(client, job.jobID)
            #expect(report.totalRejected > 0)
            // Billed for what it kept, once: the usage row and the balance agree with the price
            // of `accepted` records.
            let cost = Pricing.documented.estimate(Harness.request(count: 60).request, records: job.accepted)
            let usage = try Self.billed(h, "acme")
            #expect(usage.records == job.accepted && usage.jobs == 1)
            #expect(usage.costMicroUsd == Int64((cost.totalUsd * 1_000_000).rounded()))
            let org = try #require(try h.store.org(named: "acme"))
            #expect(org.balanceMicroUsd == 1_000_000_000 - usage.costMicroUsd)
            #expect(abs(job.costUsd - cost.totalUsd) < 1e-9)
            await client.close()
        }
    }

    @Test func aCancelledJobIsBilledOnceAndDeliversWhatItKept() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "40"], jobConcurrency: 4) { h in
            let key = try h.org("freebie", plan: "free")
            let client = try await h.client(key)
            let created = try await client.unary(Methods.generate, Harness.request(count: 100, split: true)).job
            _ = try await withTimeout(30, "30 records") {
                while try #require(try h.store.job(id: created.jobID)).job.accepted < 30 { try await Task.sleep(for: .milliseconds(20)) }
            }
            var cancel = PBCancelJobRequest()
            cancel.jobID = created.jobID
            let cancelled = try await client.unary(Methods.cancelJob, cancel).job
            #expect(cancelled.status == "cancelled" && cancelled.detail.code == "CANCELLED")
            let job = try await h.waitForEnd(client, created.jobID)
            #expect(job.accepted == cancelled.accepted && job.accepted >= 30 && job.accepted < 100)
            try await Self.checkDelivered(h, client, job)
            // Counted against the free plan's 100 records a month: what was kept is used up.
            let usage = try Self.billed(h, "freebie")
            #expect(usage.records == job.accepted && usage.jobs == 1)
            let left = 100 - job.accepted
            do {
                _ = try await client.unary(Methods.generate, Harness.request(count: left + 1))
                Issue.record("a job over the month's quota was taken")
            } catch let e as ClientError {
                #expect(e.status.errorCode == "INSUFFICIENT_BALANCE", "\(e)")
                #expect(e.status.message.contains("\(left) are left this month"), "\(e.status.message)")
            }
            // Cancelling again changes nothing and bills nothing.
            do {
                _ = try await client.unary(Methods.cancelJob, cancel)
                Issue.record("a second cancel was taken")
            } catch let e as ClientError {
                #expect(e.code == .failedPrecondition)
            }
            #expect(try Self.billed(h, "freebie").records == job.accepted)
            await client.close()
        }
    }

    /// The manifest says how the records were made: synthd's version, the hash of each prompt
    /// template used, the models with their sampling, and the config values that shape a job.
    @Test func theManifestSaysHowTheRecordsWereMade() async throws {
        /// A job's made_with entry, as JSON bytes.
        @Sendable func run(_ h: Harness) async throws -> Data {
            let client = try await h.client(try h.org("acme-\(UUID().uuidString.prefix(4))"))
            var g = PBGenerateRequest()
            g.requestJson = #"{"schema":"preference_v1","domain":"code review best practices","count":5,"model":"balanced","verified":true}"#
            g.domainConfirmed = true
            let job = try await client.unary(Methods.generate, g).job
            let done = try await h.waitForEnd(client, job.jobID)
            #expect(done.status == "succeeded")
            let manifest = try await Self.manifest(client, job.jobID)
            await client.close()
            let made = try #require(manifest["made_with"] as? [[String: Any]])
            #expect(made.count == 1)
            return try JSONSerialization.data(withJSONObject: try #require(made.first), options: [.sortedKeys])
        }
        let recipes = Locked<[Data]>([])
        try await withHarness { h in
            let a = try await run(h), b = try await run(h)
            recipes.withLock { $0 += [a, b] }
        }
        try await withHarness(engine: { $0.attemptsPerRecord = 5 }) { h in
            let c = try await run(h)
            recipes.withLock { $0.append(c) }
        }
        let all = recipes.withLock { $0 }
        try #require(all.count == 3)
        // Two jobs made the same way have equal recipes; another attempt budget makes another one.
        #expect(all[0] == all[1])
        #expect(all[0] != all[2])
        let first = try #require(try JSONSerialization.jsonObject(with: all[0]) as? [String: Any])
        let other = try #require(try JSONSerialization.jsonObject(with: all[2]) as? [String: Any])
        #expect((other["config"] as? [String: Any])?["attempts_per_record"] as? Double == 5)

        #expect(first["synthd_version"] as? String == SynthVersion.current)
        // Each template the job used, hashed as synthd loads it (trimmed).
        let prompts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Sources/SynthEngine/Prompts")
        let templates = try #require(first["prompt_templates"] as? [String: String])
        #expect(Set(templates.keys) == ["system", "preference_v1", "preference_v1.schema", "preference_scores", "preference_scores.schema",
                                        "judge", "judge.schema"])
        for (name, hash) in templates {
            let file = prompts.appendingPathComponent(name + (name.hasSuffix(".schema") ? ".json" : ".txt"))
            let text = try String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            let want = SHA256.hash(data: Array(text.utf8)).map { String(format: "%02x", $0) }.joined()
            #expect(hash == "sha256:" + want, "\(name)")
        }
        let generator = try #require(first["generator"] as? [String: Any])
        #expect(generator["provider"] as? String == "openai" && generator["model"] as? String == "fake-model")
        #expect(generator["temperature"] as? Double == 0.9 && (generator["max_tokens"] as? Int ?? 0) > 0)
        #expect((generator["sampling"] as? [String: Double]) == ["frequency_penalty": 0.8])
        let critic = try #require(first["critic"] as? [String: Any])
        #expect(critic["temperature"] as? Double == 0 && (critic["max_tokens"] as? [String: Int]) == ["preference_scores": 300, "judge": 300])
        let config = try #require(first["config"] as? [String: Any])
        #expect(config["attempts_per_record"] as? Double == 3 && config["job_concurrency"] as? Int == 16)
    }

    @Test func aJobWhoseProviderGoesAwayHalfWayWaitsThenEndsWithWhatItKept() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "20"], jobConcurrency: 8, providerTimeout: 2, maxRetries: 1, engine: { c in
            c.providerUnreachableTimeoutSeconds = 4
        }) { h in
            let key = try h.org("acme")
            let client = try await h.client(key)
            let created = try await client.unary(Methods.generate, Harness.request(count: 400, split: true)).job
            _ = try await withTimeout(30, "40 records") {
                while try #require(try h.store.job(id: created.jobID)).job.accepted < 40 { try await Task.sleep(for: .milliseconds(10)) }
            }
            h.fake.stop()
            // While it cannot connect, the job says it waits for its provider, and Health says the
            // provider cannot be reached; no answer was rejected for it.
            var ask = PBGetJobRequest()
            ask.jobID = created.jobID
            let get = ask
            let waiting = try await withTimeout(20, "the job to wait for its provider") {
                while true {
                    let j = try await client.unary(Methods.getJob, get).job
                    if j.detail.code == "WAITING_FOR_PROVIDER" { return j }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            #expect(waiting.status == "running" && waiting.detail.message.contains("provider openai"), "\(waiting.detail)")
            let health = try await client.unary(Methods.health, PBHealthRequest())
            let tier = try #require(health.components.first { $0.name == "tier:fast" })
            #expect(tier.status == "unreachable" && health.status == "degraded", "\(tier)")
            #expect(!tier.detail.contains("127.0.0.1"), "Health names no URL: \(tier.detail)")
            let job = try await h.waitForEnd(client, created.jobID, seconds: 120)
            #expect(job.status == "succeeded" && job.detail.code == "ENDED_SHORT", "\(job.status) \(job.detail)")
            #expect(job.detail.message.contains("provider openai could not be reached for 4 s"), "\(job.detail.message)")
            #expect(job.accepted >= 40 && job.accepted < 400)
            #expect(job.rejected == 0, "an unreachable provider rejected nothing")
            try await Self.checkDelivered(h, client, job)
            let usage = try Self.billed(h, "acme")
            #expect(usage.records == job.accepted && usage.jobs == 1)
            await client.close()
        }
    }

    @Test func aJobAgainstADeadEndpointFailsNamingTheProviderAndTheError() async throws {
        try await withHarness(providerTimeout: 2, maxRetries: 1, engine: { c in
            c.providerUnreachableTimeoutSeconds = 2
        }) { h in
            h.fake.stop()
            let key = try h.org("acme")
            let client = try await h.client(key)
            let created = try await client.unary(Methods.generate, Harness.request(count: 5)).job
            let job = try await h.waitForEnd(client, created.jobID, seconds: 60)
            #expect(job.status == "failed" && job.accepted == 0)
            #expect(job.generated == 0 && job.rejected == 0)
            #expect(job.error.contains("provider openai could not be reached for 2 s"), "\(job.error)")
            #expect(job.error.lowercased().contains("connect"), "the last connection error: \(job.error)")
            #expect(try Self.billed(h, "acme").records == 0)
            await client.close()
        }
    }

    /// A 429 whose Retry-After is an HTTP date (the other form RFC 9110 allows) is retried no
    /// sooner than that date.
    @Test func aRetryAfterGivenAsAnHTTPDateIsHonoured() async throws {
        try await withHarness(fakeArgs: ["--rate-429", "0.4", "--retry-after", "1", "--retry-after-format", "http-date", "--seed", "5"],
                              jobConcurrency: 4, maxRetries: 8) { h in
            let client = try await h.client(try h.org("acme"))
            let job = try await h.generate(client, count: 12)
            let final = try await h.waitForEnd(client, job.jobID)
            #expect(final.status == "succeeded" && final.accepted == 12)
            let log = (try h.fake.stats()["log"] as? [[String: Any]] ?? []).filter { $0["path"] as? String != "/v1/models" }
            var byBody: [String: [[String: Any]]] = [:]
            for e in log { byBody[e["body_sha"] as? String ?? "", default: []].append(e) }
            var checked = 0
            for (_, entries) in byBody {
                let ordered = entries.sorted { ($0["t"] as? Double ?? 0) < ($1["t"] as? Double ?? 0) }
                for (a, b) in zip(ordered, ordered.dropFirst()) where a["status"] as? Int == 429 {
                    let until = try #require(a["retry_after_until"] as? Double, "the 429 carried an HTTP date")
                    #expect((b["t"] as? Double ?? 0) >= until - 0.01, "a retry came before the date its 429 gave")
                    checked += 1
                }
            }
            #expect(checked >= 2)
            await client.close()
        }
    }
}
