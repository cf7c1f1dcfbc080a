import Crypto
import Foundation
import SwiftProtobuf
import SynthProto
import SynthQuality
import SynthSpec
import SynthStore

/// manifest.json: what a job was asked, what it planned, who answered, what it produced and
/// what it cost. Written once, when the job succeeds.
public enum Manifest {
    static func protoJSON(_ m: some SwiftProtobuf.Message) -> JSONValue {
        var o = JSONEncodingOptions()
        o.preserveProtoFieldNames = true
        o.alwaysPrintInt64sAsNumbers = true
        let bytes: [UInt8]? = try? m.jsonUTF8Bytes(options: o)
        return bytes.flatMap { JSONValue.parse($0) } ?? .null
    }

    /// The quality report as the documentation shapes it, with what it does not define spelt out.
    public static func qualityReport(_ job: PBStoredJob) -> PBQualityReport {
        var r = PBQualityReport()
        r.version = "1.0"
        r.phase = job.request.verified ? 2 : 1
        r.totalGenerated = job.job.generated
        r.totalAccepted = job.job.accepted
        r.totalRejected = job.job.rejected
        let figures = QualityFigures(generated: job.job.generated, accepted: job.job.accepted,
                                     nearDuplicates: job.rejections[Rejection.nearDuplicate.rawValue] ?? 0,
                                     meanJudgeScore: job.request.verified && job.judgeScored > 0 ? job.judgeScoreSum / Double(job.judgeScored) : nil)
        func round3(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }
        r.passRate = round3(figures.passRate)
        r.diversityScore = round3(figures.diversityScore)
        if let m = figures.meanJudgeScore { r.meanJudgeScore = .init((m * 100).rounded() / 100) }
        r.overallGrade = figures.grade
        r.measureGrades = figures.letters
        r.gradeRule = QualityFigures.gradeRule
        r.diversityDefinition = QualityFigures.diversityDefinition
        r.rejectionBreakdown = job.rejections
        r.formatProblems = job.formatProblems
        r.invariantCheckFailures = job.invariantCheckFailures
        r.crossSplitLeaks = job.crossSplitLeaks
        var delivered = [Int64](repeating: 0, count: job.plan.cells.count)
        let filled = SlotBits(Array(job.filled), count: Int(job.plan.count))
        for slot in Slot.all(job.plan) where filled.contains(slot.index) { delivered[slot.cell] += 1 }
        r.coverage = job.plan.cells.enumerated().map { i, cell in
            var c = PBCoverageCell()
            c.category = cell.category
            c.coverage = cell.coverage
            c.axis = cell.axis
            c.planned = cell.count
            c.delivered = delivered[i]
            c.rejected = i < job.cellRejected.count ? job.cellRejected[i] : 0
            return c
        }
        return r
    }

    public static func reportJSON(_ report: PBQualityReport) -> JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("version", .string(report.version)), ("phase", .int(Int64(report.phase))),
            ("total_generated", .int(report.totalGenerated)), ("total_accepted", .int(report.totalAccepted)),
            ("total_rejected", .int(report.totalRejected)), ("pass_rate", .number(report.passRate)),
            ("diversity_score", .number(report.diversityScore)),
        ]
        if report.hasMeanJudgeScore { pairs.append(("mean_judge_score", .number(report.meanJudgeScore.value))) }
        pairs.append(("overall_grade", .string(report.overallGrade)))
        pairs.append(("rejection_breakdown", .object(report.rejectionBreakdown.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })))
        pairs.append(("format_problems", .object(report.formatProblems.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })))
        pairs.append(("measure_grades", .object(report.measureGrades.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
        pairs.append(("invariant_check_failures", .int(report.invariantCheckFailures)))
        pairs.append(("cross_split_leaks", .int(report.crossSplitLeaks)))
        pairs.append(("coverage", .array(report.coverage.map { c in
            var o: [(String, JSONValue)] = []
            if !c.category.isEmpty { o.append(("category", .string(c.category))) }
            if !c.coverage.isEmpty { o.append(("coverage", .object(c.coverage.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }))) }
            if !c.axis.isEmpty { o.append(("axis", .string(c.axis))) }
            o += [("planned", .int(c.planned)), ("delivered", .int(c.delivered)), ("rejected", .int(c.rejected))]
            return .object(o)
        })))
        pairs.append(("definitions", .object([
            ("pass_rate", .string("total_accepted / total_generated")),
            ("diversity_score", .string(report.diversityDefinition)),
            ("mean_judge_score", .string("mean of the judge's overall score (1-10) over the accepted records; verified jobs only")),
            ("overall_grade", .string(report.gradeRule)),
            ("cross_split_leaks", .string("records whose prompt side has character-trigram Jaccard similarity above 0.7 with a record in another split")),
            ("invariant_check_failures", .string("records whose invariant check gave no answer; they passed unchecked (fail-open)")),
        ])))
        return .object(pairs)
    }

    /// Records in one split whose prompt side is a near-duplicate of a record's in an earlier split.
    static func crossSplitLeaks(job: PBStoredJob, splits: [(info: PBSplitInfo, seqs: [UInt64])], store: Store) throws -> Int64 {
        guard splits.count > 1 else { return 0 }
        var indexes: [NearDuplicateIndex] = []
        var leaks: Int64 = 0
        for split in splits {
            let index = NearDuplicateIndex()
            var i = 0
            while i < split.seqs.count {
                let batch = split.seqs[i..<min(split.seqs.count, i + 1000)]
                for json in try store.records(jobID: job.job.jobID, seqs: batch) {
                    guard let text = RecordText.of(job.request.schema, storedJSON: json)?.promptText else { continue }
                    if indexes.contains(where: { $0.duplicate(of: text) != nil }) { leaks += 1 }
                    index.insert(text)
                }
                i += batch.count
            }
            indexes.append(index)
        }
        return leaks
    }

    /// The split files: name, record count and SHA-256 of the JSONL bytes.
    public static func splitInfos(job: PBStoredJob, store: Store) throws -> [(info: PBSplitInfo, seqs: [UInt64])] {
        try Splits.assign(count: Int(job.job.accepted), seed: job.seed, plan: job.plan.splits).map { name, seqs in
            var hasher = SHA256()
            var i = 0
            while i < seqs.count {
                let batch = seqs[i..<min(seqs.count, i + 1000)]
                for r in try store.records(jobID: job.job.jobID, seqs: batch) {
                    hasher.update(data: r)
                    hasher.update(data: [0x0A])
                }
                i += batch.count
            }
            var info = PBSplitInfo()
            info.name = name
            info.count = Int64(seqs.count)
            info.sha256 = hasher.finalize().map { String(format: "%02x", $0) }.joined()
            return (info, seqs)
        }
    }

    /// manifest.json of a finished job, given its split files.
    public static func build(job: PBStoredJob, splits: [PBSplitInfo]) -> [UInt8] {
        let report = qualityReport(job)
        let manifest = JSONValue.object([
            ("job_id", .string(job.job.jobID)),
            ("schema", .string(job.request.schema)),
            ("domain", .string(job.request.domain)),
            ("status", .string(job.job.status)),
            ("count_requested", .int(job.request.count)),
            ("count_accepted", .int(job.job.accepted)),
            ("count_rejected", .int(job.job.rejected)),
            ("created_at", .string(job.job.createdAt)),
            ("finished_at", .string(job.job.finishedAt)),
            ("request", protoJSON(job.request)),
            ("plan", protoJSON(job.plan)),
            ("models", .array(job.modelsAnswered.map { .string($0) })),
            ("made_with", .array(job.recipes.compactMap { JSONValue.parse(Array($0)) })),
            ("seed", .string(String(job.seed))),
            ("splits", .array(splits.map { s in
                .object([("name", .string(s.name)), ("file", .string("\(s.name).jsonl")),
                         ("count", .int(s.count)), ("sha256", .string(s.sha256))])
            })),
            ("license", job.request.license.isEmpty ? .null : .string(job.request.license)),
            ("usage", protoJSON(job.job.usage)),
            ("cost_usd", .number(job.job.costUsd)),
            ("quality_report", reportJSON(report)),
        ])
        return manifest.serialized()
    }
}
