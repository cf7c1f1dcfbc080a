import Foundation
import Logging
import Testing
import SynthCore
import SynthEngine
import SynthLLM
import SynthProto
import SynthSpec
import SynthStore

/// The engine in process, against a scripted model: a real store on disk, the real application
/// layer to make jobs, no sockets.
@Suite struct EngineTests {
    /// A store in a fresh directory, an org with money, and an engine whose every tier is `model`.
    final class Rig: @unchecked Sendable {
        let dir = NSTemporaryDirectory() + "synthd-engine-" + UUID().uuidString
        let store: Store
        var engine: Engine
        var core: JobService
        let caller = Caller(org: "acme", keyID: "key_test")
        let config: EngineConfig

        init(_ model: ScriptedModel, concurrency: Int = 8) throws {
            store = try Store(path: dir)
            _ = try store.createOrg(name: "acme", balanceMicroUSD: 1_000_000_000)
            let route = ModelRoute(provider: "scripted", model: "scripted")
            config = EngineConfig(providers: ["scripted": ProviderConfig(name: "scripted", kind: .openai, baseURL: "http://127.0.0.1:9/v1",
                                                                          maxInFlight: model.maxInFlight)],
                                  tiers: ["fast": route, "balanced": route, "diverse": route, "deep": route], critic: route,
                                  jobConcurrency: concurrency)
            engine = Engine(store: store, config: config, logger: Logger(label: "engine-test"), models: ["scripted": model])
            core = JobService(store: store, engine: engine, validator: Validator(), logger: Logger(label: "engine-test"))
        }

        /// A new engine on the same store, as the next process start would make.
        func restart(with model: ScriptedModel) {
            engine = Engine(store: store, config: config, logger: Logger(label: "engine-test"), models: ["scripted": model])
            core = JobService(store: store, engine: engine, validator: Validator(), logger: Logger(label: "engine-test"))
        }

        func submit(_ json: String) async throws -> PBJob {
            var g = PBGenerateRequest()
            g.request = try RequestJSON.parse(json)
            g.domainConfirmed = true
            return try await core.generate(g, caller).job
        }

        /// Polls the stored job until `done` holds, for at most `seconds`.
        func wait(_ id: String, seconds: Double = 60, until done: @escaping (PBJob) -> Bool) async throws -> PBJob {
            // Times SYNTHD_TEST_TIME_SCALE, which `make test-sanitize` sets (ThreadSanitizer is slow).
            let scale = ProcessInfo.processInfo.environment["SYNTHD_TEST_TIME_SCALE"].flatMap(Double.init).map { min(max(1, $0), 100) } ?? 1
            let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * scale * 1000))
            while true {
                let job = try #require(try store.job(id: id)).job
                if done(job) { return job }
                guard ContinuousClock.now < deadline else {
                    Issue.record("job \(id) is \(job.status) with \(job.accepted) records after \(seconds) s")
                    return job
                }
                try await Task.sleep(for: .milliseconds(10))
            }
        }

        func ended(_ id: String, seconds: Double = 60) async throws -> PBJob {
            try await wait(id, seconds: seconds) { JobStatus(rawValue: $0.status)?.isTerminal == true }
        }

        func records(_ id: String) throws -> [(seq: UInt64, json: [String: Any])] {
            try store.records(jobID: id, after: 0, limit: 100_000).map { r in
                (r.seq, try #require(try JSONSerialization.jsonObject(with: Data(r.json)) as? [String: Any]))
            }
        }

        deinit { try? FileManager.default.removeItem(atPath: dir) }
    }

    static let plain = #"{"schema":"instruction_v1","domain":"customer support for a SaaS product","count":COUNT,"model":"fast"}"#
    static func plain(_ count: Int) -> String { plain.replacingOccurrences(of: "COUNT", with: String(count)) }

    @Test func thePlanIsRealisedExactly() async throws {
        let model = ScriptedModel()
        let rig = try Rig(model)
        let job = try await rig.submit("""
        {"schema":"instruction_v1","domain":"customer support for a SaaS product","count":60,"model":"fast",
         "advanced":{"categories":{"billing":{"percentage":50},"access":{"percentage":30},"bugs":{"percentage":20}},
                     "hard_negatives":{"enabled":true,"percentage":20},"output_split":{"train":80,"validation":20},
                     "metadata_fields":[{"name":"id","type":"auto_increment","prefix":"cs_"}]}}
        """)
        let done = try await rig.ended(job.jobID)
        #expect(done.status == "succeeded" && done.accepted == 60)
        let records = try rig.records(job.jobID)
        #expect(records.map(\.seq) == Array(1...60))
        var categories: [String: Int] = [:]
        var hard = 0
        for r in records {
            let meta = r.json["metadata"] as? [String: Any] ?? [:]
            categories[meta["category"] as? String ?? "", default: 0] += 1
            if meta["hard_negative"] as? Bool == true { hard += 1 }
            #expect(meta["id"] as? String == String(format: "cs_%03d", r.seq))
        }
        #expect(categories == ["billing": 30, "access": 18, "bugs": 12])
        #expect(hard == 12)
        #expect(try rig.store.manifest(jobID: job.jobID) != nil)
    }

    @Test func aFatalAnswerEndsTheJobAndStopsItsRequests() async throws {
        // Answers 1 to 6 come back before request 7 is refused: the job ends with what it kept
        // (succeeded short of its count, the reason in its detail).
        let model = ScriptedModel(latency: .milliseconds(5)) { $0 == 7 ? .fail(.fatal) : .answer }
        let rig = try Rig(model, concurrency: 4)
        let job = try await rig.submit(Self.plain(200))
        let done = try await rig.ended(job.jobID)
        #expect(done.accepted > 0 && done.accepted < 200)
        #expect(done.status == "succeeded")
        let stored = try #require(try rig.store.job(id: job.jobID))
        #expect(stored.endDetail.code == "ENDED_SHORT")
        #expect(stored.endDetail.message.contains("scripted failure at request 7"), "\(stored.endDetail.message)")
        // The requests already waiting never went: at most the ones in flight at the time.
        let after = model.count
        #expect(after <= 7 + 4, "\(after) requests")
        try await Task.sleep(for: .milliseconds(100))
        #expect(model.count == after)
    }

    @Test func aFatalFirstAnswerFailsTheJob() async throws {
        let model = ScriptedModel { _ in .fail(.fatal) }
        let rig = try Rig(model, concurrency: 1)
        let job = try await rig.submit(Self.plain(20))
        let done = try await rig.ended(job.jobID)
        #expect(done.status == "failed" && done.accepted == 0)
        #expect(done.error.contains("scripted failure at request 1"), "\(done.error)")
        #expect(model.count == 1)
        #expect(try rig.store.manifest(jobID: job.jobID) == nil)
    }

    @Test func requestsThatRanOutOfRetriesAreTriedAgainAndUnusableAnswersReplaced() async throws {
        let model = ScriptedModel { n in n % 3 == 0 ? .fail(.exhausted) : n % 5 == 0 ? .garbage : .answer }
        let rig = try Rig(model)
        let job = try await rig.submit(Self.plain(80))
        let done = try await rig.ended(job.jobID)
        #expect(done.status == "succeeded" && done.accepted == 80)
        #expect(try rig.records(job.jobID).map(\.seq) == Array(1...80))
        // Every third request failed and every fifth answered nonsense: both were made up for.
        #expect(model.count > 80 + 80 / 3)
        let stored = try #require(try rig.store.job(id: job.jobID))
        #expect(stored.rejections["format_invalid", default: 0] > 0, "\(stored.rejections)")
    }

    @Test func anUnreachableProviderIsWaitedForLongerEachTimeAndRejectsNothing() async throws {
        // No connection for the first two requests, then an answer: the one slot waits 1 s, then
        // 2 s, before it goes back; no attempt is spent and no answer rejected, and the job says
        // it waits meanwhile.
        let model = ScriptedModel { $0 <= 2 ? .fail(.unreachable) : .answer }
        let rig = try Rig(model, concurrency: 1)
        let job = try await rig.submit(Self.plain(1))
        _ = try await rig.wait(job.jobID) { _ in rig.engine.waitingReason(jobID: job.jobID) != nil }
        #expect(rig.engine.waitingReason(jobID: job.jobID)?.contains("provider scripted") == true)
        let done = try await rig.ended(job.jobID)
        #expect(done.status == "succeeded" && done.accepted == 1 && done.rejected == 0)
        #expect(rig.engine.waitingReason(jobID: job.jobID) == nil)
        let t = model.times
        #expect(t.count == 3)
        let gaps = zip(t.dropFirst(), t).map { $0 - $1 }
        #expect(gaps.count == 2 && gaps[0] >= .milliseconds(950) && gaps[1] >= .milliseconds(1950), "\(gaps)")
    }

    @Test func cancellingKeepsWhatWasAcceptedAndStopsAsking() async throws {
        let model = ScriptedModel(latency: .milliseconds(20))
        let rig = try Rig(model, concurrency: 4)
        let job = try await rig.submit(Self.plain(2000))
        _ = try await rig.wait(job.jobID) { $0.accepted >= 20 }
        let cancelled = try rig.engine.cancel(jobID: job.jobID)
        #expect(cancelled.job.status == "cancelled")
        try await Task.sleep(for: .milliseconds(200))
        let asked = model.count
        try await Task.sleep(for: .milliseconds(300))
        #expect(model.count == asked, "the model was still asked after the cancel")
        let after = try #require(try rig.store.job(id: job.jobID)).job
        #expect(after.status == "cancelled" && after.accepted >= 20 && after.accepted < 2000)
        #expect(try rig.records(job.jobID).map(\.seq) == Array(1...UInt64(after.accepted)))
    }

    @Test func aStoppedEngineResumesFromTheStoreWithNothingLostOrDoubled() async throws {
        let first = ScriptedModel(latency: .milliseconds(10))
        let rig = try Rig(first, concurrency: 8)
        let job = try await rig.submit(Self.plain(300))
        _ = try await rig.wait(job.jobID) { $0.accepted >= 40 }
        await rig.engine.shutdown()
        let stopped = try #require(try rig.store.job(id: job.jobID)).job
        #expect(stopped.status == "running" && stopped.accepted < 300)
        let kept = try rig.store.records(jobID: job.jobID, after: 0, limit: 1000).map(\.json)
        #expect(kept.count == Int(stopped.accepted))
        let second = ScriptedModel()
        rig.restart(with: second)
        #expect(try rig.engine.resumeUnfinished() == 1)
        let done = try await rig.ended(job.jobID)
        #expect(done.status == "succeeded" && done.accepted == 300)
        let records = try rig.records(job.jobID)
        #expect(records.map(\.seq) == Array(1...300))
        // What the first run committed is there as it was; the rest came from the second run.
        let now = try rig.store.records(jobID: job.jobID, after: 0, limit: kept.count).map(\.json)
        #expect(now == kept)
        #expect(second.count >= 300 - Int(stopped.accepted))
        // The second model writes its record 1, 2, ... again: the near-duplicate check, rebuilt
        // from the store, turned away any the first run had kept, so no record is there twice.
        #expect(Set(records.map { "\($0.json["instruction"] ?? "")|\($0.json["output"] ?? "")" }).count == 300)
    }
}
