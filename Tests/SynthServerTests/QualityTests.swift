import Foundation
import SynthAPI
import SynthClient
import SynthProto
import SynthQuality
import SynthSpec
import Testing

/// The quality system end to end: the fake provider plants faults, a real synthd generates, and
/// the delivered records and the manifest are checked against what the fake says it planted.
@Suite(.serialized) struct QualityTests {
    struct Outcome {
        var job: PBJob
        var records: [[String: Any]]
        var manifest: [String: Any]
        var report: [String: Any] { manifest["quality_report"] as? [String: Any] ?? [:] }
        var rejections: [String: Int] { report["rejection_breakdown"] as? [String: Int] ?? [:] }
        var formatProblems: [String: Int] { report["format_problems"] as? [String: Int] ?? [:] }
        var log: [[String: Any]]

        /// The fake's answers of one schema (or critic kind) that carried a record.
        func answers(_ schema: String) -> [[String: Any]] {
            log.filter { $0["schema"] as? String == schema && $0["status"] as? Int == 200 }
        }
        func planted(_ schema: String, _ kind: String) -> Int {
            answers(schema).filter { ($0["planted"] as? [String] ?? []).contains(kind) }.count
        }
    }

    func run(_ h: Harness, _ json: String) async throws -> Outcome {
        let key = try h.org("q-\(UUID().uuidString.prefix(6))")
        let client = try await h.client(key)
        var req = PBGenerateRequest()
        req.request = try RequestJSON.parse(json)
        let job = try await client.unary(Methods.generate, req).job
        let done = try await h.waitForEnd(client, job.jobID, seconds: 120)
        var w = PBWatchJobRequest()
        w.jobID = job.jobID
        var records: [[String: Any]] = []
        for try await e in client.stream(Methods.watchJob, w) {
            if case .record(let r) = e.event, let obj = try JSONSerialization.jsonObject(with: r.json) as? [String: Any] { records.append(obj) }
        }
        var m = PBGetManifestRequest()
        m.jobID = job.jobID
        let manifestBytes = try await client.unary(Methods.getManifest, m).json
        let manifest = try JSONSerialization.jsonObject(with: manifestBytes) as? [String: Any] ?? [:]
        let log = try h.fake.stats()["log"] as? [[String: Any]] ?? []
        try h.fake.post("/reset", #"{"all": true}"#)
        return Outcome(job: done, records: records, manifest: manifest, log: log)
    }

    func checkFigures(_ o: Outcome) {
        let r = o.report
        let generated = r["total_generated"] as? Int ?? -1, accepted = r["total_accepted"] as? Int ?? -1
        #expect(generated == accepted + (r["total_rejected"] as? Int ?? -1))
        #expect(o.rejections.values.reduce(0, +) == r["total_rejected"] as? Int)
        let figures = QualityFigures(generated: Int64(generated), accepted: Int64(accepted),
                                     nearDuplicates: Int64(o.rejections["near_duplicate"] ?? 0),
                                     meanJudgeScore: r["mean_judge_score"] as? Double)
        #expect(r["overall_grade"] as? String == figures.grade)
        #expect(abs((r["pass_rate"] as? Double ?? -1) - figures.passRate) < 0.0006)
        #expect(abs((r["diversity_score"] as? Double ?? -1) - figures.diversityScore) < 0.0006)
        #expect(o.job.grade == figures.grade)
        // Coverage: every cell delivered exactly its plan, and the per-cell rejections add up.
        let coverage = r["coverage"] as? [[String: Any]] ?? []
        #expect(!coverage.isEmpty)
        #expect(coverage.allSatisfy { $0["planned"] as? Int == $0["delivered"] as? Int })
        #expect(coverage.map { $0["rejected"] as? Int ?? 0 }.reduce(0, +) == r["total_rejected"] as? Int)
    }

    @Test func formatProblemsAreRejectedAndCountedByKind() async throws {
        try await withHarness(fakeArgs: ["--plant", "leakage:0.08", "--plant", "truncation:0.08", "--plant", "empty:0.08"], seconds: 240) { h in
            let o = try await run(h, #"{"schema":"instruction_v1","domain":"customer support for a SaaS product","count":80,"model":"fast"}"#)
            #expect(o.records.count == 80)
            checkFormat(o)
        }
    }

    /// What the checker should have found: each planted answer under its first problem.
    func checkFormat(_ o: Outcome) {
        var want: [String: Int] = [:]
        for a in o.answers("instruction_v1") {
            let p = a["planted"] as? [String] ?? []
            let kind: String?
            if p.contains("empty") {
                kind = "empty"
            } else if p.contains("leakage") {
                kind = "leakage"
            } else if p.contains("truncation") {
                kind = "truncated"
            } else {
                kind = nil
            }
            if let kind { want[kind, default: 0] += 1 }
        }
        let total = want.values.reduce(0, +)
        #expect(total > 5)
        #expect(o.formatProblems == want)
        #expect(o.rejections == ["format_invalid": total])
        for r in o.records {
            let out = r["output"] as? String ?? ""
            #expect(!out.isEmpty)
            #expect(!out.contains("SCHEMA:"))
            #expect(out.hasSuffix("."))
        }
        checkFigures(o)
    }

    @Test func nearDuplicatesAreRemovedExactly() async throws {
        try await withHarness(fakeArgs: ["--near-dup-rate", "0.25"], seconds: 240) { h in
            let o = try await run(h, #"{"schema":"instruction_v1","domain":"customer support for a SaaS product","count":120,"model":"fast"}"#)
            #expect(o.records.count == 120)
            let served = o.answers("instruction_v1").filter { $0["near_dup_of"] is String }.count
            let removed = o.rejections["near_duplicate"] ?? 0
            #expect(removed > 0 && removed <= served, "\(removed) removed of \(served) near-duplicates served")
            // No two delivered records are near-duplicates, by brute force over all pairs.
            let texts = o.records.map { r in ["instruction", "input", "output"].map { r[$0] as? String ?? "" }.joined(separator: "\n") }
            #expect(BruteForceNearDuplicates.decisions(texts).allSatisfy { !$0 })
            let diversity = Double(120) / Double(120 + removed)
            #expect(abs((o.report["diversity_score"] as? Double ?? 0) - (diversity * 1000).rounded() / 1000) < 1e-9)
            checkFigures(o)
        }
    }

    @Test func preferencePairsNeedAMargin() async throws {
        try await withHarness(fakeArgs: ["--plant", "low_margin:0.2"], seconds: 240) { h in
            let o = try await run(h, #"{"schema":"preference_v1","domain":"customer support for a SaaS product","count":50,"model":"balanced"}"#)
            #expect(o.records.count == 50)
            // "Both responses are scored by a critic pass": the margin is the critic's. The fake
            // plants low margins in generated pairs and in critic answers alike; only the critic's count.
            let planted = o.planted("preference_scores", "low_margin")
            #expect(planted > 0 && o.planted("preference_v1", "low_margin") > 0)
            #expect(o.rejections == ["low_margin": planted])
            #expect(o.answers("preference_scores").count == 50 + planted)
            for r in o.records {
                #expect((r["chosen_score"] as? Double ?? 0) - (r["rejected_score"] as? Double ?? 0) >= 2)
                // The critic's reasoning ships, and provenance names the model that scored.
                #expect(!(r["reasoning"] as? String ?? "").contains(" than the rejected one. "))
                #expect((r["provenance"] as? [String: Any])?["scored_by"] as? String == "fake-model")
            }
            checkFigures(o)
        }
    }

    /// conflict_v1: the two responses argue the axis' two drives, one each; annotated and graded
    /// resolutions carry an override condition; the pair's description reaches the model.
    @Test func conflictRecordsArgueBothDrivesAndSayWhenTheLoserWins() async throws {
        try await withHarness(fakeArgs: ["--plant", "same_drive:0.15", "--plant", "no_override:0.15"], seconds: 240) { h in
            for mode in ["annotated", "graded"] {
                let o = try await run(h, #"""
                    {"schema":"conflict_v1","domain":"AI assistant alignment decisions","count":30,"model":"balanced",
                     "conflict_config":{"resolution_mode":"\#(mode)","drive_pairs":[
                       {"axis_name":"safety_autonomy","description":"Protecting a user against respecting their choices",
                        "drives":[{"name":"safety","description":"Prioritize user protection"},{"name":"autonomy","description":"Respect user agency"}]},
                       {"a":"honesty","b":"helpfulness"}]}}
                    """#)
                #expect(o.records.count == 30)
                let bad = o.answers("conflict_v1").filter { !Set($0["planted"] as? [String] ?? []).isDisjoint(with: ["same_drive", "no_override"]) }.count
                #expect(bad > 0)
                #expect(o.rejections == ["format_invalid": bad], "\(mode): \(o.rejections) for \(bad) planted")
                let drives = ["safety_autonomy": Set(["safety", "autonomy"]), "honesty_helpfulness": Set(["honesty", "helpfulness"])]
                for r in o.records {
                    let data = r["data"] as? [String: Any] ?? [:]
                    let axis = data["axis"] as? String ?? ""
                    let named = (data["responses"] as? [[String: Any]] ?? []).compactMap { $0["drive"] as? String }
                    #expect(named.count == 2 && Set(named) == drives[axis], "\(axis): \(named)")
                    let resolution = data["resolution"] as? [String: Any] ?? [:]
                    #expect(!((resolution["override_condition"] as? String) ?? "").trimmingCharacters(in: .whitespaces).isEmpty)
                }
                // The axis with a description had it on every one of its task cards; the short form has none.
                let cards = o.answers("conflict_v1")
                let described = cards.filter { $0["axis_description"] as? String == "Protecting a user against respecting their choices" }.count
                #expect(described > 0 && described + cards.filter { $0["axis_description"] == nil }.count == cards.count)
                checkFigures(o)
            }
        }
    }

    @Test func verifiedJobsAreJudgedAndScoresShipWithTheRecords() async throws {
        try await withHarness(fakeArgs: ["--plant", "low_judge:0.2"], seconds: 240) { h in
            let o = try await run(h, #"""
                {"schema":"instruction_v1","domain":"customer support for a SaaS product","count":60,"model":"fast","verified":true,
                 "advanced":{"metadata_fields":[{"name":"helpfulness","type":"llm_assessed"}]}}
                """#)
            #expect(o.records.count == 60)
            let planted = o.planted("judge", "low_judge")
            #expect(planted > 0)
            #expect(o.rejections == ["judge_rejected": planted])
            var overall: [Double] = []
            for r in o.records {
                let q = (r["provenance"] as? [String: Any])?["quality"] as? [String: Any] ?? [:]
                for k in ["relevance", "accuracy", "completeness", "overall"] { #expect((q[k] as? Double).map { (1...10).contains($0) } == true) }
                #expect(q["judge_model"] as? String == "fake-model")
                overall.append(q["overall"] as? Double ?? 0)
                let helpfulness = (r["metadata"] as? [String: Any])?["helpfulness"] as? Double
                #expect(helpfulness.map { (1...10).contains($0) } == true)
            }
            #expect(overall.allSatisfy { $0 >= 6.0 })
            let mean = overall.reduce(0, +) / Double(overall.count)
            #expect(abs((o.report["mean_judge_score"] as? Double ?? 0) - mean) < 0.006)
            #expect(o.report["phase"] as? Int == 2)
            #expect((o.job.usage.stages.first { $0.stage == "judge" }?.requests ?? 0) >= 60)
            checkFigures(o)
        }
    }

    @Test func criticCallsStayWithinTheJobsConcurrency() async throws {
        try await withHarness(fakeArgs: ["--latency-ms", "40"], jobConcurrency: 3, seconds: 240) { h in
            let o = try await run(h, #"""
                {"schema":"instruction_v1","domain":"customer support for a SaaS product","count":30,"model":"fast","verified":true,
                 "advanced":{"invariants":[{"rule":"Never promise a refund that policy does not allow","enforcement":"soft"}]}}
                """#)
            #expect(o.records.count == 30)
            #expect((o.job.usage.stages.first { $0.stage == "judge" }?.requests ?? 0) >= 30)
            #expect((o.job.usage.stages.first { $0.stage == "invariants" }?.requests ?? 0) >= 30)
            // The provider's view: from each request's arrival to its answer. Those spans lie
            // inside the client's, so at no moment may more than 3 be open.
            var edges: [(Double, Int)] = []
            for e in o.log where e["path"] as? String != "/v1/models" {
                guard let t = e["t"] as? Double, let end = e["t_end"] as? Double else { continue }
                edges.append((t, 1))
                edges.append((end, -1))
            }
            #expect(edges.count >= 2 * 90)
            edges.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
            var open = 0, most = 0
            for (_, d) in edges {
                open += d
                most = max(most, open)
            }
            #expect(most <= 3, "\(most) requests at once; the job's concurrency is 3")
            #expect(most >= 2)
        }
    }

    @Test func invariantsRejectStrictTagSoftAndFailOpen() async throws {
        try await withHarness(fakeArgs: ["--plant", "invariant_violation:0.2"], seconds: 240) { h in
            let strict = try await run(h, #"""
                {"schema":"instruction_v1","domain":"customer support for a SaaS product","count":50,"model":"fast",
                 "advanced":{"invariants":[{"rule":"Never promise a refund that policy does not allow","enforcement":"strict"}]}}
                """#)
            #expect(strict.records.count == 50)
            let violations = strict.planted("invariants", "invariant_violation")
            #expect(violations > 0)
            #expect(strict.rejections == ["invariant_violated": violations])
            checkFigures(strict)

            // Soft: nothing is rejected; the flagged records carry the rule. A tenth of the
            // checker's answers are garbage: those records pass, and the report says how many.
            try h.fake.post("/config", #"{"rate_malformed": 0.1}"#)
            let soft = try await run(h, #"""
                {"schema":"instruction_v1","domain":"customer support for a SaaS product","count":50,"model":"fast",
                 "advanced":{"invariants":[{"rule":"Mention the help centre when the answer has more than two steps","enforcement":"soft"}]}}
                """#)
            #expect(soft.records.count == 50)
            #expect(soft.rejections["invariant_violated"] == nil)
            let flagged = soft.records.filter { (($0["metadata"] as? [String: Any])?["invariant_soft_flags"] as? [String] ?? []).count == 1 }
            // A garbled answer carries no verdict, whatever was planted in it.
            let softPlanted = soft.answers("invariants").filter {
                ($0["planted"] as? [String] ?? []).contains("invariant_violation") && !($0["fault"] is String)
            }.count
            #expect(softPlanted > 0 && flagged.count == softPlanted)
            #expect(soft.records.allSatisfy { ($0["metadata"] as? [String: Any])?["invariant_soft_flags"] is [String] })
            let garbled = soft.log.filter { $0["schema"] as? String == "invariants" && $0["fault"] as? String == "malformed" }.count
            #expect(garbled > 0)
            #expect(soft.report["invariant_check_failures"] as? Int == garbled)
            checkFigures(soft)
        }
    }
}
