import Foundation
import SynthAPI
import SynthClient
import SynthEngine
import SynthLLM
import SynthProto
import SynthStore
import Testing

/// Batch delivery through the providers' batch APIs, and the caps on what a job and an org may
/// spend, against the fake provider's batch APIs over real HTTP.
@Suite(.serialized) struct CostControlTests {
    /// $1 per million prompt tokens and $2 per million completion tokens: easy to check by hand.
    static let price = ProviderConfig.TokenPrice(prompt: 1, completion: 2)

    static func priced(_ c: inout EngineConfig, poll: Double = 0.05) {
        var p = c.providers["openai"]!
        p.pricesPerMillion = ["fake-model": price]
        p.batchPollSeconds = poll
        c.providers["openai"] = p
    }

    static func batchRequest(count: Int64) -> PBGenerateRequest {
        var r = Harness.request(count: count)
        r.request.delivery = "batch"
        return r
    }

    /// What the job's tokens cost at the price, times `factor`.
    static func expectedCost(_ usage: PBUsage, factor: Double) -> Double {
        (Double(usage.promptTokens) * price.prompt + Double(usage.completionTokens) * price.completion) / 1_000_000 * factor
    }

    @Test func aThousandRecordJobInBatchModeEndsExactAtTheBatchPrice() async throws {
        try await withHarness(fakeArgs: ["--batch-delay-ms", "1500"], seconds: 240, engine: { Self.priced(&$0) }) { h in
            let client = try await h.client(try h.org("acme"))
            let job = try await client.unary(Methods.generate, Self.batchRequest(count: 1000)).job
            // While the batch is pending the job says so (every change of the detail is published).
            let waiting = try await withTimeout(60, "the job to wait for its batch") { () -> PBJob? in
                var watch = PBWatchJobRequest()
                watch.jobID = job.jobID
                watch.progressOnly = true
                for try await e in client.stream(Methods.watchJob, watch) {
                    if case .progress(let j) = e.event, j.detail.code == "WAITING_FOR_BATCH" { return j }
                }
                return nil
            }
            #expect(waiting?.detail.message.contains("waiting for provider batch batch_") == true, "\(String(describing: waiting))")
            // The batch id is stored with the job while it is pending.
            let stored = try #require(try h.store.job(id: job.jobID))
            #expect(!stored.batches.isEmpty && stored.batches[0].batchID.hasPrefix("batch_") && stored.batches[0].items.count == 1000)
            let final = try await h.waitForEnd(client, job.jobID, seconds: 180)
            #expect(final.status == "succeeded" && final.accepted == 1000, "\(final)")
            let records = try h.store.records(jobID: job.jobID, after: 0, limit: 2000)
            #expect(records.count == 1000 && records.map(\.seq) == Array(1...1000))
            #expect(Set(records.map(\.json)).count == 1000)
            // Every request went through a batch, each answered once, and each counted once.
            let stats = try h.fake.stats()
            let log = stats["log"] as? [[String: Any]] ?? []
            let completions = log.filter { $0["path"] as? String == "/v1/chat/completions" }
            #expect(!completions.isEmpty && completions.allSatisfy { $0["batch"] as? Bool == true })
            #expect(stats["generation_requests"] as? Int == Int(final.generated), "fake \(stats["generation_requests"] ?? "-") vs generated \(final.generated)")
            let calls = stats["batch_calls"] as? [String: Int] ?? [:]
            #expect((calls["POST /v1/batches"] ?? 0) >= 1 && calls["POST /v1/files"] == calls["POST /v1/batches"], "\(calls)")
            // Usage: the batch price, half the standard one, for the tokens used.
            let usage = final.usage
            #expect(usage.requests == final.generated && usage.promptTokens > 0)
            #expect(abs(usage.providerCostUsd - Self.expectedCost(usage, factor: 0.5)) < 1e-9, "\(usage.providerCostUsd)")
            #expect(try h.store.job(id: job.jobID)?.batches.isEmpty == true)
            // The org's month counts what it spent.
            let month = try h.store.usage(org: "acme", month: Clock.month(Clock.nowMillis()))
            #expect(abs((month?.providerCostUsd ?? 0) - usage.providerCostUsd) < 1e-9)
            await client.close()
        }
    }

    /// Expired batches and requests failing inside a batch go again in follow-up batches, through
    /// both providers' APIs, and the job still ends exact.
    @Test(arguments: ["openai", "anthropic"])
    func expiredBatchesAndFailedRequestsGoAgain(kind: String) async throws {
        try await withHarness(fakeArgs: ["--batch-delay-ms", "100", "--batch-expire-rate", "0.5", "--batch-error-rate", "0.1"], seconds: 180,
                              engine: { c in
            Self.priced(&c)
            if kind == "anthropic" {
                var p = c.providers["openai"]!
                p.kind = .anthropic
                p.baseURL = String(p.baseURL.dropLast(3))
                c.providers["openai"] = p
            }
        }) { h in
            let client = try await h.client(try h.org("acme"))
            let job = try await client.unary(Methods.generate, Self.batchRequest(count: 120)).job
            let final = try await h.waitForEnd(client, job.jobID, seconds: 150)
            #expect(final.status == "succeeded" && final.accepted == 120, "\(final)")
            let records = try h.store.records(jobID: job.jobID, after: 0, limit: 500)
            #expect(records.map(\.seq) == Array(1...120) && Set(records.map(\.json)).count == 120)
            let stats = try h.fake.stats()
            let calls = stats["batch_calls"] as? [String: Int] ?? [:]
            let created = kind == "openai" ? calls["POST /v1/batches"] ?? 0 : calls["POST /v1/messages/batches"] ?? 0
            #expect(created >= 2, "follow-up batches: \(calls)")
            let log = stats["log"] as? [[String: Any]] ?? []
            #expect(log.contains { $0["fault"] as? String == "batch_item" }, "some requests failed inside a batch")
            // Failed and expired requests were not answers: only answers count, at the batch price.
            #expect(abs(final.usage.providerCostUsd - Self.expectedCost(final.usage, factor: 0.5)) < 1e-9)
            #expect(final.usage.requests == final.generated)
            await client.close()
        }
    }

    /// A synthd stopped while its batch is pending asks the same batch again when it starts: the
    /// requests are not sent twice, and the job ends exact.
    @Test func aRestartWhileABatchIsPendingResumesPollingIt() async throws {
        try await withHarness(fakeArgs: ["--batch-delay-ms", "2500"], seconds: 180, engine: { Self.priced(&$0) }) { h in
            let client = try await h.client(try h.org("acme"))
            let job = try await client.unary(Methods.generate, Self.batchRequest(count: 60)).job
            try await settle("the batch to be stored", seconds: 60) { try h.store.job(id: job.jobID)?.batches.isEmpty == false }
            let pending = try #require(try h.store.job(id: job.jobID)?.batches.first)
            #expect(pending.items.count == 60)
            await client.close()
            await h.stopServing()
            let before = try h.fake.stats()["batch_calls"] as? [String: Int] ?? [:]
            let createdBefore = before["POST /v1/batches"] ?? 0
            let polledBefore = before["GET /v1/batches/\(pending.batchID)"] ?? 0
            #expect(try h.store.job(id: job.jobID)?.job.status == "running")
            try await h.restart()
            let again = try await h.client(try h.store.createKey(org: "acme").key)
            let final = try await h.waitForEnd(again, job.jobID, seconds: 120)
            #expect(final.status == "succeeded" && final.accepted == 60, "\(final)")
            let records = try h.store.records(jobID: job.jobID, after: 0, limit: 500)
            #expect(records.map(\.seq) == Array(1...60) && Set(records.map(\.json)).count == 60)
            let stats = try h.fake.stats()
            // The fake answered each request once: every answer was used, none asked twice.
            #expect(stats["generation_requests"] as? Int == Int(final.generated), "fake \(stats["generation_requests"] ?? "-"), generated \(final.generated)")
            let calls = stats["batch_calls"] as? [String: Int] ?? [:]
            #expect((calls["GET /v1/batches/\(pending.batchID)"] ?? 0) > polledBefore, "the stored batch was asked about again: \(calls)")
            // A batch after the restart holds only follow-ups of rejected answers: none when all 60 were taken.
            let createdAfter = calls["POST /v1/batches"] ?? 0
            #expect(final.generated > 60 || createdAfter == createdBefore, "\(createdBefore) batches before, \(createdAfter) after")
            #expect(h.logs.text.contains("job resumed"))
            await again.close()
        }
    }

    /// A batch job cancelled while its batch is pending asks the provider to cancel the batch.
    @Test func cancellingABatchJobCancelsItsBatchAtTheProvider() async throws {
        try await withHarness(fakeArgs: ["--batch-delay-ms", "30000"], seconds: 90, engine: { Self.priced(&$0) }) { h in
            let client = try await h.client(try h.org("acme"))
            let job = try await client.unary(Methods.generate, Self.batchRequest(count: 40)).job
            try await settle("the batch to be stored", seconds: 60) { try h.store.job(id: job.jobID)?.batches.isEmpty == false }
            let batch = try #require(try h.store.job(id: job.jobID)?.batches.first).batchID
            var cancel = PBCancelJobRequest()
            cancel.jobID = job.jobID
            let cancelled = try await client.unary(Methods.cancelJob, cancel).job
            #expect(cancelled.status == "cancelled" && cancelled.accepted == 0)
            try await settle("the batch to be cancelled at the provider", seconds: 20) {
                ((try h.fake.stats()["batch_calls"] as? [String: Int])?["POST /v1/batches/\(batch)/cancel"] ?? 0) == 1
            }
            #expect(try h.store.job(id: job.jobID)?.batches.isEmpty == true)
            await client.close()
        }
    }

    /// A job's max_provider_cost_usd: the engine stops sending before the next request could pass
    /// it, and the job ends with what it has and the reason.
    @Test func aJobStopsAtItsSpendCap() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "20"], jobConcurrency: 4, seconds: 120, engine: { Self.priced(&$0) }) { h in
            let client = try await h.client(try h.org("acme"))
            var plan = PBPlanRequest()
            plan.request = Harness.request(count: 400).request
            plan.request.maxProviderCostUsd.value = 0.01
            let estimate = try await client.unary(Methods.plan, plan).cost.provider
            #expect(estimate.priced && estimate.priceFactor == 1 && estimate.capUsd == 0.01 && estimate.perRequestUsd > 0)
            var r = Harness.request(count: 400)
            r.request.maxProviderCostUsd.value = 0.01
            let job = try await client.unary(Methods.generate, r).job
            let final = try await h.waitForEnd(client, job.jobID, seconds: 100)
            #expect(final.status == "succeeded" && final.accepted > 0 && final.accepted < 400, "\(final)")
            #expect(final.detail.code == "ENDED_SHORT" && final.detail.message.contains("max_provider_cost_usd of $0.0100 was reached"),
                    "\(final.detail)")
            #expect(final.usage.providerCostUsd <= 0.01 && final.usage.providerCostUsd > 0.01 - 5 * estimate.perRequestUsd,
                    "spent \(final.usage.providerCostUsd) of 0.01, a request up to \(estimate.perRequestUsd)")
            #expect(abs(final.usage.providerCostUsd - Self.expectedCost(final.usage, factor: 1)) < 1e-9)
            await client.close()
        }
    }

    /// An org's monthly provider budget holds over all its jobs; another org is not held to it.
    @Test func anOrgsMonthlyBudgetHoldsAcrossItsJobs() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "20"], jobConcurrency: 4, seconds: 120, engine: { c in
            Self.priced(&c)
            c.orgProviderBudgets = ["acme": 0.008]
        }) { h in
            let acme = try await h.client(try h.org("acme"))
            let other = try await h.client(try h.org("other"))
            let first = try await h.waitForEnd(acme, try await h.generate(acme, count: 400).jobID, seconds: 100)
            #expect(first.status == "succeeded" && first.accepted > 0 && first.accepted < 400, "\(first)")
            #expect(first.detail.message.contains("org acme's monthly provider budget of $0.0080 was reached"), "\(first.detail)")
            let second = try await h.waitForEnd(acme, try await h.generate(acme, count: 50).jobID, seconds: 60)
            #expect(second.status == "failed" && second.accepted == 0, "\(second)")
            #expect(second.error.contains("monthly provider budget"), "\(second.error)")
            let month = try #require(try h.store.usage(org: "acme", month: Clock.month(Clock.nowMillis())))
            #expect(month.providerCostUsd <= 0.008 && month.providerCostUsd > 0)
            #expect(abs(month.providerCostUsd - first.usage.providerCostUsd - second.usage.providerCostUsd) < 1e-9)
            let free = try await h.waitForEnd(other, try await h.generate(other, count: 30).jobID, seconds: 60)
            #expect(free.status == "succeeded" && free.accepted == 30)
            await acme.close()
            await other.close()
        }
    }

    /// The new request fields are checked with the rest, and plan shows the batch price.
    @Test func deliveryAndCapAreCheckedAndPlanShowsTheBatchPrice() async throws {
        try await withHarness(seconds: 60, engine: { Self.priced(&$0) }) { h in
            let client = try await h.client(try h.org("acme"))
            var bad = PBPlanRequest()
            bad.requestJson = #"{"schema":"instruction_v1","domain":"customer support","count":10,"model":"fast","delivery":"bulk","max_provider_cost_usd":-1}"#
            do {
                _ = try await client.unary(Methods.plan, bad)
                Issue.record("a bad delivery and cap were taken")
            } catch let e as ClientError {
                #expect(e.description.contains("delivery") && e.description.contains("must be online or batch"), "\(e.description)")
                #expect(e.description.contains("max_provider_cost_usd"), "\(e.description)")
            }
            var plan = PBPlanRequest()
            plan.requestJson = #"{"schema":"instruction_v1","domain":"customer support","count":1000,"model":"fast","delivery":"batch"}"#
            let batch = try await client.unary(Methods.plan, plan).cost.provider
            plan.requestJson = #"{"schema":"instruction_v1","domain":"customer support","count":1000,"model":"fast"}"#
            let online = try await client.unary(Methods.plan, plan).cost.provider
            #expect(batch.delivery == "batch" && batch.priceFactor == 0.5 && online.delivery == "online" && online.priceFactor == 1)
            #expect(abs(batch.perRequestUsd * 2 - online.perRequestUsd) < 1e-12 && abs(batch.allFirstTryUsd - 1000 * batch.perRequestUsd) < 1e-9)
            await client.close()
        }
        // A cap on a model with no price cannot be held: refused, naming what to set.
        try await withHarness(seconds: 60) { h in
            let client = try await h.client(try h.org("acme"))
            var r = Harness.request(count: 10)
            r.request.maxProviderCostUsd.value = 1
            do {
                _ = try await client.unary(Methods.generate, r)
                Issue.record("a cap without a price was taken")
            } catch let e as ClientError {
                #expect(e.description.contains("prices_per_million"), "\(e.description)")
            }
            await client.close()
        }
    }
}
