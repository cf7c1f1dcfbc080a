import Foundation
import SynthAPI
import SynthClient
import SynthProto
import SynthStore
import Testing

/// A job's whole life on a real synthd: deleted by its org (and its LMDB pages used again), by the
/// retention sweep, and what the org's usage says meanwhile.
@Suite(.serialized) struct LifecycleTests {
    /// `mdb_stat -ef` (lmdb-utils): the pages the map has used so far and the pages on the free list.
    static func pages(_ data: String) async throws -> (used: Int, free: Int) {
        let r = try await ProcessTests.runProcessAt("/usr/bin/mdb_stat", ["-ef", data])
        #expect(r.status == 0, "\(r.err)")
        func number(after label: String) -> Int? {
            r.out.split(separator: "\n").first { $0.contains(label) }
                .flatMap { Int($0.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) }
        }
        return (try #require(number(after: "Number of pages used")), try #require(number(after: "Free pages")))
    }

    /// Reads a whole ended job in batches, which makes its export files.
    static func drain(_ client: SynthClient, _ jobID: String) async throws -> Int {
        var req = PBWatchJobRequest()
        req.jobID = jobID
        req.batchBytes = 1 << 20
        var n = 0
        for try await e in client.stream(Methods.watchJob, req) {
            if case .record = e.event { n += 1 }
            if case .batch(let b) = e.event { n += Int(b.count) }
        }
        return n
    }

    @Test func deleteRemovesAnEndedJobWholeAndItsPagesAreUsedAgain() async throws {
        let (dir, fake, config, key) = try await ProcessTests.setUp(latencyMs: 1, concurrency: 32)
        defer { ProcessTests.tearDown(dir, fake) }
        let server = try await ProcessTests.Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let data = dir + "/data"
        let before = try await Self.pages(data)

        let a = try await client.unary(Methods.generate, ProcessTests.supportJob(count: 500)).job
        #expect(try await followToEnd(client, a.jobID, seconds: 120).status == "succeeded")
        #expect(try await Self.drain(client, a.jobID) == 500)
        let exportsOfA = try FileManager.default.contentsOfDirectory(atPath: data + "/exports").filter { $0.hasPrefix(a.jobID + ".") }
        #expect(!exportsOfA.isEmpty)
        let afterA = try await Self.pages(data)

        // A running job is not deleted: it must be cancelled first.
        let b = try await client.unary(Methods.generate, ProcessTests.supportJob(count: 5_000)).job
        var del = PBDeleteJobRequest()
        del.jobID = b.jobID
        await #expect(throws: ClientError.self) { _ = try await client.unary(Methods.deleteJob, del) }
        do {
            _ = try await client.unary(Methods.deleteJob, del)
        } catch let e as ClientError {
            #expect(e.code == .failedPrecondition && e.status.errorCode == "JOB_NOT_ENDED", "\(e)")
        }
        var cancel = PBCancelJobRequest()
        cancel.jobID = b.jobID
        _ = try await client.unary(Methods.cancelJob, cancel)
        #expect(try await client.unary(Methods.deleteJob, del).jobID == b.jobID)

        // Another org's key cannot delete it; its own can, once.
        let other = try await ProcessTests.runSynthd(["admin", "create-org", "other", "--data", data]).status
        #expect(other == 0)
        let otherKey = try await ProcessTests.runSynthd(["admin", "create-key", "--org", "other", "--data", data]).out
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let otherClient = try await SynthClient.connect(.unix(server.socket), apiKey: otherKey)
        del.jobID = a.jobID
        do {
            _ = try await otherClient.unary(Methods.deleteJob, del)
            Issue.record("another org deleted the job")
        } catch let e as ClientError {
            #expect(e.code == .notFound)
        }
        await otherClient.close()

        // synth delete, as a script would call it.
        let cli = try await ProcessTests.runProcess("synth", ["delete", a.jobID, "--json", "--address", "unix:\(server.socket)", "--api-key", key])
        #expect(cli.status == 0, "\(cli.err)")
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(cli.out.utf8)) as? [String: Any], "\(cli.out)")
        #expect(answer["job_id"] as? String == a.jobID)
        #expect("\(answer["records_deleted"] ?? "")" == "500")
        var get = PBGetJobRequest()
        get.jobID = a.jobID
        await #expect(throws: ClientError.self) { _ = try await client.unary(Methods.getJob, get) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: data + "/exports").allSatisfy { !$0.hasPrefix(a.jobID + ".") })
        let again = try await ProcessTests.runProcess("synth", ["delete", a.jobID, "--address", "unix:\(server.socket)", "--api-key", key])
        #expect(again.status == 4, "\(again)")   // NOT_FOUND
        let afterDelete = try await Self.pages(data)
        #expect(afterDelete.free > afterA.free, "free pages \(afterA.free) -> \(afterDelete.free)")

        // A second job of the same size takes the freed pages: the map grows by far less than the
        // first job made it grow.
        let c = try await client.unary(Methods.generate, ProcessTests.supportJob(count: 500)).job
        #expect(try await followToEnd(client, c.jobID, seconds: 120).status == "succeeded")
        let afterC = try await Self.pages(data)
        let grewForA = afterA.used - before.used, grewForC = afterC.used - afterDelete.used
        print("lmdb pages: before \(before), after A \(afterA), after deleting A \(afterDelete), after C \(afterC)")
        #expect(grewForA > 20)
        #expect(grewForC * 4 < grewForA, "job A grew the map by \(grewForA) pages, job C by \(grewForC)")
        await client.close()
        #expect(try await server.stop(SIGTERM) == 0)
        let verify = try await ProcessTests.runSynthd(["admin", "verify", "--data", data])
        #expect(verify.status == 0, "\(verify.out)")
    }

    @Test func usageSaysWhatTheMonthBilledAndWhatIsLeft() async throws {
        let (dir, fake, config, key) = try await ProcessTests.setUp(latencyMs: 1, concurrency: 16)
        defer { ProcessTests.tearDown(dir, fake) }
        let server = try await ProcessTests.Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let start = try await client.unary(Methods.getUsage, PBGetUsageRequest())
        #expect(start.org == "acme" && start.plan == "payg" && start.records == 0 && start.balanceUsd == 100)
        let job = try await client.unary(Methods.generate, ProcessTests.supportJob(count: 40)).job
        let done = try await followToEnd(client, job.jobID, seconds: 60)
        #expect(done.status == "succeeded")
        let u = try await client.unary(Methods.getUsage, PBGetUsageRequest())
        #expect(u.records == 40 && u.jobs == 1)
        #expect(abs(u.costUsd - 40 * 0.75 / 1000) < 1e-9, "\(u.costUsd)")
        #expect(abs(u.balanceUsd - (100 - u.costUsd)) < 1e-6 && u.balanceLeftUsd == u.balanceUsd && u.unfinishedJobs == 0)
        // Deleting the job does not give the money back.
        var del = PBDeleteJobRequest()
        del.jobID = job.jobID
        _ = try await client.unary(Methods.deleteJob, del)
        #expect(try await client.unary(Methods.getUsage, PBGetUsageRequest()).records == 40)
        let cli = try await ProcessTests.runProcess("synth", ["usage", "--address", "unix:\(server.socket)", "--api-key", key])
        #expect(cli.status == 0 && cli.out.contains("plan payg") && cli.out.contains("billed: 40 records in 1 jobs"), "\(cli)")
        await client.close()
        _ = try await server.stop(SIGTERM)
    }

    @Test func theRetentionSweepDeletesEndedJobsAndStrayExports() async throws {
        // Two seconds of retention, swept every half second.
        let (dir, fake, config, key) = try await ProcessTests.setUp(latencyMs: 1, concurrency: 16,
                                                                    server: #", "retention_days": 0.00002, "retention_sweep_seconds": 0.5"#)
        defer { ProcessTests.tearDown(dir, fake) }
        try FileManager.default.createDirectory(atPath: dir + "/data/exports", withIntermediateDirectories: true)
        let stray = dir + "/data/exports/syn_job_gone0000000000000000.jsonl"
        try Data("{}\n".utf8).write(to: URL(fileURLWithPath: stray))
        let server = try await ProcessTests.Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let job = try await client.unary(Methods.generate, ProcessTests.supportJob(count: 10)).job
        #expect(try await followToEnd(client, job.jobID, seconds: 60).status == "succeeded")
        let get = PBGetJobRequest.with { $0.jobID = job.jobID }
        let gone = try await withTimeout(30, "the sweep") {
            while true {
                do {
                    _ = try await client.unary(Methods.getJob, get)
                } catch let e as ClientError where e.code == .notFound {
                    return true
                }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        #expect(gone)
        #expect(!FileManager.default.fileExists(atPath: stray))
        // The org was still billed for it.
        #expect(try await client.unary(Methods.getUsage, PBGetUsageRequest()).records == 10)
        await client.close()
        _ = try await server.stop(SIGTERM)
    }

    @Test func anAdminChangesPlansTopsUpAndListsOrgsAndKeysWhileTheServerRuns() async throws {
        let (dir, fake, config, key) = try await ProcessTests.setUp(latencyMs: 1, concurrency: 16)
        defer { ProcessTests.tearDown(dir, fake) }
        let data = dir + "/data"
        let server = try await ProcessTests.Synthd.start(data: data, socket: dir + "/s.sock", config: config)
        let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        func admin(_ args: [String]) async throws -> (status: Int32, out: String, err: String) {
            try await ProcessTests.runSynthd(["admin"] + args + ["--data", data])
        }
        #expect(try await admin(["top-up", "acme", "--usd", "50"]).out.contains("balance $150.00"))
        #expect(try await client.unary(Methods.getUsage, PBGetUsageRequest()).balanceUsd == 150)
        #expect(try await admin(["top-up", "nobody", "--usd", "5"]).status != 0)

        // Free: 100 records a month, so 150 do not fit; with a quota of 500 they do.
        #expect(try await admin(["set-plan", "acme", "--plan", "free"]).status == 0)
        let free = try await client.unary(Methods.getUsage, PBGetUsageRequest())
        #expect(free.plan == "free" && free.quota == 100 && free.quotaLeft == 100)
        do {
            _ = try await client.unary(Methods.generate, ProcessTests.supportJob(count: 150))
            Issue.record("150 records fit a free plan of 100")
        } catch let e as ClientError {
            #expect(e.code == .resourceExhausted && e.status.errorCode == "INSUFFICIENT_BALANCE", "\(e)")
        }
        #expect(try await admin(["set-plan", "acme", "--quota", "500"]).out.contains("monthly quota 500"))
        let job = try await client.unary(Methods.generate, ProcessTests.supportJob(count: 150)).job
        #expect(try await followToEnd(client, job.jobID, seconds: 60).status == "succeeded")
        let used = try await client.unary(Methods.getUsage, PBGetUsageRequest())
        #expect(used.quotaUsed == 150 && used.quotaLeft == 350 && used.records == 150)

        let orgs = try await admin(["list-orgs", "--json"])
        let acme = try #require(orgs.out.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.first { $0["org"] as? String == "acme" }, "\(orgs)")
        #expect(acme["plan"] as? String == "free" && acme["records"] as? Int == 150 && acme["monthly_quota"] as? Int == 500, "\(acme)")

        // Any org's keys: listed (never the key itself), and revoked.
        let keys = try await admin(["list-keys", "--org", "acme"])
        #expect(!keys.out.contains(key))
        let row = try #require(keys.out.split(separator: "\n").dropFirst().first, "\(keys)")
        #expect(row.contains("active"))
        let keyID = String(row.split(separator: " ")[0])
        #expect(try await admin(["revoke-key", "--org", "acme", "--key-id", keyID]).status == 0)
        do {
            _ = try await client.unary(Methods.getUsage, PBGetUsageRequest())
            Issue.record("a revoked key still works")
        } catch let e as ClientError {
            #expect(e.code == .unauthenticated, "\(e)")
        }
        #expect(try await admin(["list-keys", "--org", "acme"]).out.contains("revoked"))
        await client.close()
        _ = try await server.stop(SIGTERM)
    }

    // MARK: - backup and the stored format

    @Test func aStoreOfFormat1IsMigratedAtStartAndReadsBackWhole() async throws {
        let dir = "/tmp/sdfmt-" + String(UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: repoRoot.appendingPathComponent("Tests/Fixtures/store-format-1/data.mdb").path,
                                         toPath: dir + "/data/data.mdb")
        let job = "syn_job_uczat6bjqbbwxsl70vob"
        try Data(#"{"local_model": {"enabled": false}, "server": {"rate_limit_per_minute": 0}}"#.utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let server = try await ProcessTests.Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: dir + "/config.json",
                                                         arguments: ["--log-format", "json"], log: dir + "/log")
        let key = try await ProcessTests.runSynthd(["admin", "create-key", "--org", "fixture", "--data", dir + "/data"]).out
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let stored = try await client.unary(Methods.getJob, PBGetJobRequest.with { $0.jobID = job }).job
        #expect(stored.status == "succeeded" && stored.accepted == 30)
        #expect(try await Self.drain(client, job) == 30)
        var splits: [String: Int64] = [:]
        for try await r in client.stream(Methods.fetchSplits, PBFetchSplitsRequest.with { $0.jobID = job }) {
            if case .split(let s) = r.item { splits[s.name] = s.count }
        }
        #expect(splits == ["train": 24, "validation": 6])
        let manifest = try await client.unary(Methods.getManifest, PBGetManifestRequest.with { $0.jobID = job })
        #expect(String(decoding: manifest.json, as: UTF8.self).contains(job))
        await client.close()
        #expect(try await server.stop(SIGTERM) == 0)
        // It said so, and the store now records the current format.
        let log = try String(contentsOfFile: dir + "/log", encoding: .utf8)
        #expect(log.contains(#""message":"the store was brought to this synthd's format""#) && log.contains(#""from":"1""#), "\(log)")
        #expect(try Store(path: dir + "/data").storedFormatVersion() == Store.formatVersion)
        #expect(try await ProcessTests.runSynthd(["admin", "verify", "--data", dir + "/data"]).status == 0)
    }

    @Test func aStoreOfANewerFormatIsRefusedWithAReason() async throws {
        let dir = "/tmp/sdfmt-" + String(UUID().uuidString.prefix(8))
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let store = try Store(path: dir + "/data")
            _ = try store.createOrg(name: "later")
            try store.write { txn in try txn.put(.meta, Array("format_version".utf8), withUnsafeBytes(of: (Store.formatVersion + 1).bigEndian) { Array($0) }) }
        }
        let r = try await ProcessTests.runSynthd(["serve", "--data", dir + "/data", "--unix", dir + "/s.sock"])
        #expect(r.status == 4)
        #expect(r.err.contains("store format \(Store.formatVersion + 1), written by a newer synthd; this synthd reads formats up to \(Store.formatVersion)"),
                "\(r.err)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/s.sock"))
    }

    @Test func aBackupMadeMidJobStartsAServerThatFinishesTheJobExactly() async throws {
        let (dir, fake, config, key) = try await ProcessTests.setUp(latencyMs: Int(20 * testTimeScale), concurrency: 8)
        defer { ProcessTests.tearDown(dir, fake) }
        let server = try await ProcessTests.Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let job = try await client.unary(Methods.generate, ProcessTests.supportJob(count: 800)).job
        try await withTimeout(60, "some records") {
            for try await e in client.stream(Methods.watchJob, PBWatchJobRequest.with { $0.jobID = job.jobID; $0.progressOnly = true }) {
                if case .progress(let j) = e.event, j.accepted >= 100 { break }
            }
        }
        let backup = try await ProcessTests.runSynthd(["admin", "backup", dir + "/copy", "--data", dir + "/data"])
        #expect(backup.status == 0, "\(backup.err)")
        // A second backup into the same place is refused, not written over.
        #expect(try await ProcessTests.runSynthd(["admin", "backup", dir + "/copy", "--data", dir + "/data"]).status != 0)
        await client.close()
        _ = try await server.stop(SIGKILL)

        // The copy holds the job part done; a server on it finishes the job, every record once.
        let copied = try #require(try Store(path: dir + "/copy").job(id: job.jobID))
        #expect(copied.job.status == "running" && copied.job.accepted >= 100 && copied.job.accepted < 800, "\(copied.job.accepted)")
        let restored = try await ProcessTests.Synthd.start(data: dir + "/copy", socket: dir + "/c.sock", config: config)
        let again = try await SynthClient.connect(.unix(restored.socket), apiKey: key)
        let final = try await followToEnd(again, job.jobID, seconds: 120)
        #expect(final.status == "succeeded" && final.accepted == 800)
        await again.close()
        #expect(try await restored.stop(SIGTERM) == 0)
        let records = try Store(path: dir + "/copy").records(jobID: job.jobID, after: 0, limit: 2000)
        #expect(records.map(\.seq) == Array(1...800))
    }
}
