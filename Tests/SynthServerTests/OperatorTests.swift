import Foundation
import SynthAPI
import SynthClient
import SynthProto
import SynthSpec
import Testing

/// What an operator installing synthd expects of the project: one version everywhere, a licence,
/// a changelog, a systemd unit that really starts synthd, shell completion, and logs a collector reads.
@Suite(.serialized) struct OperatorTests {
    static let version = (try? String(contentsOf: repoRoot.appendingPathComponent("VERSION"), encoding: .utf8))?
        .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""

    static func read(_ path: String) throws -> String {
        try String(contentsOf: repoRoot.appendingPathComponent(path), encoding: .utf8)
    }

    @Test func oneVersionForTheWholeProject() async throws {
        let v = Self.version
        #expect(v.split(separator: ".").count == 3 && v.allSatisfy { $0.isNumber || $0 == "." }, "VERSION: \(v)")
        #expect(SynthVersion.current == v)
        let synthd = try await ProcessTests.runSynthd(["--version"])
        #expect(synthd.status == 0 && synthd.out == v + "\n", "\(synthd)")
        let synth = try await ProcessTests.runProcess("synth", ["--version"])
        #expect(synth.status == 0 && synth.out == v + "\n", "\(synth)")
        // The clients carry it too: the C header (the library and synth-c-watch print it; the C
        // tests run them), the C Makefile reads the file, and the Python package and its metadata.
        #expect(try Self.read("clients/c/include/synthc.h").contains("#define SYNTHC_VERSION \"\(v)\""))
        #expect(try Self.read("clients/c/Makefile").contains("VERSION := $(shell cat ../../VERSION)"))
        #expect(try Self.read("clients/python/pyproject.toml").contains("\nversion = \"\(v)\"\n"))
        #expect(try Self.read("clients/python/synthd/__init__.py").contains("\n__version__ = \"\(v)\"\n"))
        // The changelog has a section for it.
        #expect(try Self.read("CHANGELOG.md").contains("\n## \(v)"))
        #expect(try Self.read("LICENSE").hasPrefix("MIT License"))
    }

    @Test func theSystemdUnitStartsSynthdAsWritten() async throws {
        let unit = try Self.read("tools/systemd/synthd.service")
        let exec = try #require(unit.split(separator: "\n").first { $0.hasPrefix("ExecStart=") }).dropFirst("ExecStart=".count)
        var args = exec.split(separator: " ").map(String.init)
        #expect(args.first == "/usr/local/bin/synthd")
        // The unit's command line, with its directories moved under a temporary one.
        let dir = "/tmp/sdunit-" + String(UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: dir + "/etc", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        args = args.dropFirst().map {
            $0.replacingOccurrences(of: "/var/lib/synthd", with: dir + "/state")
                .replacingOccurrences(of: "/run/synthd", with: dir)
                .replacingOccurrences(of: "/etc/synthd", with: dir + "/etc")
        }
        #expect(args.contains(dir + "/etc/config.json"))
        try Data(#"{"server": {"rate_limit_per_minute": 600}, "local_model": {"enabled": false}}"#.utf8)
            .write(to: URL(fileURLWithPath: dir + "/etc/config.json"))
        try FileManager.default.createDirectory(atPath: dir + "/state", withIntermediateDirectories: true)
        // The config it names passes the check the unit's comments ask for.
        let check = try await ProcessTests.runSynthd(["config", "check", dir + "/etc/config.json"])
        #expect(check.status == 0, "\(check.err)")

        let p = Process()
        p.executableURL = ProcessTests.bin.appendingPathComponent("synthd")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { p.terminate() } }
        let line: String = try await testThreads.run {
            var data = Data()
            while !data.contains(UInt8(ascii: "\n")) {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                data += chunk
            }
            return String(decoding: data, as: UTF8.self)
        }
        #expect(line.hasPrefix("LISTENING unix=\(dir)/synthd.sock"), "\(line)")
        // SIGTERM, as systemd stops it: a clean exit, not one the unit would restart.
        p.terminate()
        let status: Int32 = await testThreads.run {
            p.waitUntilExit()
            return p.terminationStatus
        }
        #expect(status == 0)
        // The exit codes the unit will not restart on are the ones synthd uses for those causes.
        #expect(unit.contains("RestartPreventExitStatus=2 3 4"))
        let bad = try await ProcessTests.runSynthd(["serve", "--data", dir + "/state/data", "--unix", dir + "/s2.sock", "--config", dir + "/nope.json"])
        #expect(bad.status == 2)
    }

    @Test func shellCompletionScriptsAreGenerated() async throws {
        for shell in ["bash", "zsh", "fish"] {
            for tool in ["synthd", "synth"] {
                let r = try await ProcessTests.runProcess(tool, ["--generate-completion-script", shell])
                #expect(r.status == 0 && r.out.contains(tool), "\(tool) \(shell): \(r.err)")
            }
        }
        // The bash script is valid bash and completes the subcommands.
        let script = try await ProcessTests.runSynthd(["--generate-completion-script", "bash"]).out
        for sub in ["serve", "admin", "config", "check"] { #expect(script.contains(sub), "\(sub)") }
        let file = "/tmp/sdcomp-\(UUID().uuidString.prefix(8)).bash"
        try Data(script.utf8).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-n", file]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
    }

    @Test func jsonLogsAreOneObjectALineWithTheCallOrgAndJob() async throws {
        let (dir, fake, config, key) = try await ProcessTests.setUp(latencyMs: 5, concurrency: 8)
        defer { ProcessTests.tearDown(dir, fake) }
        let log = dir + "/synthd.log"
        let server = try await ProcessTests.Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config,
                                                         arguments: ["--log-format", "json"], log: log)
        let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let job = try await client.unary(Methods.generate, ProcessTests.supportJob(count: 20)).job
        let done = try await followToEnd(client, job.jobID)
        #expect(done.status == "succeeded")
        // A refused call: a job id that does not exist.
        var get = PBGetJobRequest()
        get.jobID = "syn_job_doesnotexist000000000"
        await #expect(throws: (any Error).self) { _ = try await client.unary(Methods.getJob, get) }
        await client.close()
        #expect(try await server.stop(SIGTERM) == 0)

        let text = try String(contentsOfFile: log, encoding: .utf8)
        let lines = text.split(separator: "\n")
        #expect(lines.count >= 5, "\(text)")
        var objects: [[String: Any]] = []
        for line in lines {
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                Issue.record("not one JSON object: \(line)")
                continue
            }
            #expect(o["time"] is String && o["level"] is String && o["message"] is String && o["logger"] is String, "\(line)")
            #expect((o["time"] as? String)?.hasSuffix("Z") == true)
            objects.append(o)
        }
        let created = objects.first { $0["message"] as? String == "job created" }
        #expect(created?["job"] as? String == job.jobID && created?["org"] as? String == "acme", "\(String(describing: created))")
        // Every call is in the access log (debug) with its id, org, method and status.
        let generate = objects.first { $0["message"] as? String == "call ended" && $0["method"] as? String == "Generate" }
        #expect(generate?["org"] as? String == "acme" && generate?["status"] as? String == "ok" && (generate?["call"] as? String).flatMap(Int.init) != nil,
                "\(String(describing: generate))")
        let refused = objects.first { $0["message"] as? String == "call ended" && $0["method"] as? String == "GetJob" }
        #expect(refused?["status"] as? String == "notFound", "\(String(describing: refused))")
        #expect(objects.contains { $0["message"] as? String == "stopped; running jobs resume at the next start" })
        // No key is ever logged.
        #expect(!text.contains(key))

        // A config that stops synthd at start is a JSON line too, with the problems as a list.
        try Data(#"{"server": {"max_conections": 4}}"#.utf8).write(to: URL(fileURLWithPath: dir + "/bad.json"))
        let bad = try await ProcessTests.runSynthd(["serve", "--data", dir + "/data", "--unix", dir + "/s2.sock", "--config", dir + "/bad.json", "--log-format", "json"])
        #expect(bad.status == 2)
        let o = try #require(try JSONSerialization.jsonObject(with: Data(bad.err.utf8)) as? [String: Any], "\(bad.err)")
        #expect(o["level"] as? String == "critical")
        #expect((o["problems"] as? [String])?.first?.hasPrefix("server.max_conections: unknown key; did you mean max_connections?") == true, "\(o)")
    }
}
