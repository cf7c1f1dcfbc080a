import Foundation
import SynthProto
import SwiftProtobuf

/// A job's lifecycle states as stored and shown.
public enum JobStatus: String, Sendable, CaseIterable {
    case queued, running, succeeded, failed, cancelled

    public var isTerminal: Bool { self == .succeeded || self == .failed || self == .cancelled }

    /// The protocol's enum for this state.
    public var state: PBJobState {
        switch self {
        case .queued: .queued
        case .running: .running
        case .succeeded: .succeeded
        case .failed: .failed
        case .cancelled: .cancelled
        }
    }
}

extension Store {
    /// Stores a new job, its list-index entry, its `created` event and (when given) its
    /// idempotency key. When the org already used that idempotency key, nothing is written: the
    /// earlier job comes back if its request digest matches, else `.conflict` is thrown. The check
    /// and the insert are one transaction, so two racing calls cannot both create a job.
    ///
    /// `admit` sees the org, its usage this month and its unfinished jobs, inside the same
    /// transaction, and throws when the job must not start (a quota or a balance it would break).
    public func insertJob(_ job: PBStoredJob,
                          admit: ((_ org: PBStoredOrg?, _ month: PBStoredUsage, _ unfinished: [PBStoredJob]) throws -> Void)? = nil) throws -> PBStoredJob {
        try write { txn in
            var job = job
            let ikey = Keys.join(Keys.text(job.org), Keys.text(job.idempotencyKey))
            if !job.idempotencyKey.isEmpty {
                if let id = try txn.get(.idempotency, ikey), let existing = try self.job(id: String(decoding: id, as: UTF8.self), txn: txn) {
                    guard existing.requestDigest == job.requestDigest else {
                        throw StoreError(.conflict, "idempotency_key was already used with a different request")
                    }
                    return existing
                }
            }
            if let admit {
                let org = try txn.message(.orgs, Keys.text(job.org), as: PBStoredOrg.self)
                let month = try txn.message(.usage, Keys.join(Keys.text(job.org), Keys.text(Clock.month(job.createdAtMs))), as: PBStoredUsage.self)
                    ?? PBStoredUsage()
                try admit(org, month, try unfinishedJobs(org: job.org, txn: txn))
            }
            if !job.idempotencyKey.isEmpty { try txn.put(.idempotency, ikey, Keys.text(job.job.jobID)) }
            try appendEvent(&job, kind: "created", seq: 0, detail: "", txn: txn)
            try txn.put(.jobs, Keys.text(job.job.jobID), try job.serializedBytes())
            try txn.put(.jobIndex, Self.indexKey(job), [])
            return job
        }
    }

    /// Newest first: the index orders by inverted creation time.
    static func indexKey(_ job: PBStoredJob) -> [UInt8] {
        let created = UInt64(max(0, job.createdAtMs))
        return Keys.join(Keys.text(job.org), Keys.u64(UInt64.max - created) + Keys.text(job.job.jobID))
    }

    public func job(id: String) throws -> PBStoredJob? {
        try read { txn in try job(id: id, txn: txn) }
    }

    func job(id: String, txn: Transaction) throws -> PBStoredJob? {
        try txn.message(.jobs, Keys.text(id), as: PBStoredJob.self)
    }

    /// The job when it belongs to `org`; nil otherwise, so another org's job looks like no job.
    public func job(id: String, org: String) throws -> PBStoredJob? {
        guard let job = try job(id: id), job.org == org else { return nil }
        return job
    }

    /// The job that an earlier Generate with this idempotency key created.
    public func job(org: String, idempotencyKey: String) throws -> PBStoredJob? {
        try read { txn in
            guard let id = try txn.get(.idempotency, Keys.join(Keys.text(org), Keys.text(idempotencyKey))) else { return nil }
            return try job(id: String(decoding: id, as: UTF8.self), txn: txn)
        }
    }

    /// Whether `token` is a page token of `org`'s job list.
    public static func isPageToken(_ token: String, org: String) -> Bool {
        decodeToken(token).map { $0.starts(with: Keys.text(org) + [0]) } ?? false
    }

    /// One page of `org`'s jobs, newest first. The page token is the index key to resume after.
    public func listJobs(org: String, status: String?, limit: Int, pageToken: String) throws -> (jobs: [PBStoredJob], next: String) {
        try read { txn in
            var out: [PBStoredJob] = []
            var next = ""
            let prefix = Keys.text(org) + [0]
            var start: [UInt8] = prefix
            if !pageToken.isEmpty, let decoded = Self.decodeToken(pageToken), decoded.starts(with: prefix) {
                start = decoded + [0]  // strictly after the token
            }
            try txn.scan(.jobIndex, prefix: prefix, from: start) { key, _ in
                let id = String(decoding: key[(prefix.count + 8)...], as: UTF8.self)
                guard let job = try job(id: id, txn: txn) else { return true }
                if let status, job.job.status != status { return true }
                if out.count == limit {
                    next = Self.encodeToken(Self.indexKey(out.last!))
                    return false
                }
                out.append(job)
                return true
            }
            return (out, next)
        }
    }

    static func encodeToken(_ key: [UInt8]) -> String {
        key.map { String(format: "%02x", $0) }.joined()
    }

    public static func decodeToken(_ token: String) -> [UInt8]? {
        guard token.count % 2 == 0, token.count <= 1024 else { return nil }
        var out: [UInt8] = []
        var it = token.makeIterator()
        while let a = it.next(), let b = it.next() {
            guard let byte = UInt8(String([a, b]), radix: 16) else { return nil }
            out.append(byte)
        }
        return out
    }

    /// Reads, changes and writes back one job in a single transaction. When `mutate` changes
    /// nothing, nothing is written and no event is added.
    @discardableResult
    public func updateJob(id: String, event: String? = nil, detail: String = "", _ mutate: (inout PBStoredJob) throws -> Void) throws -> PBStoredJob {
        try write { txn in
            guard let before = try job(id: id, txn: txn) else {
                throw StoreError(.notFound, "job \(id) does not exist")
            }
            var job = before
            try mutate(&job)
            guard job != before else { return job }
            if let event { try appendEvent(&job, kind: event, seq: job.job.lastSeq, detail: detail, txn: txn) }
            try txn.put(.jobs, Keys.text(id), try job.serializedBytes())
            return job
        }
    }

    /// What a job's accepted records cost its org: records billed, quota consumed, dollars.
    public typealias Bill = (records: Int64, quotaRecords: Double, costMicroUSD: Int64)

    /// Ends a job that is still queued or running, in one transaction: `mutate` sets its end
    /// (status, times, detail), its manifest is stored when one is given, and its accepted records
    /// are billed: added to the org's month (the quota) and, pay-as-you-go, taken from its balance.
    /// A job that has ended already is returned unchanged with `ended` false, so that whichever of
    /// a cancel and the runner's own end comes second bills nothing.
    @discardableResult
    public func endJob(id: String, detail: String = "", _ mutate: (inout PBStoredJob) -> Void, manifest: ((PBStoredJob) throws -> [UInt8])? = nil,
                       bill: (PBStoredJob) -> Bill) throws -> (job: PBStoredJob, ended: Bool) {
        try write { txn in
            guard var job = try job(id: id, txn: txn) else {
                throw StoreError(.notFound, "job \(id) does not exist")
            }
            guard let status = JobStatus(rawValue: job.job.status), !status.isTerminal else { return (job, false) }
            mutate(&job)
            try appendEvent(&job, kind: job.job.status, seq: job.job.lastSeq, detail: detail, txn: txn)
            try txn.put(.jobs, Keys.text(id), try job.serializedBytes())
            if let manifest { try txn.put(.manifests, Keys.text(id), try manifest(job)) }
            let u = bill(job)
            let key = Keys.join(Keys.text(job.org), Keys.text(Clock.month(job.finishedAtMs)))
            var row = try txn.message(.usage, key, as: PBStoredUsage.self) ?? PBStoredUsage()
            row.records += u.records
            row.quotaRecords += u.quotaRecords
            row.costMicroUsd += u.costMicroUSD
            row.jobs += 1
            try txn.put(.usage, key, try row.serializedBytes())
            // Pay-as-you-go: the accepted records are paid from the balance.
            if u.costMicroUSD != 0, var org = try txn.message(.orgs, Keys.text(job.org), as: PBStoredOrg.self), org.plan == "payg" {
                org.balanceMicroUsd -= u.costMicroUSD
                try txn.put(.orgs, Keys.text(job.org), try org.serializedBytes())
            }
            return (job, true)
        }
    }

    /// Stores the manifest of an ended job that has none yet (a cancelled job's, made after its
    /// end), with the job's fields `mutate` sets from the same reading of its records. Returns the
    /// manifest stored, the one already there, or nil when the job has not ended.
    @discardableResult
    public func putManifest(jobID: String, _ mutate: (inout PBStoredJob) -> Void, manifest: (PBStoredJob) throws -> [UInt8]) throws -> [UInt8]? {
        try write { txn in
            guard var job = try job(id: jobID, txn: txn) else {
                throw StoreError(.notFound, "job \(jobID) does not exist")
            }
            guard JobStatus(rawValue: job.job.status)?.isTerminal == true else { return nil }
            if let existing = try txn.get(.manifests, Keys.text(jobID)) { return existing }
            mutate(&job)
            let bytes = try manifest(job)
            try txn.put(.jobs, Keys.text(jobID), try job.serializedBytes())
            try txn.put(.manifests, Keys.text(jobID), bytes)
            return bytes
        }
    }

    /// Appends accepted records to a job: each gets the next sequence number and a `record` event,
    /// and the job's counters change through `mutate`, all in one transaction. After a crash
    /// either all of it is there or none of it is. `build(i, seq)` makes the bytes of record i.
    /// `providerCostUSD`, what the answers behind this commit cost, is added to the org's month
    /// (the measure of its monthly provider budget) in the same transaction.
    @discardableResult
    public func appendRecords(jobID: String, count: Int, providerCostUSD: Double = 0, build: (Int, UInt64) throws -> [UInt8],
                              _ mutate: (inout PBStoredJob, _ firstSeq: UInt64) throws -> Void) throws -> PBStoredJob {
        try write { txn in
            guard var job = try job(id: jobID, txn: txn) else {
                throw StoreError(.notFound, "job \(jobID) does not exist")
            }
            // A cancelled (or otherwise finished) job takes no more records: its watchers have
            // already been told it is over.
            if let status = JobStatus(rawValue: job.job.status), status.isTerminal { return job }
            let first = job.job.lastSeq + 1
            for i in 0..<count {
                let seq = first + UInt64(i)
                try txn.put(.records, Keys.sequenced(jobID, seq), try build(i, seq))
                try appendEvent(&job, kind: "record", seq: seq, detail: "", txn: txn)
            }
            job.job.lastSeq = first + UInt64(count) - 1
            try mutate(&job, first)
            try txn.put(.jobs, Keys.text(jobID), try job.serializedBytes())
            if providerCostUSD > 0 {
                let key = Keys.join(Keys.text(job.org), Keys.text(Clock.month(Clock.nowMillis())))
                var row = try txn.message(.usage, key, as: PBStoredUsage.self) ?? PBStoredUsage()
                row.providerCostUsd += providerCostUSD
                try txn.put(.usage, key, try row.serializedBytes())
            }
            return job
        }
    }

    public func manifest(jobID: String) throws -> [UInt8]? {
        try read { txn in try txn.get(.manifests, Keys.text(jobID)) }
    }

    func appendEvent(_ job: inout PBStoredJob, kind: String, seq: UInt64, detail: String, txn: Transaction) throws {
        job.lastEvent += 1
        var event = PBStoredEvent()
        event.atMs = Clock.nowMillis()
        event.kind = kind
        event.seq = seq
        event.detail = detail
        try txn.put(.events, Keys.sequenced(job.job.jobID, job.lastEvent), try event.serializedBytes())
    }

    /// Up to `limit` records with sequence numbers above `afterSeq`, in order.
    public func records(jobID: String, after afterSeq: UInt64, limit: Int) throws -> [(seq: UInt64, json: [UInt8])] {
        try read { txn in
            var out: [(UInt64, [UInt8])] = []
            let prefix = Keys.jobPrefix(jobID)
            try txn.scan(.records, prefix: prefix, from: Keys.sequenced(jobID, afterSeq + 1)) { key, value in
                let seq = Keys.readU64(key, at: prefix.count)
                try Self.checkRecord(value, jobID: jobID, seq: seq)
                out.append((seq, Array(value)))
                return out.count < limit
            }
            return out
        }
    }

    /// Visits the records with sequence numbers above `afterSeq`, in order, with their stored
    /// JSON in place, until `body` returns false. The bytes are borrowed from the database for the
    /// call only: copy what must outlive it.
    public func visitRecords(jobID: String, after afterSeq: UInt64, _ body: (UInt64, UnsafeRawBufferPointer) throws -> Bool) throws {
        try read { txn in
            let prefix = Keys.jobPrefix(jobID)
            try txn.scan(.records, prefix: prefix, from: Keys.sequenced(jobID, afterSeq + 1)) { key, value in
                let seq = Keys.readU64(key, at: prefix.count)
                try Self.checkRecord(value, jobID: jobID, seq: seq)
                return try body(seq, value)
            }
        }
    }

    /// Visits the records with the given sequence numbers, in the order asked, with their stored
    /// JSON in place (borrowed, as in `visitRecords(jobID:after:)`), until `body` returns false.
    public func visitRecords(jobID: String, seqs: ArraySlice<UInt64>, _ body: (UInt64, UnsafeRawBufferPointer) throws -> Bool) throws {
        try read { txn in
            for seq in seqs {
                let found = try txn.withValue(.records, Keys.sequenced(jobID, seq)) { value in
                    try Self.checkRecord(value, jobID: jobID, seq: seq)
                    return try body(seq, value)
                }
                guard let goOn = found else { throw StoreError(.corrupt, "job \(jobID) is missing record \(seq)") }
                if !goOn { return }
            }
        }
    }

    /// The records with the given sequence numbers, in the order asked.
    public func records(jobID: String, seqs: ArraySlice<UInt64>) throws -> [[UInt8]] {
        try read { txn in
            try seqs.map { seq in
                let r = try txn.withValue(.records, Keys.sequenced(jobID, seq)) { value in
                    try Self.checkRecord(value, jobID: jobID, seq: seq)
                    return Array(value)
                }
                guard let r else { throw StoreError(.corrupt, "job \(jobID) is missing record \(seq)") }
                return r
            }
        }
    }

    /// A stored record is one JSON object on one line, or it is damaged: it must never reach a
    /// reader as a line of JSONL that is not one record. (A check of its ends and for a line
    /// break: the bytes were whole JSON when they were written.)
    static func checkRecord(_ v: UnsafeRawBufferPointer, jobID: String, seq: UInt64) throws {
        guard v.count >= 2, v.first == UInt8(ascii: "{"), v.last == UInt8(ascii: "}"), let base = v.baseAddress, memchr(base, 0x0A, v.count) == nil else {
            throw StoreError(.corrupt, "record \(seq) of job \(jobID) is damaged: it is not one JSON object on one line")
        }
    }

    public func events(jobID: String) throws -> [PBStoredEvent] {
        try read { txn in
            var out: [PBStoredEvent] = []
            try txn.scan(.events, prefix: Keys.jobPrefix(jobID)) { _, v in
                out.append(try Store.decode(PBStoredEvent.self, v, "an event of job \(jobID)"))
                return true
            }
            return out
        }
    }

    /// One org's queued and running jobs (through its index).
    public func unfinishedJobs(org: String) throws -> [PBStoredJob] {
        try read { txn in try unfinishedJobs(org: org, txn: txn) }
    }

    func unfinishedJobs(org: String, txn: Transaction) throws -> [PBStoredJob] {
        var out: [PBStoredJob] = []
        let prefix = Keys.text(org) + [0]
        try txn.scan(.jobIndex, prefix: prefix) { key, _ in
            let id = String(decoding: key[(prefix.count + 8)...], as: UTF8.self)
            if let j = try self.job(id: id, txn: txn), let status = JobStatus(rawValue: j.job.status), !status.isTerminal { out.append(j) }
            return true
        }
        return out
    }

    /// Jobs that were queued or running when the last process stopped.
    public func unfinishedJobs() throws -> [PBStoredJob] {
        try read { txn in
            var out: [PBStoredJob] = []
            try txn.scan(.jobs, prefix: []) { k, v in
                let job = try Store.decode(PBStoredJob.self, v, "the jobs entry \(Keys.printable(Array(k)))")
                if let status = JobStatus(rawValue: job.job.status), !status.isTerminal { out.append(job) }
                return true
            }
            return out.sorted { $0.createdAtMs < $1.createdAtMs }
        }
    }
}

