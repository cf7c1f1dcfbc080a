import Foundation
import SynthConcurrency
import SynthLLM
import SynthProto
import SynthQuality
import SynthSpec

/// Counts gathered between two commits.
struct StatsDelta: Sendable {
    var generated: Int64 = 0
    var rejections: [String: Int64] = [:]
    var stages: [String: PBStageUsage] = [:]
    var models: Set<String> = []
    var cellRejections: [Int: Int64] = [:]
    var formatProblems: [String: Int64] = [:]
    var judgeSum = 0.0
    var judgeCount: Int64 = 0
    var invariantCheckFailures: Int64 = 0
    /// Requests of provider batches whose outcome this commit records (batch id, custom id).
    var settled: [(String, String)] = []

    mutating func settle(_ c: ChatCompletion) {
        if let item = c.batchItem { settled.append((item.batch, item.customID)) }
    }

    mutating func reject(_ reason: Rejection, _ problem: FormatProblem?, cell: Int) {
        rejections[reason.rawValue, default: 0] += 1
        cellRejections[cell, default: 0] += 1
        if let problem { formatProblems[problem.rawValue, default: 0] += 1 }
    }

    mutating func add(_ c: ChatCompletion, stage: String) {
        var s = stages[stage] ?? PBStageUsage()
        s.stage = stage
        s.requests += Int64(c.attempts)
        s.promptTokens += Int64(c.promptTokens)
        s.completionTokens += Int64(c.completionTokens)
        s.providerCostUsd += c.costUSD
        stages[stage] = s
        models.insert(c.model)
    }

    var isEmpty: Bool { generated == 0 && rejections.isEmpty && stages.isEmpty && invariantCheckFailures == 0 }

    func apply(to job: inout PBStoredJob) {
        job.job.generated += generated
        for (k, v) in rejections {
            job.rejections[k, default: 0] += v
            job.job.rejected += v
        }
        var usage = job.job.usage
        for (name, d) in stages.sorted(by: { $0.key < $1.key }) {
            if let i = usage.stages.firstIndex(where: { $0.stage == name }) {
                usage.stages[i].requests += d.requests
                usage.stages[i].promptTokens += d.promptTokens
                usage.stages[i].completionTokens += d.completionTokens
                usage.stages[i].providerCostUsd += d.providerCostUsd
            } else {
                usage.stages.append(d)
            }
            usage.requests += d.requests
            usage.promptTokens += d.promptTokens
            usage.completionTokens += d.completionTokens
            usage.providerCostUsd += d.providerCostUsd
        }
        job.job.usage = usage
        if !cellRejections.isEmpty {
            if job.cellRejected.count < job.plan.cells.count {
                job.cellRejected += [Int64](repeating: 0, count: job.plan.cells.count - job.cellRejected.count)
            }
            for (cell, n) in cellRejections where cell < job.cellRejected.count { job.cellRejected[cell] += n }
        }
        for (k, v) in formatProblems { job.formatProblems[k, default: 0] += v }
        job.judgeScoreSum += judgeSum
        job.judgeScored += judgeCount
        job.invariantCheckFailures += invariantCheckFailures
        for m in models.sorted() where !job.modelsAnswered.contains(m) { job.modelsAnswered.append(m) }
        for (batch, items) in Dictionary(grouping: settled, by: \.0) { BatchCollector.settle(&job, batch: batch, items: Set(items.map(\.1))) }
    }
}

/// An accepted record waiting for its commit.
struct Accepted: Sendable {
    var slot: Slot
    var cell: PBPlanCell
    var content: [(String, JSONValue)]
    var model: String
    var atMillis: Int64
    var extras = QualityExtras()
}

/// What the generating tasks hand to the one committing task.
final class CommitQueue: Sendable {
    private struct Pending {
        var records: [Accepted] = []
        var stats = StatsDelta()
    }

    private let pending = Locked(Pending())
    let signal: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    init() {
        (signal, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    func add(_ record: Accepted?, _ update: (inout StatsDelta) -> Void) {
        pending.withLock {
            if let record { $0.records.append(record) }
            update(&$0.stats)
        }
        continuation.yield()
    }

    func take() -> ([Accepted], StatsDelta) {
        pending.withLock {
            let taken = ($0.records, $0.stats)
            $0 = Pending()
            return taken
        }
    }

    func finish() { continuation.finish() }
}
