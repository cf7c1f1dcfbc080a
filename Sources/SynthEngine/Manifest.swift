import Crypto
import Foundation
import SwiftProtobuf
import SynthProto
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

    /// The quality report as the documentation shapes it.
    public static func qualityReport(_ job: PBStoredJob) -> PBQualityReport {
        var r = PBQualityReport()
        r.version = "1.0"
        r.phase = job.request.verified ? 2 : 1
        r.totalGenerated = job.job.generated
        r.totalAccepted = job.job.accepted
        r.totalRejected = job.job.rejected
        r.passRate = job.job.generated > 0 ? (Double(job.job.accepted) / Double(job.job.generated) * 1000).rounded() / 1000 : 0
        r.rejectionBreakdown = job.rejections
        return r
    }

    public static func reportJSON(_ report: PBQualityReport) -> JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("version", .string(report.version)), ("phase", .int(Int64(report.phase))),
            ("total_generated", .int(report.totalGenerated)), ("total_accepted", .int(report.totalAccepted)),
            ("total_rejected", .int(report.totalRejected)), ("pass_rate", .number(report.passRate)),
        ]
        if !report.diversityDefinition.isEmpty { pairs.append(("diversity_score", .number(report.diversityScore))) }
        if report.hasMeanJudgeScore { pairs.append(("mean_judge_score", .number(report.meanJudgeScore.value))) }
        if !report.overallGrade.isEmpty { pairs.append(("overall_grade", .string(report.overallGrade))) }
        pairs.append(("rejection_breakdown", .object(report.rejectionBreakdown.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })))
        if !report.diversityDefinition.isEmpty { pairs.append(("diversity_definition", .string(report.diversityDefinition))) }
        return .object(pairs)
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
    static func build(job: PBStoredJob, splits: [PBSplitInfo]) -> [UInt8] {
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
