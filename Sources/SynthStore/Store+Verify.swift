import Foundation
import SwiftProtobuf
import SynthProto

/// What `synthd admin verify` found: each table's entry count, and every damaged entry.
public struct VerifyReport: Sendable {
    public var entries: [(table: String, count: Int)] = []
    /// One line per problem, naming the table and the entry (at most `maxProblems`; `more` counts the rest).
    public var problems: [String] = []
    public var more = 0
    static let maxProblems = 1000

    mutating func problem(_ s: String) {
        if problems.count < Self.maxProblems { problems.append(s) } else { more += 1 }
    }

    public var isClean: Bool { problems.isEmpty }
}

extension Store {
    /// Walks every table in one read transaction: every stored message decodes, every record is one
    /// JSON object on one line, each job holds exactly records 1...last_seq, and every index and
    /// idempotency entry points at a job that exists. (A file cut short is refused when the store
    /// opens, before this can run.)
    public func verify() throws -> VerifyReport {
        try read { txn in
            var report = VerifyReport()
            // Each job's last sequence number only: a store of a million jobs must not be held whole.
            var jobs: [String: UInt64] = [:]
            var count = 0
            try txn.scan(.jobs, prefix: []) { k, v in
                count += 1
                let id = String(decoding: k, as: UTF8.self)
                do {
                    jobs[id] = try Store.decode(PBStoredJob.self, v, "job \(id)").job.lastSeq
                } catch let e as StoreError {
                    report.problem("jobs: \(e.message)")
                }
                return true
            }
            report.entries.append((Table.jobs.rawValue, count))

            // Records: per job, contiguous from 1, well formed, as many as the job says.
            count = 0
            var seen: [String: UInt64] = [:]
            try txn.scan(.records, prefix: []) { k, v in
                count += 1
                guard let sep = k.firstIndex(of: 0), k.count - sep - 1 == 8 else {
                    report.problem("records: an entry with a malformed key \(Keys.printable(Array(k)))")
                    return true
                }
                let id = String(decoding: k[..<sep], as: UTF8.self)
                let seq = Keys.readU64(k, at: sep + 1)
                let expected = (seen[id] ?? 0) + 1
                if seq != expected { report.problem("records: job \(id) has record \(seq) where \(expected) should be") }
                seen[id] = seq
                do {
                    try Self.checkRecord(v, jobID: id, seq: seq)
                } catch let e as StoreError {
                    report.problem("records: \(e.message)")
                }
                if jobs[id] == nil { report.problem("records: record \(seq) belongs to job \(id), which does not exist") }
                return true
            }
            report.entries.append((Table.records.rawValue, count))
            for (id, last) in jobs.sorted(by: { $0.key < $1.key }) where (seen[id] ?? 0) != last {
                report.problem("records: job \(id) should hold records 1...\(last) and holds up to \(seen[id] ?? 0)")
            }

            func decodeAll<M: SwiftProtobuf.Message>(_ table: Table, _ type: M.Type, what: (UnsafeRawBufferPointer) -> String) throws {
                var n = 0
                try txn.scan(table, prefix: []) { k, v in
                    n += 1
                    do {
                        _ = try Store.decode(M.self, v, what(k))
                    } catch let e as StoreError {
                        report.problem("\(table.rawValue): \(e.message)")
                    }
                    return true
                }
                report.entries.append((table.rawValue, n))
            }
            try decodeAll(.events, PBStoredEvent.self) { "an event \(Keys.printable(Array($0)))" }
            try decodeAll(.orgs, PBStoredOrg.self) { "org \(String(decoding: $0, as: UTF8.self))" }
            try decodeAll(.keys, PBStoredKey.self) { _ in "an API key entry" }
            try decodeAll(.usage, PBStoredUsage.self) { "usage \(Keys.printable(Array($0)))" }

            // Entries that point at jobs.
            for table in [Table.jobIndex, .idempotency] {
                var n = 0
                try txn.scan(table, prefix: []) { k, v in
                    n += 1
                    let id: String
                    if table == .jobIndex {
                        guard let sep = k.firstIndex(of: 0), k.count > sep + 9 else {
                            report.problem("\(table.rawValue): a malformed key \(Keys.printable(Array(k)))")
                            return true
                        }
                        id = String(decoding: k[(sep + 9)...], as: UTF8.self)
                    } else {
                        id = String(decoding: v, as: UTF8.self)
                    }
                    if jobs[id] == nil { report.problem("\(table.rawValue): \(Keys.printable(Array(k))) points at job \(id), which does not exist") }
                    return true
                }
                report.entries.append((table.rawValue, n))
            }
            count = 0
            try txn.scan(.manifests, prefix: []) { k, v in
                count += 1
                if (try? JSONSerialization.jsonObject(with: Data(v))) == nil {
                    report.problem("manifests: the manifest of job \(String(decoding: k, as: UTF8.self)) is not JSON")
                }
                return true
            }
            report.entries.append((Table.manifests.rawValue, count))
            return report
        }
    }
}
