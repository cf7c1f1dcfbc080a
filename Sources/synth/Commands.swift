import ArgumentParser
import Foundation
import SynthAPI
import SynthClient
import SynthProto
import SynthSpec

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start a generation job.")
    @OptionGroup var common: Common
    @OptionGroup var request: RequestOptions
    @Flag(help: "Skip the domain spell check (the domain is spelt as intended).") var confirmDomain = false
    @Option(help: "A repeat with the same key and body returns the same job.") var idempotencyKey: String?
    @Flag(help: "Follow the job with a progress bar until it ends.") var watch = false
    @Option(help: "Write the records as JSONL to this file (implies --watch).") var out: String?

    func run() async throws {
        try await common.run { client in
            var req = PBGenerateRequest()
            switch try request.body() {
            case .request(let r): req.request = r
            case .json(let text): req.requestJson = text
            }
            req.domainConfirmed = confirmDomain
            req.idempotencyKey = idempotencyKey ?? ""
            let resp = try await client.unary(Methods.generate, req, timeout: common.deadline)
            if common.json {
                // Under --watch, the first of the lines: the job as made, then each snapshot.
                print(Output.json(resp.job))
                fflush(nil)
            } else {
                Output.error("job \(resp.job.jobID) \(resp.job.status): \(resp.job.count) \(resp.job.schema) records")
                if !(watch || out != nil) { print(resp.job.jobID) }
            }
            if watch || out != nil {
                let interrupt = Interrupt(jobID: resp.job.jobID)
                let final = try await Follow.job(client, resp.job.jobID, afterSeq: 0, records: out.map(Sink.file) ?? .none, json: common.json,
                                               reconnect: common.connect)
                interrupt.cancel()
                if final.status != "succeeded" { throw ExitCode(1) }
            }
        }
    }
}

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Validate a request and show its plan and cost; no job is made.")
    @OptionGroup var common: Common
    @OptionGroup var request: RequestOptions
    @Flag(help: "Skip the domain spell check.") var confirmDomain = false

    func run() async throws {
        try await common.run { client in
            var req = PBPlanRequest()
            switch try request.body() {
            case .request(let r): req.request = r
            case .json(let text): req.requestJson = text
            }
            req.domainConfirmed = confirmDomain
            let resp = try await client.unary(Methods.plan, req, timeout: common.deadline)
            if common.json { print(Output.json(resp)); return }
            let p = resp.plan
            print("records: \(p.count)   tier: \(p.tier.isEmpty ? "-" : p.tier)   generator: \(p.generator.provider)/\(p.generator.model)   critic: \(p.critic.provider)/\(p.critic.model)")
            print(Output.table(["category", "coverage", "axis", "records", "hard negatives"], p.cells.map { c in
                [c.category.isEmpty ? "-" : c.category, c.coverage.isEmpty ? "-" : c.coverage.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","),
                 c.axis.isEmpty ? "-" : c.axis, "\(c.count)", "\(c.hardNegatives)"]
            }))
            if !p.techniques.isEmpty {
                print("techniques: " + p.techniques.map { "\($0.technique)=\($0.count)" }.joined(separator: ", "))
            }
            if !p.splits.isEmpty {
                print("splits: " + p.splits.map { "\($0.name)=\($0.count) (\($0.percentage)%)" }.joined(separator: ", "))
            }
            let c = resp.cost
            print("estimated cost: \(Output.money(c.totalUsd)) (base \(Output.money(c.baseUsd)), verified \(Output.money(c.verifiedUsd)), invariants \(Output.money(c.invariantsUsd)), llm_assessed \(Output.money(c.llmAssessedUsd)))")
            print(Describe.providerEstimate(c.provider))
        }
    }
}

struct Jobs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List your jobs, newest first.")
    @OptionGroup var common: Common
    @Option(help: "queued, running, succeeded, failed or cancelled.") var status: String?
    @Option(help: "At most this many (1-500).") var limit: Int32 = 50
    @Option(help: "Continue from a previous page.") var pageToken: String?

    func run() async throws {
        var req = PBListJobsRequest()
        req.status = status ?? ""
        req.limit = limit
        req.pageToken = pageToken ?? ""
        try await common.run { client in
            let resp = try await client.unary(Methods.listJobs, req, timeout: common.deadline)
            if common.json { print(Output.list("jobs", resp.jobs, [("next_page_token", resp.nextPageToken)])); return }
            print(Output.table(["job", "status", "schema", "accepted", "count", "created", "domain"], resp.jobs.map {
                [$0.jobID, $0.status, $0.schema, "\($0.accepted)", "\($0.count)", $0.createdAt, String($0.domain.prefix(40))]
            }))
            if !resp.nextPageToken.isEmpty { print("more: --page-token \(resp.nextPageToken)") }
        }
    }
}

struct JobCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "job", abstract: "Show one job.")
    @OptionGroup var common: Common
    @Argument(help: "The job id.") var id: String

    func run() async throws {
        var req = PBGetJobRequest()
        req.jobID = id
        try await common.run { client in
            let job = try await client.unary(Methods.getJob, req, timeout: common.deadline).job
            if common.json { print(Output.json(job)); return }
            Describe.job(job)
        }
    }
}

enum Describe {
    /// The provider's side of a plan's cost, in one line.
    static func providerEstimate(_ p: PBProviderCostEstimate) -> String {
        let price = p.delivery == "batch" ? String(format: "the batch price (%.0f%% of the standard)", p.priceFactor * 100) : "the standard price"
        var line = "provider cost (\(p.delivery.isEmpty ? "online" : p.delivery)): "
        if p.priced {
            line += "up to \(Output.money(p.perRequestUsd)) per generation request at \(price); \(Output.money(p.allFirstTryUsd)) "
                + "if every answer is taken at its first try (rejected answers, retries and critic calls add to it)"
        } else {
            line += "not known (the server's config has no price for this model)"
        }
        if p.capUsd > 0 { line += "; capped at \(Output.money(p.capUsd))" }
        return line
    }

    static func job(_ j: PBJob) {
        var rows: [[String]] = [
            ["job", j.jobID], ["status", j.status], ["schema", j.schema], ["domain", j.domain], ["tier", j.tier.isEmpty ? "-" : j.tier],
            ["records", "\(j.accepted) of \(j.count) accepted, \(j.rejected) rejected, \(j.generated) generated"],
            ["created", j.createdAt], ["started", j.startedAt.isEmpty ? "-" : j.startedAt], ["finished", j.finishedAt.isEmpty ? "-" : j.finishedAt],
            ["usage", "\(j.usage.requests) requests, \(j.usage.promptTokens) prompt + \(j.usage.completionTokens) completion tokens"],
            ["cost", Output.money(j.costUsd)],
            ["provider cost", Output.money(j.usage.providerCostUsd)],
        ]
        if !j.grade.isEmpty { rows.append(["grade", j.grade]) }
        if j.hasDetail, j.detail.code != "FAILED" { rows.append(["detail", "\(j.detail.code): \(j.detail.message)"]) }
        if !j.error.isEmpty { rows.append(["error", j.error]) }
        print(Output.table(["field", "value"], rows))
    }
}

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Follow a job live: a progress bar, or its records as JSONL with --records.")
    @OptionGroup var common: Common
    @Argument(help: "The job id.") var id: String
    @Flag(help: "Write each record to stdout as one JSON line.") var records = false
    @Option(help: "Start after this sequence number.") var afterSeq: UInt64 = 0

    func run() async throws {
        try await common.run { client in
            let interrupt = Interrupt(jobID: id)
            defer { interrupt.cancel() }
            let final = try await Follow.job(client, id, afterSeq: afterSeq, records: records ? .stdout : .none, json: common.json,
                                           reconnect: common.connect)
            if final.status != "succeeded" { throw ExitCode(1) }
        }
    }
}

struct Results: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Download every record of a job as JSONL.")
    @OptionGroup var common: Common
    @Argument(help: "The job id.") var id: String
    @Option(help: "Output file ('-' for stdout).") var out: String = "-"
    @Option(help: "Write each record in a trainer's format: \(TrainerFormat.names).") var format: String?
    @Option(help: "A system prompt for the formats that have a place for one.") var system: String?

    func run() async throws {
        var transform: (([UInt8]) throws -> [UInt8])?
        if let format {
            guard let f = TrainerFormat(rawValue: format) else {
                throw ValidationError("--format must be one of \(TrainerFormat.names), got \(format)")
            }
            do {
                try f.check(system: system)
            } catch let e as TrainerFormat.Refused {
                throw ValidationError(e.description)
            }
            let system = self.system
            transform = { try f.convert($0, system: system) }
        }
        try await common.run { client in
            _ = try await Follow.job(client, id, afterSeq: 0, records: out == "-" ? .stdout : .file(out), json: false, quiet: out == "-",
                                     transform: transform, reconnect: common.connect)
        }
    }
}

struct SplitsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "splits", abstract: "Download a finished job's splits, one NAME.jsonl each.")
    @OptionGroup var common: Common
    @Argument(help: "The job id.") var id: String
    @Option(help: "Directory to write into.") var dir: String = "."
    @Option(help: "Only this split.") var split: String?

    func run() async throws {
        var req = PBFetchSplitsRequest()
        req.jobID = id
        req.split = split ?? ""
        try await common.run { client in
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            var current: FileHandle?
            var written: [(String, Int64, String)] = []
            for try await item in client.stream(Methods.fetchSplits, req) {
                switch item.item {
                case .split(let info):
                    try current?.close()
                    let path = (dir as NSString).appendingPathComponent("\(info.name).jsonl")
                    FileManager.default.createFile(atPath: path, contents: nil)
                    current = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
                    written.append((path, info.count, info.sha256))
                case .record(let r):
                    try current?.write(contentsOf: r.json + Data([0x0A]))
                case .batch(let b):
                    try current?.write(contentsOf: b.jsonl)
                case nil:
                    break
                }
            }
            try current?.close()
            for (path, n, sha) in written { print("\(path)\t\(n) records\tsha256 \(sha)") }
        }
    }
}

struct Report: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a job's quality report.")
    @OptionGroup var common: Common
    @Argument(help: "The job id.") var id: String

    func run() async throws {
        var req = PBGetQualityReportRequest()
        req.jobID = id
        try await common.run { client in
            let resp = try await client.unary(Methods.getQualityReport, req, timeout: common.deadline)
            if common.json { print(String(decoding: resp.json, as: UTF8.self)); return }
            let r = resp.report
            func letter(_ measure: String) -> String { r.measureGrades[measure].map { "  (\($0))" } ?? "" }
            var rows: [[String]] = [
                ["total generated", "\(r.totalGenerated)"], ["total accepted", "\(r.totalAccepted)"], ["total rejected", "\(r.totalRejected)"],
                ["pass rate", String(format: "%.1f%%", r.passRate * 100) + letter("pass_rate")],
                ["diversity score", String(format: "%.3f", r.diversityScore) + letter("diversity_score")],
            ]
            if r.hasMeanJudgeScore { rows.append(["mean judge score", String(format: "%.2f / 10", r.meanJudgeScore.value) + letter("mean_judge_score")]) }
            rows.append(["grade", r.overallGrade.isEmpty ? "(not graded yet)" : r.overallGrade])
            for (k, v) in r.rejectionBreakdown.sorted(by: { $0.key < $1.key }) { rows.append(["rejected: \(k)", "\(v)"]) }
            for (k, v) in r.formatProblems.sorted(by: { $0.key < $1.key }) { rows.append(["  format: \(k)", "\(v)"]) }
            if r.invariantCheckFailures > 0 { rows.append(["invariant checks failed (passed)", "\(r.invariantCheckFailures)"]) }
            rows.append(["cross-split leaks", "\(r.crossSplitLeaks)"])
            print(Output.table(["quality", "value"], rows))
            if !r.coverage.isEmpty {
                let cells = r.coverage.map { c -> [String] in
                    var name = c.category
                    if !c.coverage.isEmpty { name += (name.isEmpty ? "" : " ") + c.coverage.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
                    if !c.axis.isEmpty { name += (name.isEmpty ? "" : " ") + "axis=\(c.axis)" }
                    return [name.isEmpty ? "(all)" : name, "\(c.planned)", "\(c.delivered)", "\(c.rejected)"]
                }
                print("")
                print(Output.table(["cell", "planned", "delivered", "rejected"], cells))
            }
            print("")
            print("diversity: \(r.diversityDefinition)")
            print("grade: \(r.gradeRule)")
        }
    }
}

struct ManifestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "manifest", abstract: "Print a finished job's manifest.json.")
    @OptionGroup var common: Common
    @Argument(help: "The job id.") var id: String

    func run() async throws {
        var req = PBGetManifestRequest()
        req.jobID = id
        try await common.run { client in
            let resp = try await client.unary(Methods.getManifest, req, timeout: common.deadline)
            if common.json {
                print(String(decoding: resp.json, as: UTF8.self))
            } else if let obj = try? JSONSerialization.jsonObject(with: resp.json),
                      let pretty = try? JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) {
                print(String(decoding: pretty, as: UTF8.self))
            }
        }
    }
}

struct Compare: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List every near-duplicate pair between two jobs (an eval set against its training set, say).",
        discussion: "The rule of the in-job check: the trigram Jaccard similarity of the whole records, or of their prompt sides, "
            + "above 0.7, found exactly. A job generated with advanced.dedup_against naming the other has none.")
    @OptionGroup var common: Common
    @Argument(help: "The first job.") var jobA: String
    @Argument(help: "The second job.") var jobB: String
    @Option(help: "Pairs listed at most (1-10000; all are counted).") var limit: Int32 = 1000

    func run() async throws {
        var req = PBCompareJobsRequest()
        req.jobA = jobA
        req.jobB = jobB
        req.limit = limit
        try await common.run { client in
            let resp = try await client.unary(Methods.compareJobs, req, timeout: common.deadline)
            if common.json { print(Output.json(resp)); return }
            print("\(resp.total) near-duplicate pairs between \(jobA) (\(resp.recordsA) records) and \(jobB) (\(resp.recordsB) records), "
                  + String(format: "similarity above %.2f", resp.threshold))
            if !resp.pairs.isEmpty {
                print(Output.table(["seq a", "seq b", "record", "prompt", "matched"], resp.pairs.map {
                    ["\($0.seqA)", "\($0.seqB)", String(format: "%.3f", $0.similarity), String(format: "%.3f", $0.promptSimilarity), $0.matched]
                }))
            }
            if resp.total > Int64(resp.pairs.count) { print("(\(Int64(resp.pairs.count)) of \(resp.total) listed: --limit for more)") }
        }
    }
}

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a job; accepted records are kept.")
    @OptionGroup var common: Common
    @Argument(help: "The job id.") var id: String

    func run() async throws {
        var req = PBCancelJobRequest()
        req.jobID = id
        try await common.run { client in
            let job = try await client.unary(Methods.cancelJob, req, timeout: common.deadline).job
            if common.json { print(Output.json(job)); return }
            print("job \(job.jobID) \(job.status) with \(job.accepted) records kept")
        }
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete an ended job with its records, events, manifest and exports (cancel a running job first).")
    @OptionGroup var common: Common
    @Argument(help: "The job id.") var id: String

    func run() async throws {
        var req = PBDeleteJobRequest()
        req.jobID = id
        try await common.run { client in
            let resp = try await client.unary(Methods.deleteJob, req, timeout: common.deadline)
            if common.json { print(Output.json(resp)); return }
            print("job \(resp.jobID) deleted: \(resp.recordsDeleted) records, \(resp.exportBytesDeleted) bytes of exports")
        }
    }
}

struct Usage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the org's usage this month and what its plan has left.")
    @OptionGroup var common: Common

    func run() async throws {
        try await common.run { client in
            let u = try await client.unary(Methods.getUsage, PBGetUsageRequest(), timeout: common.deadline)
            if common.json { print(Output.json(u)); return }
            var lines = ["org \(u.org), plan \(u.plan), \(u.month) (UTC)",
                         "billed: \(u.records) records in \(u.jobs) jobs, \(Output.money(u.costUsd))"]
            switch u.plan {
            case "free", "subscription":
                let unit = u.plan == "free" ? "records" : "quota records"
                lines.append("quota: \(PlanFigures.figure(u.quotaUsed)) of \(PlanFigures.figure(u.quota)) \(unit) used, "
                             + "\(PlanFigures.figure(u.quotaLeft)) left after \(u.unfinishedJobs) unfinished jobs")
            default:
                lines.append("balance: \(Output.money(u.balanceUsd)), \(Output.money(u.balanceLeftUsd)) left after \(u.unfinishedJobs) unfinished jobs")
            }
            print(lines.joined(separator: "\n"))
        }
    }
}

enum PlanFigures {
    static func figure(_ v: Double) -> String { v == v.rounded() ? String(Int64(v)) : String(format: "%.1f", v) }
}

struct PricingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pricing", abstract: "Show the price list (per 1,000 accepted records).")
    @OptionGroup var common: Common

    func run() async throws {
        try await common.run { client in
            let p = try await client.unary(Methods.getPricing, PBGetPricingRequest(), timeout: common.deadline)
            if common.json { print(Output.json(p)); return }
            print(Output.table(["tier", "model", "instruction/eval", "preference/conflict", "subscription"], p.tiers.map {
                [$0.tier, "\($0.provider)/\($0.model)", Output.money($0.instructionPer1KUsd),
                 $0.preferencePer1KUsd > 0 ? Output.money($0.preferencePer1KUsd) : "n/a", $0.subscription ? "yes" : "payg only"]
            }))
            print("verified +\(Output.money(p.verifiedPer1KUsd)) (subscriptions: \(p.subscriptionVerifiedMultiplier)x quota), invariants +\(Output.money(p.invariantsPer1KUsd)), llm_assessed +\(Output.money(p.llmAssessedPer1KUsd)) (waived with verified)")
        }
    }
}

struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "health", abstract: "Show the server's health.")
    @OptionGroup var common: Common

    func run() async throws {
        try await common.run { client in
            let h = try await client.unary(Methods.health, PBHealthRequest(), timeout: common.deadline)
            if common.json { print(Output.json(h)); return }
            print("synthd \(h.version): \(h.status)")
            print(Output.table(["component", "status", "detail"], h.components.map { [$0.name, $0.status, $0.detail] }))
        }
    }
}

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Manage your org's API keys.", subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a key; it is shown only once.")
        @OptionGroup var common: Common
        @Option(help: "A label.") var name: String = ""
        @Flag(help: "The key may only read: jobs, watch, splits, reports, manifests (what a training loader needs).") var readOnly = false
        @Option(help: "The key stops working after this long: 90s, 45m, 12h, 30d, 8w.") var expires: String?

        func run() async throws {
            var req = PBCreateApiKeyRequest()
            req.name = name
            req.scope = readOnly ? "read" : "full"
            if let expires {
                guard let seconds = Lifetime.seconds(expires) else { throw ValidationError("--expires must be a number and s, m, h, d or w (30d), got \(expires)") }
                req.expiresInSeconds = seconds
            }
            try await common.run { client in
                let resp = try await client.unary(Methods.createApiKey, req, timeout: common.deadline)
                if common.json { print(Output.json(resp)); return }
                Output.error("created \(resp.info.keyID) (\(resp.info.scope)" + (resp.info.expiresAt.isEmpty ? "" : ", expires \(resp.info.expiresAt)")
                             + "); store the key now, it is not shown again:")
                print(resp.key)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List keys (never the secret).")
        @OptionGroup var common: Common

        func run() async throws {
            try await common.run { client in
                let resp = try await client.unary(Methods.listApiKeys, PBListApiKeysRequest(), timeout: common.deadline)
                if common.json { print(Output.list("keys", resp.keys)); return }
                print(Output.table(["key id", "prefix", "name", "scope", "created", "expires", "last used", "state"], resp.keys.map {
                    [$0.keyID, $0.prefix + "...", $0.name.isEmpty ? "-" : $0.name, $0.scope, $0.createdAt, $0.expiresAt.isEmpty ? "never" : $0.expiresAt,
                     $0.lastUsedAt.isEmpty ? "never" : $0.lastUsedAt,
                     $0.revoked ? "revoked \($0.revokedAt)" : $0.expired ? "expired" : "active"]
                }))
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key by its id.")
        @OptionGroup var common: Common
        @Argument(help: "The key id (key_...).") var keyID: String

        func run() async throws {
            var req = PBRevokeApiKeyRequest()
            req.keyID = keyID
            try await common.run { client in
                let resp = try await client.unary(Methods.revokeApiKey, req, timeout: common.deadline)
                if common.json { print(Output.json(resp)); return }
                print("revoked \(resp.key.keyID)")
            }
        }
    }
}
