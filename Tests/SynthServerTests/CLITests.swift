import Foundation
import SynthAPI
import SynthClient
import SynthProto
import Testing

/// `synth` as a script sees it, against a real synthd: JSON that jq reads as it stands, errors as
/// JSON, no file left by a refused export, Ctrl-C that says what became of the job, a progress bar
/// that does not claim 100% early or redraw without end, and a useful word when there is no server.
@Suite(.serialized) struct CLITests {
    static func synth(_ args: [String], _ socket: String, _ key: String) async throws -> (status: Int32, out: String, err: String) {
        try await ProcessTests.runProcess("synth", args + ["--address", "unix:\(socket)", "--api-key", key])
    }

    static func objects(_ text: String) -> [[String: Any]] {
        text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    @Test func jsonIsForScripts() async throws {
        let (dir, fake, config, key) = try await ProcessTests.setUp(latencyMs: 1, concurrency: 8)
        defer { ProcessTests.tearDown(dir, fake) }
        let server = try await ProcessTests.Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        let sock = server.socket

        // An empty list is [].
        let none = try await Self.synth(["jobs", "--json"], sock, key)
        #expect(none.status == 0)
        let empty = try #require(try JSONSerialization.jsonObject(with: Data(none.out.utf8)) as? [String: Any], "\(none.out)")
        #expect((empty["jobs"] as? [Any])?.isEmpty == true, "\(none.out)")

        // generate --watch --json: JSON lines on stdout, numbers as numbers; the first is the job as
        // made, the last as it ended.
        let gen = try await Self.synth(["generate", "--schema", "instruction_v1", "--domain", "customer support for a SaaS product", "--count", "20",
                                  "--model", "fast", "--watch", "--json"], sock, key)
        #expect(gen.status == 0, "\(gen.err)")
        let lines = Self.objects(gen.out)
        #expect(lines.count >= 2 && lines.count == gen.out.split(separator: "\n").count, "\(gen.out)")
        #expect(lines.first?["status"] as? String == "queued")
        #expect(lines.last?["status"] as? String == "succeeded")
        #expect(lines.last?["accepted"] as? Int == 20 && lines.last?["count"] as? Int == 20, "\(String(describing: lines.last))")
        let id = try #require(lines.last?["job_id"] as? String)
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(try await Self.synth(["jobs", "--json"], sock, key).out.utf8)) as? [String: Any])
        #expect((listed["jobs"] as? [[String: Any]])?.first?["accepted"] as? Int == 20)

        // An error under --json is JSON, on stderr.
        let missing = try await Self.synth(["job", "syn_job_doesnotexist000000000", "--json"], sock, key)
        #expect(missing.status == 4 && missing.out.isEmpty)
        let error = try #require(try JSONSerialization.jsonObject(with: Data(missing.err.utf8)) as? [String: Any], "\(missing.err)")
        #expect((error["error"] as? [String: Any])?["code"] as? String == "NOT_FOUND", "\(missing.err)")
        let invalid = try await Self.synth(["plan", "--schema", "instruction_v1", "--domain", "x", "--count", "0", "--json"], sock, key)
        let fields = try #require((try JSONSerialization.jsonObject(with: Data(invalid.err.utf8)) as? [String: Any])?["error"] as? [String: Any],
                                  "\(invalid.err)")
        #expect(fields["code"] as? String == "INVALID_ARGUMENT" && !((fields["field_errors"] as? [Any]) ?? []).isEmpty, "\(fields)")

        // A refused export leaves no file, not even an empty one; a good one leaves the whole file.
        let refused = try await Self.synth(["results", id, "--out", dir + "/dpo.jsonl", "--format", "trl-dpo"], sock, key)
        #expect(refused.status == 2 && refused.err.contains("trl-dpo needs"), "\(refused.err)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/dpo.jsonl"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).allSatisfy { !$0.contains(".partial") })
        let good = try await Self.synth(["results", id, "--out", dir + "/sft.jsonl", "--format", "trl-messages"], sock, key)
        let written = try String(contentsOfFile: dir + "/sft.jsonl", encoding: .utf8)
        #expect(good.status == 0 && written.split(separator: "\n").count == 20)
        _ = try await server.stop(SIGTERM)
    }

    @Test func ctrlCSaysWhichJobGoesOnAndTheBarIsHonest() async throws {
        let (dir, fake, config, key) = try await ProcessTests.setUp(latencyMs: 40, concurrency: 4)
        defer { ProcessTests.tearDown(dir, fake) }
        let server = try await ProcessTests.Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        // On a terminal (script gives synth one): the bar redraws at most ten times a second, shows
        // 100% only at the end, and ends on its own line.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        let cmd = [ProcessTests.bin.appendingPathComponent("synth").path, "generate", "--schema", "instruction_v1", "--domain",
                   "'customer support for a SaaS product'", "--count", "200", "--model", "fast", "--watch",
                   "--address", "unix:\(server.socket)", "--api-key", key].joined(separator: " ")
        p.arguments = ["-qefc", cmd, "/dev/null"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        let started = Date()
        try p.run()
        let text = await testThreads.run { () -> String in
            let d = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return String(decoding: d, as: UTF8.self)
        }
        let seconds = Date().timeIntervalSince(started)
        #expect(p.terminationStatus == 0, "\(text)")
        let draws = text.components(separatedBy: "\r\u{1B}[K")
        #expect(draws.count - 1 <= Int(seconds * 10) + 3, "\(draws.count - 1) redraws in \(seconds) s")
        let frames = draws.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { $0.hasPrefix("[") }
        #expect(frames.count >= 2)
        // 100% only once the job has ended (the last snapshot and the closing line).
        for f in frames where f.contains("100%") { #expect(f.hasSuffix("succeeded"), "\(f)") }
        #expect(frames.contains { !$0.contains("100%") && $0.contains("running") }, "\(frames)")
        #expect(frames.last?.contains("100%") == true && frames.last?.contains("succeeded") == true, "\(frames.last ?? "")")
        #expect(draws.last?.contains("succeeded\r\n") == true || draws.last?.contains("succeeded\n") == true, "\(draws.last ?? "")")
        // The line shows what the provider was paid so far: more than nothing by the end.
        let paid = frames.last.flatMap { f in f.range(of: "provider $").map { Double(f[$0.upperBound...].prefix { !$0.isWhitespace }) } } ?? nil
        #expect((paid ?? 0) > 0, "\(frames.last ?? "")")

        // Ctrl-C while following: the job goes on, and synth says how to find it.
        let q = Process()
        q.executableURL = ProcessTests.bin.appendingPathComponent("synth")
        q.arguments = ["generate", "--schema", "instruction_v1", "--domain", "customer support for a SaaS product", "--count", "2000",
                       "--model", "fast", "--watch", "--address", "unix:\(server.socket)", "--api-key", key]
        let err = Pipe()
        q.standardError = err
        q.standardOutput = FileHandle.nullDevice
        try q.run()
        let said: String = try await withTimeout(30, "synth to start following") {
            await testThreads.run { () -> String in
                var text = ""
                while !text.contains("records") {
                    let chunk = err.fileHandleForReading.availableData
                    if chunk.isEmpty { break }
                    text += String(decoding: chunk, as: UTF8.self)
                }
                return text
            }
        }
        let jobID = try #require(said.split(separator: " ").first { $0.hasPrefix("syn_job_") }.map(String.init), "\(said)")
        try await Task.sleep(for: .milliseconds(500))
        kill(q.processIdentifier, SIGINT)
        let (status, rest) = await testThreads.run { () -> (Int32, String) in
            let d = err.fileHandleForReading.readDataToEndOfFile()
            q.waitUntilExit()
            return (q.terminationStatus, String(decoding: d, as: UTF8.self))
        }
        #expect(status == 130)
        #expect(rest.contains("stopped following job \(jobID)") && rest.contains("synth watch \(jobID)") && rest.contains("synth cancel \(jobID)"),
                "\(rest)")
        let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let job = try await client.unary(Methods.getJob, PBGetJobRequest.with { $0.jobID = jobID }).job
        #expect(job.status == "running" || job.status == "succeeded")
        _ = try await client.unary(Methods.cancelJob, PBCancelJobRequest.with { $0.jobID = jobID })
        await client.close()
        _ = try await server.stop(SIGTERM)
    }

    @Test func noServerIsNamedWithWhatToDo() async throws {
        let r = try await ProcessTests.runProcess("synth", ["jobs", "--address", "unix:/tmp/synthd-none-\(getpid()).sock", "--api-key", "sk_live_x"])
        #expect(r.status == 6)
        #expect(r.err.contains("/tmp/synthd-none-\(getpid()).sock") && r.err.contains("synthd serve"), "\(r.err)")
        let j = try await ProcessTests.runProcess("synth", ["jobs", "--json", "--address", "127.0.0.1:1", "--api-key", "sk_live_x"])
        let e = try #require((try JSONSerialization.jsonObject(with: Data(j.err.utf8)) as? [String: Any])?["error"] as? [String: Any], "\(j.err)")
        #expect(e["code"] as? String == "UNAVAILABLE" && (e["message"] as? String)?.contains("127.0.0.1:1") == true)
    }
}
