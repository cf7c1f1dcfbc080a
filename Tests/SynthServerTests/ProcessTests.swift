import Foundation
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

        init(data: String, socket: String, config: String) throws {
            process.executableURL = ProcessTests.bin.appendingPathComponent("synthd")
            process.arguments = ["serve", "--data", data, "--unix", socket, "--config", config, "--log-level", "debug"]
            process.standardOutput = stdout
            process.standardError = FileHandle.nullDevice
            try process.run()
            var text = ""
            while !text.contains("\n") {
                let chunk = stdout.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            guard text.hasPrefix("LISTENING") else { throw TimeoutError(what: "synthd did not start: \(text)") }
            self.socket = socket
        }

        /// Sends `signal` and returns the exit status.
        func stop(_ signal: Int32) async throws -> Int32 {
            kill(process.processIdentifier, signal)
            let p = process
            return try await withTimeout(20, "synthd to exit") {
                p.waitUntilExit()
                return p.terminationStatus
            }
        }
    }

    /// A temp directory with a config pointing every tier at a fresh fake provider, and an org
    /// "acme" with one key.
    static func setUp(latencyMs: Int, concurrency: Int) throws -> (dir: String, fake: FakeProvider, config: String, key: String) {
        let dir = "/tmp/sdp-" + String(UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let fake = try FakeProvider(["--latency-ms", String(latencyMs)])
        let config = dir + "/config.json"
        try Data("""
        {"engine": {"providers": {"openai": {"kind": "openai", "base_url": "http://127.0.0.1:\(fake.port)/v1", "max_in_flight": 64}},
         "tiers": {"fast": {"provider": "openai", "model": "fake"}, "balanced": {"provider": "openai", "model": "fake"},
                   "diverse": {"provider": "openai", "model": "fake"}, "deep": {"provider": "openai", "model": "fake"}},
         "critic": {"provider": "openai", "model": "fake"}, "job_concurrency": \(concurrency)},
         "server": {"rate_limit_per_minute": 0},
         "pricing": {"tiers": {"fast": {"instruction_per_1k": 0.75}}}}
        """.utf8).write(to: URL(fileURLWithPath: config))
        let store = try Store(path: dir + "/data")
        _ = try store.createOrg(name: "acme", balanceMicroUSD: 100_000_000)
        return (dir, fake, config, try store.createKey(org: "acme").key)
    }

    static func tearDown(_ dir: String, _ fake: FakeProvider) {
        fake.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    @Test func sigtermStopsCleanlyAndTheJobResumesAtTheNextStart() async throws {
        let (dir, fake, config, key) = try Self.setUp(latencyMs: 20, concurrency: 8)
        defer { Self.tearDown(dir, fake) }
        var server = try Synthd(data: dir + "/data", socket: dir + "/s.sock", config: config)
        var client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        // The config's price table is what GetPricing gives.
        let prices = try await client.unary("GetPricing", PBGetPricingRequest(), as: PBGetPricingResponse.self)
        #expect(prices.tiers.first { $0.tier == "fast" }?.instructionPer1KUsd == 0.75)
        #expect(prices.tiers.first { $0.tier == "balanced" }?.instructionPer1KUsd == 3.0)
        var gen = PBGenerateRequest()
        gen.request.schema = "instruction_v1"
        gen.request.domain = "customer support for a SaaS product"
        gen.request.count = 400
        gen.request.model = "fast"
        let job = try await client.unary("Generate", gen, as: PBGenerateResponse.self).job
        var watch = PBWatchJobRequest()
        watch.jobID = job.jobID
        watch.progressOnly = true
        let firstClient = client, firstWatch = watch
        try await withTimeout(60, "some records") {
            for try await e in firstClient.stream("WatchJob", firstWatch, as: PBWatchJobResponse.self) {
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
            #expect(stopped.job.accepted >= 50 && stopped.job.accepted < 400)
            #expect(try store.records(jobID: job.jobID, after: 0, limit: 1000).count == Int(stopped.job.accepted))
        }
        server = try Synthd(data: dir + "/data", socket: dir + "/s.sock", config: config)
        client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let secondClient = client
        let final = try await withTimeout(60, "the resumed job") {
            var last = PBJob()
            for try await e in secondClient.stream("WatchJob", firstWatch, as: PBWatchJobResponse.self) {
                if case .progress(let j) = e.event { last = j }
            }
            return last
        }
        #expect(final.status == "succeeded")
        #expect(final.accepted == 400)
        await client.close()
        #expect(try await server.stop(SIGINT) == 0)
        let store = try Store(path: dir + "/data")
        #expect(try store.records(jobID: job.jobID, after: 0, limit: 1000).map(\.seq) == Array(1...400))
    }

    @Test func killNineAtTenRandomMomentsLosesAndDoublesNothing() async throws {
        let (dir, fake, config, key) = try Self.setUp(latencyMs: 15, concurrency: 32)
        defer { Self.tearDown(dir, fake) }
        var server = try Synthd(data: dir + "/data", socket: dir + "/s.sock", config: config)
        var client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        var gen = PBGenerateRequest()
        gen.request = try RequestJSON.parse("""
        {"schema":"instruction_v1","domain":"customer support for a SaaS product","count":3000,"model":"fast",
         "advanced":{"categories":{"billing":{"percentage":50},"access":{"percentage":30},"bugs":{"percentage":20}},
                     "hard_negatives":{"enabled":true,"percentage":20},"output_split":{"train":80,"validation":20},
                     "metadata_fields":[{"name":"id","type":"auto_increment","prefix":"cs_"}]}}
        """)
        let job = try await client.unary("Generate", gen, as: PBGenerateResponse.self).job
        await client.close()
        var acceptedAtKill: [Int64] = []
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<10 {
            // A random moment: anywhere from just after start to well into the run.
            try await Task.sleep(for: .milliseconds(Int64.random(in: 50...700, using: &rng)))
            kill(server.process.processIdentifier, SIGKILL)
            server.process.waitUntilExit()
            acceptedAtKill.append(try Store(path: dir + "/data").job(id: job.jobID)?.job.accepted ?? -1)
            server = try Synthd(data: dir + "/data", socket: dir + "/s.sock", config: config)
        }
        client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        var watch = PBWatchJobRequest()
        watch.jobID = job.jobID
        watch.progressOnly = true
        let c = client, w = watch
        let final = try await withTimeout(120, "the job after 10 kills") {
            var last = PBJob()
            for try await e in c.stream("WatchJob", w, as: PBWatchJobResponse.self) {
                if case .progress(let j) = e.event { last = j }
            }
            return last
        }
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
}
