import Foundation
import SynthConcurrency
import SynthEngine
import SynthProto
import SynthSpec
import SynthStore

/// One ended job's records as a file of JSON lines, for an edge that sends them with sendfile.
public struct JobExport: Sendable {
    let export: RecordExport

    /// The records after `after`, up to `upTo`, that fit in `maxBytes`: their sequence numbers
    /// and their bytes in the file. Nil when there are none.
    public func range(after: UInt64, upTo: UInt64, maxBytes: Int) -> (first: UInt64, last: UInt64, offset: Int, length: Int)? {
        export.range(after: after, upTo: upTo, maxBytes: maxBytes)
    }

    /// A descriptor of the file, checked to hold at least `end` bytes; the caller closes it.
    public func open(covering end: Int) throws -> CInt {
        try export.open(covering: end)
    }
}

/// One split of a finished job, as FetchSplits sends it.
public struct JobSplit: Sendable {
    public var name: String
    /// The records' sequence numbers, in the split file's order.
    public var seqs: [UInt64]
    /// The split file's SHA-256 from the manifest ("" if the manifest has none).
    public var sha256: String
}

/// What the edges need to stream a job (WatchJob, FetchSplits): the job's changes and its
/// records, read through the application layer. Every method takes a job its caller was allowed
/// to see (`job(_:_:)`), never a bare id.
extension JobService {
    /// A stream that yields after every change to the job. Subscribe before reading, so that no
    /// change falls between a read and a wait.
    public func changes(of job: PBStoredJob) -> AsyncStream<Void> {
        engine.hub.changes(of: job.job.jobID)
    }

    /// Whether the job has ended (its records are final).
    public static func hasEnded(_ job: PBJob) -> Bool {
        JobStatus(rawValue: job.status)?.isTerminal == true
    }

    /// Visits the job's records after `after` in order, each as its stored JSON line, until `body`
    /// returns false.
    public func visitRecords(of job: PBStoredJob, after: UInt64, _ body: (UInt64, UnsafeRawBufferPointer) throws -> Bool) throws {
        try store.visitRecords(jobID: job.job.jobID, after: after, body)
    }

    /// Visits the records with these sequence numbers, in this order, until `body` returns false.
    public func visitRecords(of job: PBStoredJob, seqs: ArraySlice<UInt64>, _ body: (UInt64, UnsafeRawBufferPointer) throws -> Bool) throws {
        try store.visitRecords(jobID: job.job.jobID, seqs: seqs, body)
    }

    /// At most `limit` records after `after`, in order.
    public func records(of job: PBStoredJob, after: UInt64, limit: Int) throws -> [(seq: UInt64, json: [UInt8])] {
        try store.records(jobID: job.job.jobID, after: after, limit: limit)
    }

    /// The records with these sequence numbers, in this order.
    public func records(of job: PBStoredJob, seqs: ArraySlice<UInt64>) throws -> [[UInt8]] {
        try store.records(jobID: job.job.jobID, seqs: seqs)
    }

    /// The export of an ended job's first `count` records, made if `make` and it is missing (which
    /// reads every record: it runs on the compute lane, off the cooperative pool).
    public func export(of job: PBStoredJob, count: UInt64, make: Bool) async throws -> JobExport? {
        let store = self.store, jobID = job.job.jobID
        return try await BlockingLane.compute.run { try store.recordExport(jobID: jobID, count: count, make: make) }.map(JobExport.init)
    }

    /// Drops a job's export (it went missing or is damaged); the next read makes it again.
    public func forgetExport(of job: PBStoredJob) {
        store.forgetExport(jobID: job.job.jobID)
    }

    /// The splits of an ended job's accepted records (a job that succeeded, short of its count or
    /// not, or was cancelled), or only the one named `name` (all when it is empty).
    /// FAILED_PRECONDITION before the job has ended or when it kept no record; NOT_FOUND for a
    /// split it does not have.
    public func splits(of job: PBStoredJob, named name: String) async throws -> [JobSplit] {
        guard Self.hasEnded(job.job) else {
            throw RPCError(.failedPrecondition, "job \(job.job.jobID) is \(job.job.status); splits exist once it ends")
        }
        guard job.job.accepted > 0 else {
            throw RPCError(.failedPrecondition, "job \(job.job.jobID) ended \(job.job.status) with no records; it has no splits")
        }
        let manifest = try await engine.manifest(jobID: job.job.jobID).flatMap { JSONValue.parse($0) }
        var hashes: [String: String] = [:]
        if case .array(let splits)? = manifest?["splits"] {
            for s in splits {
                if let n = s["name"]?.stringValue, let h = s["sha256"]?.stringValue { hashes[n] = h }
            }
        }
        let all = Splits.assign(count: Int(job.job.accepted), seed: job.seed, plan: job.plan.splits)
        let chosen = name.isEmpty ? all : all.filter { $0.name == name }
        guard !chosen.isEmpty else {
            throw RPCError.notFound("split \(String(name.prefix(64))) (this job has \(all.map(\.name).joined(separator: ", ")))")
        }
        return chosen.map { JobSplit(name: $0.name, seqs: $0.seqs, sha256: hashes[$0.name] ?? "") }
    }

    // MARK: request bounds, for an edge to apply before it decodes

    /// The largest body a valid request of a Generate or Plan can have.
    public static var largestGenerateRequestBytes: Int { RequestLimits.largestGenerateRequestBytes }

    /// Refuses a Generate or Plan body whose lists are far over their maximum before it is decoded.
    public static func prescanGenerateOrPlan(_ body: [UInt8]) throws {
        try RequestPrescan.check(generateOrPlan: body)
    }

    /// Loads what the first Generate would otherwise wait for (the domain spell check's index),
    /// on a thread of its own.
    public static func warmUp() {
        DomainSpellCheck.warmUp()
    }
}
