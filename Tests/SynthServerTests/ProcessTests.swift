import Foundation
import SynthAPI
import Testing
import SynthClient
import SynthProto
import SynthSpec
import SynthStore

/// The real `synthd` binary, started and stopped as a user would.
@Suite(.serialized) struct ProcessTests {
    static let bin = repoRoot.appendingPathComponent(".build/debug")

    final class Synthd: @unchecked Sendable {
        let process = Process()
        let stdout = Pipe()
        var socket = ""
        /// The TCP port from the LISTENING line, when it listens on TCP.
        var tcpPort: Int?

        /// Starts one and waits for its LISTENING line, off the cooperative pool.
        /// `log`: a file for its standard error (by default it goes nowhere).
        static func start(data: String, socket: String, config: String, arguments: [String] = [], log: String? = nil) async throws -> Synthd {
            try await testThreads.run { try Synthd(data: data, socket: socket, config: config, arguments: arguments, log: log) }
        }

        init(data: String, socket: String, config: String, arguments: [String] = [], log: String? = nil) throws {
            process.executableURL = ProcessTests.bin.appendingPathComponent("synthd")
            process.arguments = ["serve", "--data", data, "--unix", socket, "--config", config, "--log-level", "debug"] + arguments
            process.standardOutput = stdout
            if let log {
                FileManager.default.createFile(atPath: log, contents: nil)
                process.standardError = FileHandle(forWritingAtPath: log)
            } else {
                process.standardError = FileHandle.nullDevice
            }
            try process.run()
            var text = ""
            while !text.contains("\n") {
                let chunk = stdout.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            guard text.hasPrefix("LISTENING") else { throw TimeoutError(what: "synthd did not start: \(text)") }
            self.socket = socket
            tcpPort = text.split(separator: " ").first { $0.hasPrefix("tcp=") }.flatMap { Int($0.dropFirst(4).trimmingCharacters(in: .whitespacesAndNewlines)) }
        }

        /// Sends `signal` and returns the exit status.
        func stop(_ signal: Int32) async throws -> Int32 {
            kill(process.processIdentifier, signal)
            let p = process
            return try await withTimeout(20, "synthd to exit") {
                // Waited for on a thread of the tests' own, not one the servers in process need.
                await testThreads.run {
                    p.waitUntilExit()
                    return p.terminationStatus
                }
            }
        }
    }

    /// A temp directory with a config pointing every tier at a fresh fake provider, and an org
    /// "acme" with one key.
    /// `server`: more members of the config's `server` part (`, "retention_days": 1`).
    static func setUp(latencyMs: Int, concurrency: Int, server: String = "") async throws -> (dir: String, fake: FakeProvider, config: String, key: String) {
        let dir = "/tmp/sdp-" + String(UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let fake = try await FakeProvider.start(["--latency-ms", String(latencyMs)])
        let config = dir + "/config.json"
        try Data("""
        {"engine": {"providers": {"openai": {"kind": "openai", "base_url": "http://127.0.0.1:\(fake.port)/v1", "max_in_flight": 64,
                                        "prices_per_million": {"fake": {"prompt": 1, "completion": 2}}}},
         "tiers": {"fast": {"provider": "openai", "model": "fake"}, "balanced": {"provider": "openai", "model": "fake"},
                   "diverse": {"provider": "openai", "model": "fake"}, "deep": {"provider": "openai", "model": "fake"}},
         "critic": {"provider": "openai", "model": "fake"}, "job_concurrency": \(concurrency)},
         "server": {"rate_limit_per_minute": 0\(server)},
         "pricing": {"tiers": {"fast": {"instruction_per_1k": 0.75}}}}
        """.utf8).write(to: URL(fileURLWithPath: config))
        let store = try Store(path: dir + "/data")
        _ = try store.createOrg(name: "acme", balanceMicroUSD: 100_000_000)
        return (dir, fake, config, try store.createKey(org: "acme").key)
    }

    /// A plain instruction job of `count` records on the fast tier.
    static func supportJob(count: Int64) -> PBGenerateRequest {
        var gen = PBGenerateRequest()
        gen.request.schema = "instruction_v1"
        gen.request.domain = "customer support for a SaaS product"
        gen.request.count = count
        gen.request.model = "fast"
        return gen
    }

    static func tearDown(_ dir: String, _ fake: FakeProvider) {
        fake.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test func sigtermStopsCleanlyAndTheJobResumesAtTheNextStart() async throws {
        // Slower under a sanitizer, so that the job still runs when the signal comes.
        let (dir, fake, config, key) = try await Self.setUp(latencyMs: Int(20 * testTimeScale), concurrency: 8)
        defer { Self.tearDown(dir, fake) }
        var server = try await Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        var client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        // The config's price table is what GetPricing gives.
        let prices = try await client.unary(Methods.getPricing, PBGetPricingRequest())
        #expect(prices.tiers.first { $0.tier == "fast" }?.instructionPer1KUsd == 0.75)
        #expect(prices.tiers.first { $0.tier == "balanced" }?.instructionPer1KUsd == 3.0)
        // Large enough that it cannot finish between the 50th record and the signal, even on a busy machine.
        let gen = Self.supportJob(count: 2000)
        let job = try await client.unary(Methods.generate, gen).job
        var watch = PBWatchJobRequest()
        watch.jobID = job.jobID
        watch.progressOnly = true
        let firstClient = client, firstWatch = watch
        try await withTimeout(60, "some records") {
            for try await e in firstClient.stream(Methods.watchJob, firstWatch) {
                if case .progress(let j) = e.event, j.accepted >= 50 { break }
            }
        }
        await client.close()
        #expect(try await server.stop(SIGTERM) == 0)
        // Between the two processes the job waits, part done, with nothing half-written.
        do {
            let store = try Store(path: dir + "/data")
            let stopped = try #require(try store.job(id: job.jobID))
            #expect(stopped.job.status == "running")
            #expect(stopped.job.accepted >= 50 && stopped.job.accepted < 2000)
            #expect(try store.records(jobID: job.jobID, after: 0, limit: 3000).count == Int(stopped.job.accepted))
        }
        server = try await Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let final = try await followToEnd(client, job.jobID, seconds: 120)
        #expect(final.status == "succeeded")
        #expect(final.accepted == 2000)
        await client.close()
        #expect(try await server.stop(SIGINT) == 0)
        let store = try Store(path: dir + "/data")
        #expect(try store.records(jobID: job.jobID, after: 0, limit: 3000).map(\.seq) == Array(1...2000))
    }

    /// A second server on a data directory in use would run the same jobs again (a 600-record
    /// job once ended with 1,152 records, billed twice). It is refused at once, naming the
    /// holder, while `synthd admin` still works beside the running server.
    @Test func aSecondServerOnTheSameDataIsRefusedAndTheJobEndsExactOnceBilledOnce() async throws {
        let (dir, fake, config, key) = try await Self.setUp(latencyMs: 20, concurrency: 16)
        defer { Self.tearDown(dir, fake) }
        let server = try await Synthd.start(data: dir + "/data", socket: dir + "/a.sock", config: config)
        let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let job = try await client.unary(Methods.generate, Self.supportJob(count: 600)).job

        let second = try await withTimeout(30, "the second server to give up") {
            try await Self.runSynthd(["serve", "--data", dir + "/data", "--unix", dir + "/b.sock", "--config", config])
        }
        #expect(second.status == 3)
        #expect(second.err.contains("pid \(server.process.processIdentifier)"), "\(second.err)")
        #expect(!second.out.contains("LISTENING"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/b.sock"))
        let admin = try await Self.runSynthd(["admin", "list-orgs", "--data", dir + "/data"])
        #expect(admin.status == 0 && admin.out.contains("acme"), "\(admin.err)")

        let final = try await followToEnd(client, job.jobID, seconds: 90)
        await client.close()
        _ = try await server.stop(SIGTERM)
        #expect(final.status == "succeeded")
        #expect(final.accepted == 600)
        let store = try Store(path: dir + "/data")
        #expect(try store.records(jobID: job.jobID, after: 0, limit: 2000).map(\.seq) == Array(1...600))
        // $0.75 per 1,000 records (the config's price), billed once: $0.45 off $100.
        #expect(try store.org(named: "acme")?.balanceMicroUsd == 100_000_000 - 450_000)
        // With the first server gone, the directory is free again.
        let third = try await Synthd.start(data: dir + "/data", socket: dir + "/c.sock", config: config)
        #expect(try await third.stop(SIGTERM) == 0)
    }

    /// A data file cut short is refused at start with a clear message, never served until a read
    /// past its end kills the process; `synthd admin verify` says what is wrong.
    @Test func aTruncatedStoreIsRefusedAtStartAndVerifyReportsIt() async throws {
        let (dir, fake, config, key) = try await Self.setUp(latencyMs: 1, concurrency: 16)
        defer { Self.tearDown(dir, fake) }
        let server = try await Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let job = try await client.unary(Methods.generate, Self.supportJob(count: 600)).job
        _ = try await followToEnd(client, job.jobID)
        await client.close()
        #expect(try await server.stop(SIGTERM) == 0)
        let clean = try await Self.runSynthd(["admin", "verify", "--data", dir + "/data"])
        #expect(clean.status == 0 && clean.out.contains("ok: every table reads back whole"), "\(clean.out)\(clean.err)")
        #expect(clean.out.contains("records\t600 entries"), "\(clean.out)")

        let file = dir + "/data/data.mdb"
        let size = try #require(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
        #expect(truncate(file, off_t(size / 2)) == 0)
        let start = try await withTimeout(30, "synthd to refuse the store") {
            try await Self.runSynthd(["serve", "--data", dir + "/data", "--unix", dir + "/t.sock", "--config", config])
        }
        #expect(start.status == 4, "\(start.err)")
        #expect(start.err.contains("cannot be used") && start.err.contains("cut short"), "\(start.err)")
        #expect(!start.out.contains("LISTENING"))
        let damaged = try await Self.runSynthd(["admin", "verify", "--data", dir + "/data"])
        #expect(damaged.status == 1)
        #expect(damaged.out.contains("damaged:") && damaged.out.contains("cut short"), "\(damaged.out)")
    }

    /// synthd's resident memory, from /proc.
    static func rss(_ pid: Int32) -> Int {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
    }

    /// A Unix socket with a 4 KB receive buffer that sends `frames` and never reads.
    static func deafConnection(_ path: String, _ frames: [PBFrame]) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var small: Int32 = 4096
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in path.utf8.prefix(p.count - 1).enumerated() { p[i] = b }
        }
        let ok = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else { throw TimeoutError(what: "connect to synthd") }
        var bytes: [UInt8] = []
        for f in frames {
            let body: [UInt8] = try f.serializedBytes()
            bytes += withUnsafeBytes(of: UInt32(body.count).bigEndian) { Array($0) } + body
        }
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw TimeoutError(what: "send to synthd") }
            sent += n
        }
        return fd
    }

    /// 8 connections of 64 WatchJob calls each, asking for 1 MiB batches of a live job and never
    /// reading: each connection holds back one batch, not one per call (about 1 MB a call, 512 MB
    /// in all, before).
    @Test func streamsNobodyReadsCostASmallBoundedAmount() async throws {
        // The job goes on while the streams are measured; under a sanitizer (everything slower,
        // the measuring too) it goes slower as well, so that what it grows by stays small.
        let (dir, fake, config, key) = try await Self.setUp(latencyMs: Int(20 * testTimeScale), concurrency: 16)
        defer { Self.tearDown(dir, fake) }
        let server = try await Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let job = try await client.unary(Methods.generate, Self.supportJob(count: 50_000)).job
        let get = PBGetJobRequest.with { $0.jobID = job.jobID }
        try await withTimeout(60, "2,500 records") {
            while try await client.unary(Methods.getJob, get).job.accepted < 2500 {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        let pid = server.process.processIdentifier
        let before = Self.rss(pid)
        var watch = PBWatchJobRequest()
        watch.jobID = job.jobID
        watch.batchBytes = 1 << 20
        var fds: [Int32] = []
        for _ in 0..<8 {
            let frames = (1...64).map { id in
                var f = PBFrame()
                f.callID = UInt64(id)
                f.open.method = "WatchJob"
                f.open.apiKey = key
                f.open.request = try! watch.serializedData()
                return f
            }
            fds.append(try Self.deafConnection(server.socket, frames))
        }
        var peak = before
        for _ in 0..<30 {
            try await Task.sleep(for: .milliseconds(100))
            peak = max(peak, Self.rss(pid))
        }
        for fd in fds { close(fd) }
        _ = try await client.unary(Methods.cancelJob, PBCancelJobRequest.with { $0.jobID = job.jobID })
        await client.close()
        _ = try await server.stop(SIGTERM)
        print("unread streams: synthd's RSS \(before >> 20) MiB before, \(peak >> 20) MiB at most with 512 of them")
        #expect(peak - before < 64 << 20, "RSS grew by \((peak - before) >> 20) MiB")
    }

    @Test func killNineAtTenRandomMomentsLosesAndDoublesNothing() async throws {
        let (dir, fake, config, key) = try await Self.setUp(latencyMs: 15, concurrency: 32)
        defer { Self.tearDown(dir, fake) }
        var server = try await Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        var client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        var gen = PBGenerateRequest()
        gen.request = try RequestJSON.parse("""
        {"schema":"instruction_v1","domain":"customer support for a SaaS product","count":3000,"model":"fast",
         "advanced":{"categories":{"billing":{"percentage":50},"access":{"percentage":30},"bugs":{"percentage":20}},
                     "hard_negatives":{"enabled":true,"percentage":20},"output_split":{"train":80,"validation":20},
                     "metadata_fields":[{"name":"id","type":"auto_increment","prefix":"cs_"}]}}
        """)
        let job = try await client.unary(Methods.generate, gen).job
        await client.close()
        var acceptedAtKill: [Int64] = []
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<10 {
            // A random moment: anywhere from just after start to well into the run.
            try await Task.sleep(for: .milliseconds(Int64.random(in: 50...700, using: &rng)))
            kill(server.process.processIdentifier, SIGKILL)
            server.process.waitUntilExit()
            acceptedAtKill.append(try Store(path: dir + "/data").job(id: job.jobID)?.job.accepted ?? -1)
            server = try await Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        }
        client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let final = try await followToEnd(client, job.jobID, seconds: 120)
        await client.close()
        _ = try await server.stop(SIGTERM)
        #expect(acceptedAtKill.count == 10)
        #expect(final.status == "succeeded")
        #expect(final.accepted == 3000)
        let store = try Store(path: dir + "/data")
        let records = try store.records(jobID: job.jobID, after: 0, limit: 10_000)
        #expect(records.map(\.seq) == Array(1...3000))
        // No record was committed twice: the generated texts are all distinct, and the plan's
        // categories and hard negatives came out exactly.
        var texts = Set<String>()
        var categories: [String: Int] = [:]
        var hardNegatives = 0
        for r in records {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.json)) as? [String: Any])
            texts.insert("\(obj["instruction"] ?? "")|\(obj["input"] ?? "")|\(obj["output"] ?? "")")
            let meta = obj["metadata"] as? [String: Any] ?? [:]
            categories[meta["category"] as? String ?? "", default: 0] += 1
            if meta["hard_negative"] as? Bool == true { hardNegatives += 1 }
            #expect(meta["id"] as? String == String(format: "cs_%03d", r.seq))
        }
        #expect(texts.count == 3000)
        #expect(categories == ["billing": 1500, "access": 900, "bugs": 600])
        #expect(hardNegatives == 600)
        print("kill -9 test: accepted at each kill \(acceptedAtKill)")
    }

    @Test func synthWatchFollowsAJobAcrossAServerRestart() async throws {
        // Slower under a sanitizer, so that the job still runs when the server restarts.
        let (dir, fake, config, key) = try await Self.setUp(latencyMs: Int(20 * testTimeScale), concurrency: 8)
        defer { Self.tearDown(dir, fake) }
        var server = try await Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let gen = Self.supportJob(count: 400)
        let job = try await client.unary(Methods.generate, gen).job
        await client.close()

        // `synth watch --records` into a file, as a user would follow a job into a loader.
        let outPath = dir + "/watch.jsonl", errPath = dir + "/watch.err"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        let watch = Process()
        watch.executableURL = Self.bin.appendingPathComponent("synth")
        watch.arguments = ["watch", job.jobID, "--records", "--address", "unix:" + server.socket, "--api-key", key]
        watch.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        watch.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        try watch.run()
        defer { if watch.isRunning { kill(watch.processIdentifier, SIGKILL) } }
        @Sendable func written() -> Int {
            (try? Data(contentsOf: URL(fileURLWithPath: outPath)))?.split(separator: 0x0A).count ?? 0
        }
        try await withTimeout(60, "the watcher's first records") {
            while written() < 20 { try await Task.sleep(for: .milliseconds(50)) }
        }
        // The server dies under the watcher, mid-job, and comes back a moment later.
        kill(server.process.processIdentifier, SIGKILL)
        server.process.waitUntilExit()
        let atKill = written()
        try await Task.sleep(for: .milliseconds(1500))
        #expect(watch.isRunning, "synth watch gave up instead of reconnecting")
        server = try await Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        let status = try await withTimeout(90, "synth watch to end with the job") {
            watch.waitUntilExit()
            return watch.terminationStatus
        }
        _ = try await server.stop(SIGTERM)
        let err = String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: errPath))) ?? Data(), as: UTF8.self)
        #expect(status == 0, "\(err)")
        #expect(err.contains("lost the connection") && err.contains("reconnected"), "\(err)")
        // Every record exactly once, in order: the lines are the job's records as stored.
        let lines = try Data(contentsOf: URL(fileURLWithPath: outPath)).split(separator: 0x0A).map { Data($0) }
        let store = try Store(path: dir + "/data")
        let stored = try store.records(jobID: job.jobID, after: 0, limit: 1000)
        #expect(stored.count == 400)
        #expect(lines.count == 400, "\(lines.count) lines, \(atKill) of them before the kill")
        #expect(lines == stored.map { Data($0.json) })
        #expect(atKill < 400)
    }

    /// `synth plan --request FILE` against a real server: one answer lists every problem of the
    /// file, JSON syntax comes with its line and column, and a flag beside the file replaces what
    /// the file says.
    @Test func synthListsEveryProblemOfARequestFileAtOnce() async throws {
        try await withHarness { h in
            let key = try h.org("acme")
            let dir = h.dir
            let bad = dir + "/bad.json", broken = dir + "/broken.json"
            try Data("""
                {
                  "schema": "instruction_v1",
                  "domian": "support",
                  "count": "ten",
                  "model": "fast",
                  "advanced": {"invariants": [], "output_split": {"train": 1e400}}
                }
                """.utf8).write(to: URL(fileURLWithPath: bad))
            try Data("{\n  \"schema\": \"instruction_v1\",\n  \"count\": 10,\n}\n".utf8).write(to: URL(fileURLWithPath: broken))
            let address = "unix:" + (h.bound.unixPath ?? "")
            func synth(_ args: [String]) async throws -> (status: Int32, out: String, err: String) {
                try await Self.runProcess("synth", args + ["--address", address], environment: ["SYNTH_API_KEY": key])
            }
            let all = try await synth(["plan", "--request", bad])
            #expect(all.status == 2, "\(all)")
            for line in ["error code: VALIDATION_ERROR", "field domian: unknown field: not part of the request (did you mean domain?)",
                         "field count: must be an integer (got \"ten\")", "field advanced.invariants: 1 to 10 invariants",
                         "field advanced.output_split.train: must be a finite number", "field domain: required"] {
                #expect(all.err.contains(line), "missing \(line) in:\n\(all.err)")
            }
            let syntax = try await synth(["plan", "--request", broken])
            #expect(syntax.status == 2 && syntax.err.contains("MALFORMED_REQUEST") && syntax.err.contains("line 4, column 1"), "\(syntax.err)")
            // --count and --domain replace the file's; the other problems stay.
            let flagged = try await synth(["plan", "--request", bad, "--count", "5", "--domain", "customer support"])
            #expect(!flagged.err.contains("field count:") && !flagged.err.contains("field domain:") && flagged.err.contains("field domian:"),
                    "\(flagged.err)")
        }
    }

    /// `synth keys create --read-only --expires 30d` makes a key that `synth keys list` shows as
    /// such, and that cannot start a job.
    @Test func synthMakesReadOnlyExpiringKeys() async throws {
        try await withHarness { h in
            let key = try h.org("acme")
            let address = "unix:" + (h.bound.unixPath ?? "")
            func synth(_ args: [String], key: String) async throws -> (status: Int32, out: String, err: String) {
                try await Self.runProcess("synth", args + ["--address", address], environment: ["SYNTH_API_KEY": key])
            }
            let made = try await synth(["keys", "create", "--name", "loader", "--read-only", "--expires", "30d"], key: key)
            #expect(made.status == 0 && made.err.contains("(read, expires "), "\(made)")
            let secret = made.out.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(secret.hasPrefix("sk_live_"))
            let listed = try await synth(["keys", "list", "--json"], key: key)
            let keys = try #require(try JSONSerialization.jsonObject(with: Data(listed.out.utf8)) as? [String: Any])["keys"] as? [[String: Any]]
            let loader = try #require(keys?.first { $0["name"] as? String == "loader" })
            #expect(loader["scope"] as? String == "read")
            let expires = try #require(ISO8601DateFormatter().date(from: loader["expires_at"] as? String ?? ""))
            #expect(abs(expires.timeIntervalSinceNow - 30 * 86_400) < 120)
            let refused = try await synth(["generate", "--schema", "instruction_v1", "--domain", "customer support", "--count", "2"], key: secret)
            #expect(refused.status == 3 && refused.err.contains("KEY_SCOPE"), "\(refused)")
            let bad = try await synth(["keys", "create", "--expires", "30 days"], key: key)
            #expect(bad.status != 0 && bad.err.contains("--expires"))
        }
    }

    /// Runs one of the built executables with `arguments`, returning its exit status and output.
    /// Off the cooperative pool (on the tests' own threads): a child process waited for on it would
    /// stall every in-process server and engine of the tests running beside it.
    static func runProcess(_ name: String, _ arguments: [String], stdin: String = "", environment: [String: String] = [:],
                           directory: String? = nil) async throws -> (status: Int32, out: String, err: String) {
        try await runProcessAt(bin.appendingPathComponent(name).path, arguments, stdin: stdin, environment: environment, directory: directory)
    }

    /// The same for a program by its path.
    static func runProcessAt(_ path: String, _ arguments: [String], stdin: String = "", environment: [String: String] = [:],
                             directory: String? = nil) async throws -> (status: Int32, out: String, err: String) {
        try await testThreads.run { try runBlocking(path, arguments, stdin: stdin, environment: environment, directory: directory) }
    }

    static func runBlocking(_ path: String, _ arguments: [String], stdin: String, environment: [String: String],
                            directory: String?) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let input = Pipe(), out = Pipe(), err = Pipe()
        p.standardInput = input
        p.standardOutput = out
        p.standardError = err
        try p.run()
        input.fileHandleForWriting.write(Data(stdin.utf8))
        try input.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    /// Runs `synthd` with `arguments` and `stdin`, returning its exit status and output.
    static func runSynthd(_ arguments: [String], stdin: String = "") async throws -> (status: Int32, out: String, err: String) {
        try await runProcess("synthd", arguments, stdin: stdin)
    }

    @Test func synthdCheckReadsRecordsAcrossItsReadChunks() async throws {
        let dir = "/tmp/sdc-" + String(UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let request = dir + "/request.json"
        try Data(#"{"schema":"instruction_v1","domain":"customer support for a SaaS product","count":10,"model":"fast"}"#.utf8)
            .write(to: URL(fileURLWithPath: request))
        // 3,000 distinct records of about 600 bytes: 1.8 MB, so lines cross the 1 MB reads.
        let words = ["invoice", "seat", "plan", "refund", "card", "account", "billing", "export", "team", "password", "login", "report",
                     "upgrade", "trial", "renewal", "receipt", "tax", "region", "storage", "limit", "project", "owner", "admin", "email"]
        var state: UInt64 = 42
        func word() -> String {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return words[Int(state >> 33) % words.count]
        }
        func sentence(_ n: Int) -> String { (0..<n).map { _ in word() }.joined(separator: " ") }
        var text = ""
        for i in 0..<3000 {
            let record = ["instruction": "Question \(i): why does my \(sentence(30))?", "input": "",
                          "output": "Because the \(sentence(50)) changed on record \(i)."]
            text += String(decoding: try JSONSerialization.data(withJSONObject: record), as: UTF8.self) + "\n"
        }
        #expect(text.utf8.count > 1 << 20)
        let records = dir + "/records.jsonl"
        try Data(text.utf8).write(to: URL(fileURLWithPath: records))
        let result = try await Self.runSynthd(["check", "--request", request, "--records", records, "--json"])
        #expect(result.status == 0, "\(result.err)")
        let obj = try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [String: Any]
        #expect(obj?["checked"] as? Int == 3000)
        // A line cut at a read boundary would not parse.
        #expect((obj?["format_problems"] as? [String: Int])?["unusable"] == nil, "\(result.out)")
        #expect((obj?["accepted"] as? Int ?? 0) > 0)
    }

    @Test func synthdCheckGivesEachRecordTheVerdictAJobWouldGiveIt() async throws {
        let dir = "/tmp/sdc-" + String(UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let request = dir + "/request.json"
        try Data("""
        {"schema":"instruction_v1","domain":"customer support for a SaaS product","count":10,"model":"fast",
         "constraints":{"max_tokens":60}}
        """.utf8).write(to: URL(fileURLWithPath: request))
        let good = "A customer was charged twice for the same monthly plan and wants the extra payment returned to their card."
        let answer = "I am sorry about the double charge. I have refunded the second payment, and it will reach your card within five days."
        func rec(_ instruction: String, _ output: String) -> String {
            String(decoding: try! JSONSerialization.data(withJSONObject: ["instruction": instruction, "input": "", "output": output]), as: UTF8.self)
        }
        let long = Array(repeating: "The invoice lists every seat on the plan and the date it was added.", count: 12).joined(separator: " ")
        let lines = [
            rec(good, answer),                                                        // 1 accepted
            rec(good.replacingOccurrences(of: "card", with: "account"), answer),      // 2 near-duplicate of 1
            rec("How do I reset the password of a team member who left the company?", "[insert answer here]"), // 3 placeholder
            rec("Why did my invoice total change after I added two seats in the middle of the month",
                "The total changed because seats added mid-month are billed for the days that remain, so your next invoice"), // 4 truncated
            rec("Here is the JSON record you asked for about two-factor codes that never arrive", "Two-factor codes can be resent from the sign-in page."), // 5 leakage
            "this line is not JSON",                                                  // 6 unusable
            "{\"instruction\": \"Where can I download my receipts?\"}",                // 7 no output: unusable
            rec("Explain what each line of my annual invoice means.", long),          // 8 too long
            rec("Can I move from the monthly plan to the annual plan without losing my data?",
                "Yes. Switching plans keeps every project and file; only the billing period changes."), // 9 accepted
        ]
        let records = dir + "/records.jsonl"
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: records))

        let text = try await Self.runSynthd(["check", "--request", request, "--records", records])
        #expect(text.status == 0, "\(text.err)")
        let verdicts = text.out.split(separator: "\n").prefix(lines.count).map { $0.split(separator: "\t").dropFirst().joined(separator: " ") }
        #expect(verdicts == ["accepted", "rejected near_duplicate", "rejected format_invalid placeholder", "rejected format_invalid truncated",
                             "rejected format_invalid leakage", "rejected format_invalid unusable", "rejected format_invalid unusable",
                             "rejected format_invalid too_long", "accepted"])

        // The same from standard input, as counts.
        let counts = try await Self.runSynthd(["check", "--request", request, "--json"], stdin: lines.joined(separator: "\n"))
        let obj = try JSONSerialization.jsonObject(with: Data(counts.out.utf8)) as? [String: Any]
        #expect(obj?["checked"] as? Int == 9)
        #expect(obj?["accepted"] as? Int == 2)
        #expect(obj?["rejection_breakdown"] as? [String: Int] == ["format_invalid": 6, "near_duplicate": 1])
        #expect(obj?["format_problems"] as? [String: Int] == ["placeholder": 1, "truncated": 1, "leakage": 1, "unusable": 2, "too_long": 1])

        // A request that is not valid is refused, naming the field and the rule.
        try Data(#"{"schema":"instruction_v1","domain":"customer support","count":0,"model":"fast"}"#.utf8).write(to: URL(fileURLWithPath: request))
        let bad = try await Self.runSynthd(["check", "--request", request, "--records", records])
        #expect(bad.status != 0)
        #expect(bad.err.contains("count: must be a positive integer"))
        #expect(bad.out.isEmpty)
    }
}
