import CLMDB
import Foundation
import SynthProto

extension Store {
    /// What deleting a job removed.
    public struct Deleted: Sendable {
        public var records: Int64
        public var exportBytes: Int64
    }

    /// Removes an ended job of `org` with its records, events, manifest, index and idempotency
    /// entries, in one transaction, then its export files. The org's billed usage stays. LMDB puts
    /// the pages freed on its free list, and later writes reuse them: the file does not shrink, but
    /// it does not grow again until they are used up.
    ///
    /// `.notFound` for a job of another org or none; `.conflict` for a job that has not ended.
    public func deleteJob(id: String, org: String) throws -> Deleted {
        let records: Int64 = try write { txn in
            guard let job = try self.job(id: id, txn: txn), job.org == org else {
                throw StoreError(.notFound, "job \(id) not found")
            }
            guard let status = JobStatus(rawValue: job.job.status), status.isTerminal else {
                throw StoreError(.conflict, "job \(id) is \(job.job.status); cancel it first, then delete it")
            }
            let prefix = Keys.jobPrefix(id)
            var n: Int64 = 0
            for table in [Table.records, .events] {
                // Keys first, then the deletes: a cursor must not walk a page it is deleting from.
                var keys: [[UInt8]] = []
                try txn.scan(table, prefix: prefix) { key, _ in
                    keys.append(Array(key))
                    return true
                }
                for key in keys { _ = try txn.delete(table, key) }
                if table == .records { n = Int64(keys.count) }
            }
            _ = try txn.delete(.manifests, Keys.text(id))
            _ = try txn.delete(.jobIndex, Self.indexKey(job))
            if !job.idempotencyKey.isEmpty {
                let ikey = Keys.join(Keys.text(org), Keys.text(job.idempotencyKey))
                if let owner = try txn.get(.idempotency, ikey), owner == Keys.text(id) { _ = try txn.delete(.idempotency, ikey) }
            }
            _ = try txn.delete(.jobs, Keys.text(id))
            return n
        }
        exports.drop(id)
        return Deleted(records: records, exportBytes: removeExportFiles(jobID: id))
    }

    /// Deletes the export files of a job (whole or half-written); their bytes.
    @discardableResult
    public func removeExportFiles(jobID: String) -> Int64 {
        let dir = path + "/exports"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return 0 }
        var bytes: Int64 = 0
        for name in names where name.hasPrefix(jobID + ".") {
            var st = stat()
            if lstat(dir + "/" + name, &st) == 0 { bytes += Int64(st.st_size) }
            unlink(dir + "/" + name)
        }
        return bytes
    }
}

extension Store {
    /// Ended jobs (succeeded, failed, cancelled) that finished before `millis`, oldest first; at
    /// most `limit` a sweep.
    public func endedJobs(finishedBefore millis: Int64, limit: Int = 1000) throws -> [PBStoredJob] {
        try read { txn in
            var out: [PBStoredJob] = []
            try txn.scan(.jobs, prefix: []) { k, v in
                let job = try Store.decode(PBStoredJob.self, v, "the jobs entry \(Keys.printable(Array(k)))")
                if let status = JobStatus(rawValue: job.job.status), status.isTerminal, job.finishedAtMs > 0, job.finishedAtMs < millis {
                    out.append(job)
                }
                return true
            }
            return Array(out.sorted { $0.finishedAtMs < $1.finishedAtMs }.prefix(limit))
        }
    }

    /// Removes export files whose job is gone, and, with `unwrittenFor`, those not written for that
    /// long. What it removed.
    public func sweepExports(unwrittenFor age: Duration?) -> (files: Int, bytes: Int64) {
        let dir = path + "/exports"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return (0, 0) }
        let now = Date().timeIntervalSince1970
        let maxAge = age.map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 }
        var files = 0
        var bytes: Int64 = 0
        var known: [String: Bool] = [:]
        for name in names {
            guard let dot = name.firstIndex(of: ".") else { continue }
            let id = String(name[..<dot])
            let exists: Bool
            if let k = known[id] {
                exists = k
            } else {
                exists = ((try? job(id: id)) ?? nil) != nil
                known[id] = exists
            }
            var st = stat()
            guard lstat(dir + "/" + name, &st) == 0 else { continue }
            let old = maxAge.map { now - Double(st.st_mtim.tv_sec) > $0 } ?? false
            guard !exists || old else { continue }
            if exists { exports.drop(id) }
            if unlink(dir + "/" + name) == 0 {
                files += 1
                bytes += Int64(st.st_size)
            }
        }
        return (files, bytes)
    }
}
