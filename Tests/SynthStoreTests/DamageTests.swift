import Foundation
import Testing
import SynthProto
@testable import SynthStore

/// A damaged store is reported, never served as if it were whole.
@Suite struct DamageTests {
    static func filled(_ dir: TempDir, records: Int = 400) throws {
        let store = try Store(path: dir.path, initialMapSize: 1 << 20)
        try store.insertJob(StoreTests().makeJob("a", "syn_job_x", at: 1))
        let text = String(repeating: "lorem ipsum ", count: 100)
        for _ in 0..<(records / 10) {
            try store.appendRecords(jobID: "syn_job_x", count: 10, build: { _, seq in Array("{\"n\":\(seq),\"t\":\"\(text)\"}".utf8) }) { job, _ in
                job.job.accepted += 10
            }
        }
    }

    @Test func aDataFileCutShortIsRefusedAtOpen() throws {
        let dir = TempDir()
        try Self.filled(dir)
        let file = dir.path + "/data.mdb"
        let size = try #require(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
        #expect(size > 200_000)
        #expect(truncate(file, off_t(size / 2)) == 0)
        do {
            _ = try Store(path: dir.path)
            Issue.record("a store cut in half opened")
        } catch let e as StoreError {
            #expect(e.code == .corrupt)
            #expect(e.message.contains("cut short"), "\(e.message)")
        }
    }

    @Test func aDamagedRecordIsAnErrorNamingItsJobAndNumberAndVerifyFindsIt() throws {
        let dir = TempDir()
        try Self.filled(dir, records: 40)
        let store = try Store(path: dir.path)
        #expect(try store.verify().isClean)
        // Record 17 loses its last byte; record 30 gains a line break.
        let key17 = Array("syn_job_x".utf8) + [0] + withUnsafeBytes(of: UInt64(17).bigEndian) { Array($0) }
        let key30 = Array("syn_job_x".utf8) + [0] + withUnsafeBytes(of: UInt64(30).bigEndian) { Array($0) }
        try store.write { txn in
            let r17 = try #require(try txn.get(.records, key17))
            try txn.put(.records, key17, Array(r17.dropLast()))
            try txn.put(.records, key30, Array("{\"n\":\n30}".utf8))
        }
        #expect(try store.records(jobID: "syn_job_x", after: 0, limit: 16).count == 16)
        do {
            _ = try store.records(jobID: "syn_job_x", after: 0, limit: 100)
            Issue.record("a damaged record was read as whole")
        } catch let e as StoreError {
            #expect(e.code == .corrupt)
            #expect(e.message.contains("record 17 of job syn_job_x"), "\(e.message)")
        }
        #expect(throws: StoreError.self) { try store.visitRecords(jobID: "syn_job_x", after: 20) { _, _ in true } }
        #expect(throws: StoreError.self) { try store.records(jobID: "syn_job_x", seqs: [30]) }
        let report = try store.verify()
        #expect(report.problems.count == 2, "\(report.problems)")
        #expect(report.problems.contains { $0.contains("record 17 of job syn_job_x") })
        #expect(report.problems.contains { $0.contains("record 30 of job syn_job_x") })
    }

    @Test func aJobEntryThatDoesNotDecodeIsCorruptAndVerifyNamesIt() throws {
        let dir = TempDir()
        try Self.filled(dir, records: 10)
        let store = try Store(path: dir.path)
        try store.write { txn in try txn.put(.jobs, Array("syn_job_x".utf8), [0xFF, 0xFF, 0xFF, 0x07]) }
        do {
            _ = try store.job(id: "syn_job_x")
            Issue.record("a damaged job decoded")
        } catch let e as StoreError {
            #expect(e.code == .corrupt && e.message.contains("syn_job_x"), "\(e.message)")
        }
        let report = try store.verify()
        #expect(report.problems.contains { $0.hasPrefix("jobs:") && $0.contains("syn_job_x") }, "\(report.problems)")
        // Its records now belong to no job that reads, and its index entry too.
        #expect(report.problems.contains { $0.hasPrefix("records:") }, "\(report.problems)")
    }

    @Test func aSmallMapGrowsOnDemandAndKeepsEverything() throws {
        let dir = TempDir()
        try Self.filled(dir, records: 2000)   // about 2.4 MB of records from a 1 MiB map
        let store = try Store(path: dir.path, initialMapSize: 1 << 20)
        #expect(try store.records(jobID: "syn_job_x", after: 0, limit: 5000).map(\.seq) == Array(1...2000))
        #expect(try store.verify().isClean)
    }
}
