import Foundation
import SynthAPI
import Testing
import SynthClient
import SynthProto
import SynthSpec
import SynthStore

/// synthd running its own local model server. llama.cpp's server is too slow to build in CI, so
/// these tests hand synthd, as `local_model.server`, a launcher that starts the fake provider on
/// the port synthd chose (the fake speaks the same OpenAI wire format and has /health). What is
/// tested is synthd's side: start, health wait, routing every tier to it, restart, stop.
@Suite(.serialized) struct LocalModelTests {
    static func setUp(extra: String = "") throws -> (dir: String, config: String, key: String) {
        let dir = "/tmp/sdl-" + String(UUID().uuidString.prefix(8))
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let launcher = dir + "/llama-server"
        try Data("""
        #!/bin/sh
        # Takes llama-server's arguments, keeps --port, runs the fake provider there.
        while [ $# -gt 0 ]; do case "$1" in --port) port=$2; shift;; esac; shift; done
        exec python3 \(repoRoot.appendingPathComponent("tools/fake_provider/server.py").path) --port "$port" --seed 3
        """.utf8).write(to: URL(fileURLWithPath: launcher))
        chmod(launcher, 0o755)
        FileManager.default.createFile(atPath: dir + "/tiny-model.gguf", contents: Data("GGUF".utf8))
        let config = dir + "/config.json"
        try Data("""
        {"local_model": {"server": "\(launcher)", "model": "\(dir)/tiny-model.gguf", "parallel": 3\(extra)},
         "server": {"rate_limit_per_minute": 0}}
        """.utf8).write(to: URL(fileURLWithPath: config))
        let store = try Store(path: dir + "/data")
        _ = try store.createOrg(name: "acme", balanceMicroUSD: 100_000_000)
        return (dir, config, try store.createKey(org: "acme").key)
    }

    static func childPID(_ dir: String) -> pid_t? {
        (try? String(contentsOfFile: dir + "/data/local-model.pid", encoding: .utf8))
            .flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    static func alive(_ pid: pid_t) -> Bool {
        // A zombie has exited already.
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        return !stat.contains(") Z ")
    }

    static func waitGone(_ pid: pid_t) async throws {
        try await withTimeout(15, "llama-server \(pid) to stop") {
            while alive(pid) { try await Task.sleep(for: .milliseconds(50)) }
        }
    }

    static func runJob(_ client: SynthClient, count: Int64) async throws -> PBJob {
        var gen = PBGenerateRequest()
        gen.request.schema = "instruction_v1"
        gen.request.domain = "customer support for a SaaS product"
        gen.request.count = count
        gen.request.model = "balanced"
        return try await runJob(client, gen)
    }

    /// Runs `gen` to its end and returns the job's last progress.
    static func runJob(_ client: SynthClient, _ gen: PBGenerateRequest) async throws -> PBJob {
        let job = try await client.unary(Methods.generate, gen).job
        var watch = PBWatchJobRequest()
        watch.jobID = job.jobID
        watch.progressOnly = true
        let request = watch
        return try await withTimeout(60, "the job") {
            var last = PBJob()
            for try await e in client.stream(Methods.watchJob, request) {
                if case .progress(let j) = e.event { last = j }
            }
            return last
        }
    }

    static func health(_ client: SynthClient) async throws -> [String: PBComponentHealth] {
        let h = try await client.unary(Methods.health, PBHealthRequest())
        return Dictionary(h.components.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    @Test func startsRoutesEveryTierRestartsAfterACrashAndStopsWithSynthd() async throws {
        let (dir, config, key) = try Self.setUp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let server = try await ProcessTests.Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        // LISTENING comes after the health check passed: the model answers from the first call.
        var h = try await Self.health(client)
        let local = try #require(h["local_model"])
        #expect(local.status == "ok")
        #expect(local.detail.contains("model tiny-model") && local.detail.contains("3 slots"))
        for tier in ["fast", "balanced", "diverse", "deep"] {
            #expect(h["tier:\(tier)"]?.detail == "local (openai) model tiny-model")
        }
        let first = try #require(Self.childPID(dir))
        #expect(Self.alive(first))

        let job = try await Self.runJob(client, count: 6)
        #expect(job.status == "succeeded" && job.accepted == 6)

        // The model server dies: synthd starts it again on the same port, and jobs go on.
        kill(first, SIGKILL)
        let second = try await withTimeout(20, "the restart") {
            while true {
                if let p = Self.childPID(dir), p != first, Self.alive(p), (try await Self.health(client))["local_model"]?.status == "ok" {
                    return p
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        h = try await Self.health(client)
        #expect(h["local_model"]?.detail.contains("restarted 1 times") == true)
        let again = try await Self.runJob(client, count: 4)
        #expect(again.status == "succeeded" && again.accepted == 4)
        await client.close()

        // synthd's shutdown stops it, and removes the pid file.
        #expect(try await server.stop(SIGTERM) == 0)
        try await Self.waitGone(second)
        #expect(Self.childPID(dir) == nil)
    }

    /// The free port synthd chose is taken by another process before llama-server binds it: the
    /// server fails to bind, and synthd starts it again on another port rather than failing. (The
    /// squatter outlives synthd: had it inherited synthd's descriptors, as children once did, the
    /// test's wait for synthd's exit would last as long as the squatter.)
    @Test func aPortTakenBeforeTheServerBindsItIsReplacedByAnother() async throws {
        let (dir, config, key) = try Self.setUp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The first start finds its port held by a squatter (a real socket, bound before the
        // server tries); every start writes down the port it was given.
        try Data("""
        #!/bin/sh
        while [ $# -gt 0 ]; do case "$1" in --port) port=$2; shift;; esac; shift; done
        echo "$port" >> \(dir)/ports
        if [ ! -e \(dir)/squatter ]; then
          python3 -c "import socket,os,time; s=socket.socket(); s.bind(('127.0.0.1', $port)); s.listen(); print(os.getpid(), flush=True); time.sleep(120)" > \(dir)/squatter &
          while [ ! -s \(dir)/squatter ]; do sleep 0.05; done
        fi
        exec python3 \(repoRoot.appendingPathComponent("tools/fake_provider/server.py").path) --port "$port" --seed 3
        """.utf8).write(to: URL(fileURLWithPath: dir + "/llama-server"))
        defer {
            if let text = try? String(contentsOfFile: dir + "/squatter", encoding: .utf8), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                kill(pid, SIGKILL)
            }
        }
        let server = try await ProcessTests.Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
        let ports = try String(contentsOfFile: dir + "/ports", encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(ports.count == 2 && ports[0] != ports[1], "\(ports)")
        let local = try #require(try await Self.health(client)["local_model"])
        #expect(local.status == "ok")
        #expect(local.detail.contains("127.0.0.1:\(ports.last ?? "?")"), "\(local.detail)")
        let job = try await Self.runJob(client, count: 3)
        #expect(job.status == "succeeded" && job.accepted == 3)
        await client.close()
        #expect(try await server.stop(SIGTERM) == 0)
        let log = (try? String(contentsOfFile: dir + "/data/local-model.log", encoding: .utf8)) ?? ""
        #expect(log.lowercased().contains("address already in use"), "\(log.suffix(2000))")
    }

    /// `stand_in_for`: a request that names a cloud provider and its model runs on the local
    /// model; without it, the same job fails at once, naming the key to set.
    @Test func aStandInAnswersForTheProvidersARequestNames() async throws {
        var gen = PBGenerateRequest()
        gen.request = try RequestJSON.parse("""
        {"schema":"preference_v1","domain":"code review best practices","count":4,
         "models":{"generator":{"provider":"anthropic","model":"claude-sonnet-4-6"},"critic":{"provider":"openai","model":"gpt-4o-mini"}}}
        """)
        for standIn in [false, true] {
            let (dir, config, key) = try Self.setUp(extra: standIn ? #", "stand_in_for": ["openai", "anthropic"]"# : "")
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let server = try await ProcessTests.Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
            let client = try await SynthClient.connect(.unix(server.socket), apiKey: key)
            let last = try await Self.runJob(client, gen)
            if standIn {
                #expect(last.status == "succeeded" && last.accepted == 4, "\(last.status): \(last.error)")
            } else {
                #expect(last.status == "failed" && last.accepted == 0)
                #expect(last.error.contains("ANTHROPIC_API_KEY"), "\(last.error)")
            }
            await client.close()
            #expect(try await server.stop(SIGTERM) == 0)
        }
    }

    @Test func aKilledSynthdTakesItsModelServerWithIt() async throws {
        let (dir, config, _) = try Self.setUp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let server = try await ProcessTests.Synthd.start(data: dir + "/data", socket: dir + "/s.sock", config: config)
        let child = try #require(Self.childPID(dir))
        #expect(Self.alive(child))
        #expect(try await server.stop(SIGKILL) != 0)
        try await Self.waitGone(child)
    }

    /// Runs `synthd serve` on the set-up's config until it exits; its status and standard error.
    static func serveUntilExit(_ dir: String, _ config: String) throws -> (status: Int32, stderr: String) {
        let p = Process()
        p.executableURL = ProcessTests.bin.appendingPathComponent("synthd")
        p.arguments = ["serve", "--data", dir + "/data", "--unix", dir + "/s.sock", "--config", config]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    @Test func aMissingServerIsAClearStartupError() async throws {
        let (dir, config, _) = try Self.setUp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.removeItem(atPath: dir + "/llama-server")
        let (status, text) = try Self.serveUntilExit(dir, config)
        #expect(status != 0)
        #expect(text.contains("no llama-server found at \(dir)/llama-server"))
        #expect(text.contains("local_model.server"))
    }

    @Test func aServerThatExitsAtOnceFailsStartupWithItsLog() async throws {
        let (dir, config, _) = try Self.setUp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("#!/bin/sh\necho 'error: model file is not a GGUF file' >&2\nexit 3\n".utf8)
            .write(to: URL(fileURLWithPath: dir + "/llama-server"))
        let (status, text) = try Self.serveUntilExit(dir, config)
        #expect(status != 0)
        #expect(text.contains("llama-server exited with status 3"))
        #expect(text.contains("model file is not a GGUF file"))
    }
}
