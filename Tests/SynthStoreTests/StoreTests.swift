import Foundation
import Testing
import SynthProto
@testable import SynthStore

/// A fresh data directory per test, removed afterwards.
final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "synthd-store-" + UUID().uuidString
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Every byte of every file in the directory.
    func allBytes() -> [UInt8] {
        var out: [UInt8] = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            out += (try? Array(Data(contentsOf: URL(fileURLWithPath: path + "/" + name)))) ?? []
        }
        return out
    }
}

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return false }
    let first = needle[0]
    var i = 0
    while i <= haystack.count - needle.count {
        if haystack[i] == first, Array(haystack[i..<i + needle.count]) == needle { return true }
        i += 1
    }
    return false
}

@Suite struct StoreTests {
    @Test func timesAreRFC3339InUTC() {
        #expect(Clock.rfc3339(0) == "")
        #expect(Clock.rfc3339(1_800_000_000_999) == "2027-01-15T08:00:00Z")
        #expect(Clock.rfc3339((951_782_400 + 86_399) * 1000) == "2000-02-29T23:59:59Z")
        #expect(Clock.month(1_800_000_000_000) == "2027-01")
    }

    @Test func keysAreStoredOnlyAsDigests() throws {
        let dir = TempDir()
        let store = try Store(path: dir.path)
        _ = try store.createOrg(name: "acme")
        let issued = try store.createKey(org: "acme", name: "ci")
        #expect(issued.key.hasPrefix("sk_live_"))
        #expect(issued.key.count == 48)
        let found = try store.authenticate(key: issued.key)
        #expect(found?.org == "acme")
        #expect(try store.authenticate(key: issued.key + "x") == nil)
        store.sync()
        let bytes = dir.allBytes()
        #expect(!contains(bytes, Array(issued.key.utf8)))
        // The part after the shown prefix never reaches the disk either.
        #expect(!contains(bytes, Array(issued.key.dropFirst(12).utf8)))
        #expect(contains(bytes, Array(issued.key.prefix(12).utf8)))
    }

    @Test func revokeAndLimit() throws {
        let dir = TempDir()
        let store = try Store(path: dir.path)
        _ = try store.createOrg(name: "acme")
        var keys: [IssuedKey] = []
        for i in 0..<Store.maxActiveKeys { keys.append(try store.createKey(org: "acme", name: "k\(i)")) }
        #expect(throws: StoreError.self) { try store.createKey(org: "acme") }
        let revoked = try store.revokeKey(org: "acme", keyID: keys[0].info.keyID)
        #expect(revoked?.revoked == true)
        #expect(try store.authenticate(key: keys[0].key) == nil)
        #expect(try store.isActive(org: "acme", keyID: keys[0].info.keyID) == false)
        _ = try store.createKey(org: "acme")
        #expect(try store.keys(org: "acme").filter { !$0.revoked }.count == Store.maxActiveKeys)
        // Another org cannot revoke acme's key.
        _ = try store.createOrg(name: "other")
        #expect(try store.revokeKey(org: "other", keyID: keys[1].info.keyID) == nil)
        #expect(try store.authenticate(key: keys[1].key) != nil)
    }

    func makeJob(_ org: String, _ id: String, at: Int64) -> PBStoredJob {
        var j = PBStoredJob()
        j.org = org
        j.job.jobID = id
        j.job.status = "queued"
        j.createdAtMs = at
        return j
    }

    @Test func jobsPageNewestFirstAndStayInTheirOrg() throws {
        let dir = TempDir()
        let store = try Store(path: dir.path)
        for i in 0..<7 { try store.insertJob(makeJob("a", "syn_job_a\(i)", at: 1000 + Int64(i))) }
        try store.insertJob(makeJob("b", "syn_job_b0", at: 5000))
        var seen: [String] = []
        var token = ""
        repeat {
            let page = try store.listJobs(org: "a", status: nil, limit: 3, pageToken: token)
            seen += page.jobs.map(\.job.jobID)
            token = page.next
        } while !token.isEmpty
        #expect(seen == (0..<7).reversed().map { "syn_job_a\($0)" })
        #expect(try store.job(id: "syn_job_b0", org: "a") == nil)
        #expect(try store.job(id: "syn_job_b0", org: "b") != nil)
        #expect(try store.listJobs(org: "a", status: "running", limit: 10, pageToken: "").jobs.isEmpty)
    }

    @Test func recordsCountersAndEventsCommitTogetherAndSurviveReopen() throws {
        let dir = TempDir()
        do {
            let store = try Store(path: dir.path)
            try store.insertJob(makeJob("a", "syn_job_x", at: 1))
            for batch in 0..<5 {
                try store.appendRecords(jobID: "syn_job_x", count: 10, build: { i, seq in Array("{\"n\":\(seq)}".utf8) }) { job, first in
                    #expect(first == UInt64(batch * 10 + 1))
                    job.job.accepted += 10
                }
            }
            // A failing transaction leaves nothing behind.
            #expect(throws: StoreError.self) {
                try store.appendRecords(jobID: "syn_job_x", count: 3, build: { _, _ in [1] }) { _, _ in
                    throw StoreError(.conflict, "abort")
                }
            }
        }
        let store = try Store(path: dir.path)
        let job = try #require(try store.job(id: "syn_job_x"))
        #expect(job.job.lastSeq == 50)
        #expect(job.job.accepted == 50)
        let records = try store.records(jobID: "syn_job_x", after: 0, limit: 1000)
        #expect(records.map(\.seq) == Array(1...50))
        #expect(String(decoding: records[41].json, as: UTF8.self) == "{\"n\":42}")
        #expect(try store.records(jobID: "syn_job_x", after: 45, limit: 2).map(\.seq) == [46, 47])
        let events = try store.events(jobID: "syn_job_x")
        #expect(events.first?.kind == "created")
        #expect(events.filter { $0.kind == "record" }.map(\.seq) == Array(1...50))
    }

    @Test func anExportHoldsTheRecordsInOrderAndIsRemadeWhenItDoesNotMatch() throws {
        let dir = TempDir()
        let store = try Store(path: dir.path)
        try store.insertJob(makeJob("a", "syn_job_e", at: 1))
        // Lines of 7 to 13 bytes, so that batch boundaries fall in different places.
        try store.appendRecords(jobID: "syn_job_e", count: 30, build: { i, seq in Array("{\"n\":\(seq * 997)}".utf8) }) { _, _ in }
        let lines = try store.records(jobID: "syn_job_e", after: 0, limit: 100).map { $0.json + [0x0A] }
        let export = try #require(try store.recordExport(jobID: "syn_job_e", count: 30))
        #expect(export.count == 30)
        #expect(FileManager.default.contents(atPath: export.path).map { Array($0) } == lines.flatMap { $0 })

        // Batches: as many whole lines as fit, at least one, never past `upTo`.
        var after: UInt64 = 0
        var joined: [UInt8] = []
        let bytes = Array(FileManager.default.contents(atPath: export.path)!)
        while let r = export.range(after: after, upTo: 30, maxBytes: 40) {
            #expect(r.first == after + 1)
            let size = lines[Int(r.first - 1)..<Int(r.last)].reduce(0) { $0 + $1.count }
            #expect(r.length == size && (size <= 40 || r.first == r.last))
            // One line more would not have fitted.
            if r.last < 30 { #expect(size + lines[Int(r.last)].count > 40) }
            joined += bytes[r.offset..<r.offset + r.length]
            after = r.last
        }
        #expect(joined == bytes)
        #expect(export.range(after: 0, upTo: 30, maxBytes: 1).map { [$0.first, $0.last] } == [1, 1])
        #expect(export.range(after: 10, upTo: 12, maxBytes: 1 << 20).map { [$0.first, $0.last] } == [11, 12])
        #expect(export.range(after: 30, upTo: 30, maxBytes: 1 << 20) == nil)

        // Loaded from disk by a new process; not trusted when cut short or when it holds another count.
        let base = dir.path + "/exports/syn_job_e"
        #expect(Store.loadExport(base: base, count: 30)?.count == 30)
        #expect(Store.loadExport(base: base, count: 29) == nil)
        // An index whose offsets do not rise is not trusted either.
        var index = try #require(FileManager.default.contents(atPath: base + ".idx"))
        let good = index
        index.replaceSubrange(16 + 8 * 5..<16 + 8 * 6, with: Data(repeating: 0, count: 8))
        #expect(FileManager.default.createFile(atPath: base + ".idx", contents: index))
        #expect(Store.loadExport(base: base, count: 30) == nil)
        #expect(FileManager.default.createFile(atPath: base + ".idx", contents: good))
        #expect(Store.loadExport(base: base, count: 30)?.count == 30)
        #expect(truncate(base + ".jsonl", 50) == 0)
        #expect(Store.loadExport(base: base, count: 30) == nil)
        #expect(throws: StoreError.self) { try export.open(covering: 60) }
        store.forgetExport(jobID: "syn_job_e")
        let remade = try #require(try store.recordExport(jobID: "syn_job_e", count: 30))
        #expect(FileManager.default.contents(atPath: remade.path).map { Array($0) } == bytes)
        // No temporary files are left behind, and a job with fewer records than asked has no export.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/exports").sorted() == ["syn_job_e.idx", "syn_job_e.jsonl"])
        #expect(throws: StoreError.self) { try store.recordExport(jobID: "syn_job_e", count: 31) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/exports").count == 2)
        // A failure is remembered for a while: no second attempt to read the whole job at once.
        #expect(try store.recordExport(jobID: "syn_job_e", count: 31) == nil)
        // Not made when not asked to be.
        store.forgetExport(jobID: "syn_job_e")
        try FileManager.default.removeItem(atPath: dir.path + "/exports")
        #expect(try store.recordExport(jobID: "syn_job_e", count: 30, make: false) == nil)
        #expect(throws: StoreError.self) { try store.recordExport(jobID: "../x", count: 1) }
    }

    @Test func fullMapGrowsInsteadOfFailing() throws {
        let dir = TempDir()
        let store = try Store(path: dir.path, initialMapSize: 256 * 1024)
        try store.insertJob(makeJob("a", "syn_job_big", at: 1))
        let blob = [UInt8](repeating: 0x61, count: 4000)
        for _ in 0..<200 {
            try store.appendRecords(jobID: "syn_job_big", count: 5, build: { _, _ in blob }) { _, _ in }
        }
        #expect(try store.job(id: "syn_job_big")?.job.lastSeq == 1000)
    }

    @Test func tablesAreVisibleToMdbStat() throws {
        let dir = TempDir()
        _ = try Store(path: dir.path)
        let tool = ["/usr/bin/mdb_stat", "/usr/local/bin/mdb_stat"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let mdbStat = try #require(tool, "mdb_stat (lmdb-utils) is needed for this test")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: mdbStat)
        p.arguments = ["-a", dir.path]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        for table in Store.Table.allCases {
            #expect(out.contains("Status of \(table.rawValue)"), "mdb_stat lists \(table.rawValue)")
        }
    }
}
