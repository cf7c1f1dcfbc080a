import ArgumentParser
import Foundation
import SynthAPI
import SynthClient
import SynthProto

/// Where followed records go.
enum Sink {
    case none
    case stdout
    case file(String)
}

/// Follows a job over WatchJob: writes records where asked and draws progress on stderr.
enum Follow {
    /// Writes records out. When the reader of stdout goes away (`synth results ID | head`), the
    /// command ends quietly and successfully, as other command-line tools do.
    static func emit(_ data: Data, _ out: FileHandle?) throws {
        guard let out else { return }
        do {
            try out.write(contentsOf: data)
        } catch where out === FileHandle.standardOutput {
            throw ExitCode.success
        }
    }

    /// How long a lost connection is retried before the command gives up.
    static let reconnectFor = Duration.seconds(120)

    /// Follows job `id` from after record `afterSeq` until it ends. When the connection is lost
    /// (synthd restarted, say) and `reconnect` is given, it connects again and resumes after the
    /// last record it wrote, so that nothing is written twice or skipped; it gives up after
    /// `reconnectFor` without a connection.
    static func job(_ client: SynthClient, _ id: String, afterSeq: UInt64, records: Sink, json: Bool, quiet: Bool = false,
                    transform: (([UInt8]) throws -> [UInt8])? = nil,
                    reconnect: (() async throws -> SynthClient)? = nil) async throws -> PBJob {
        var req = PBWatchJobRequest()
        req.jobID = id
        req.afterSeq = afterSeq
        if case .none = records { req.progressOnly = true }
        var out: FileHandle?
        // A file is written beside its name and renamed when whole: a failed or refused export
        // leaves no file (and no empty one) behind.
        var partial: String?
        switch records {
        case .none: break
        case .stdout: out = FileHandle.standardOutput
        case .file(let path):
            let temp = path + ".partial-\(getpid())"
            guard FileManager.default.createFile(atPath: temp, contents: nil) else {
                throw ClientError(.invalidArgument, "cannot write \(path)", errorCode: "CANNOT_WRITE")
            }
            partial = temp
            out = try FileHandle(forWritingTo: URL(fileURLWithPath: temp))
        }
        // Progress as JSON goes to stdout unless the records do.
        let progressOut: FileHandle = { if case .stdout = records { return .standardError } else { return .standardOutput } }()
        var bar = ProgressBar(enabled: !quiet && !json)
        var last = PBJob()
        var pending = Data()
        var client = client
        // A connection opened here (after the first was lost) is closed here.
        var opened: SynthClient?
        func closeOpened() async {
            await opened?.close()
            opened = nil
        }
        func flush() throws {
            if !pending.isEmpty { try emit(pending, out) }
            pending.removeAll(keepingCapacity: true)
        }
        // Since when no connection has made progress, and the wait before the next attempt.
        var lostAt: ContinuousClock.Instant?
        var backoff = Duration.milliseconds(250)
        var lastConnectError: ClientError?
        /// Progress: a record, or news of the job. A connection that only opens and drops again
        /// does not reset the give-up clock.
        func progressed() {
            guard lostAt != nil else { return }
            lostAt = nil
            backoff = .milliseconds(250)
            lastConnectError = nil
            FileHandle.standardError.write(Data("synth: reconnected; resuming after record \(req.afterSeq)\n".utf8))
        }
        /// One WatchJob call, to its end.
        func follow() async throws {
            for try await event in client.stream(Methods.watchJob, req) {
                switch event.event {
                case .record(let r):
                    progressed()
                    if let transform {
                        pending.append(contentsOf: try transform(Array(r.json)))
                    } else {
                        pending.append(r.json)
                    }
                    pending.append(0x0A)
                    req.afterSeq = max(req.afterSeq, r.seq)
                    if pending.count > 1 << 16 { try flush() }
                case .batch(let b):
                    progressed()
                    // Not asked for here, but a batch is its records' lines.
                    for line in b.jsonl.split(separator: 0x0A) {
                        pending.append(contentsOf: try transform?(Array(line)) ?? Array(line))
                        pending.append(0x0A)
                    }
                    req.afterSeq = max(req.afterSeq, b.lastSeq)
                case .progress(let job):
                    if job.accepted != last.accepted || job.generated != last.generated || job.status != last.status
                        || job.detail.message != last.detail.message { progressed() }
                    try flush()
                    last = job
                    bar.draw(job)
                    if json { progressOut.write(Data((Output.json(job) + "\n").utf8)) }
                case nil:
                    break
                }
            }
        }
        do {
            while true {
                do {
                    try await follow()
                    break
                } catch let e as ClientError where e.code == .unavailable && reconnect != nil {
                    // What arrived is written before anything else is tried.
                    try flush()
                    if lostAt == nil {
                        lostAt = .now
                        FileHandle.standardError.write(Data(("\nsynth: lost the connection to synthd (\(e.status.message)); "
                            + "reconnecting for up to \(reconnectFor.components.seconds) s\n").utf8))
                    }
                    // Another connection to the server replaces this one, whatever state it is in.
                    await closeOpened()
                    while true {
                        guard ContinuousClock.now + backoff - lostAt! < reconnectFor else { throw lastConnectError ?? e }
                        try await Task.sleep(for: backoff)
                        backoff = min(backoff * 2, .seconds(4))
                        do {
                            let fresh = try await reconnect!()
                            opened = fresh
                            client = fresh
                            break
                        } catch let again as ClientError where again.code == .unavailable {
                            lastConnectError = again
                        }
                    }
                }
            }
        } catch {
            await closeOpened()
            if let partial {
                // A file is all the records or nothing.
                try? out?.close()
                unlink(partial)
            } else {
                // Records that arrived are written even when the command fails.
                try? flush()
            }
            throw error
        }
        await closeOpened()
        try flush()
        if case .file(let path) = records, let partial {
            try out?.close()
            guard rename(partial, path) == 0 else {
                unlink(partial)
                throw ClientError(.internal, "cannot write \(path): \(String(cString: strerror(errno)))", errorCode: "CANNOT_WRITE")
            }
            FileHandle.standardError.write(Data("wrote \(last.accepted) records to \(path)\n".utf8))
        }
        bar.finish(last)
        return last
    }
}

/// A one-line progress bar on a terminal; plain lines every few seconds otherwise.
struct ProgressBar {
    let enabled: Bool
    let tty = isatty(2) == 1
    let start = Date()
    var lastPlain = Date.distantPast

    init(enabled: Bool) {
        self.enabled = enabled
    }

    /// The percentage shown: 100 only once the job has ended with its count, never a rounded 99.6.
    static func percent(_ j: PBJob) -> Int {
        let total = max(1, j.count)
        let ended = ["succeeded", "failed", "cancelled"].contains(j.status)
        if ended && j.accepted >= j.count { return 100 }
        return min(99, Int(Double(j.accepted) * 100 / Double(total)))
    }

    func line(_ j: PBJob) -> String {
        let total = max(1, j.count)
        let frac = Double(j.accepted) / Double(total)
        let width = 30
        let filled = Int(frac * Double(width))
        let elapsed = Date().timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(j.accepted) / elapsed : 0
        let eta = rate > 0 ? Double(j.count - j.accepted) / rate : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        // What the provider was paid so far, then the status, and what the job waits for (its
        // place in the line, its provider batch, its provider) while it waits.
        var out = String(format: "[%@] %lld/%lld %3d%%  %lld rejected  %.1f rec/s  %@  provider %@  %@", bar, j.accepted, j.count, Self.percent(j),
                         j.rejected, rate, j.status == "running" && rate > 0 ? String(format: "ETA %.0fs", eta) : "",
                         Output.money(j.usage.providerCostUsd), j.status)
        if ["QUEUED", "WAITING_FOR_BATCH", "WAITING_FOR_PROVIDER", "PAUSED_STORAGE_FULL"].contains(j.detail.code) {
            out += "  (" + String(j.detail.message.prefix(120)) + ")"
        }
        return out
    }

    /// When the bar was last drawn: at most ten times a second.
    var lastDraw = Date.distantPast

    mutating func draw(_ j: PBJob) {
        guard enabled else { return }
        if tty {
            guard Date().timeIntervalSince(lastDraw) >= 0.1 else { return }
            lastDraw = Date()
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line(j)).utf8))
        } else if Date().timeIntervalSince(lastPlain) >= 2 {
            lastPlain = Date()
            FileHandle.standardError.write(Data((line(j) + "\n").utf8))
        }
    }

    func finish(_ j: PBJob) {
        guard enabled else { return }
        FileHandle.standardError.write(Data(((tty ? "\r\u{1B}[K" : "") + line(j) + "\n").utf8))
        if j.hasDetail, j.detail.code != "FAILED" { FileHandle.standardError.write(Data("\(j.detail.code): \(j.detail.message)\n".utf8)) }
        if !j.error.isEmpty { FileHandle.standardError.write(Data("error: \(j.error)\n".utf8)) }
    }
}

/// Ctrl-C while a command follows a job: the job goes on in synthd, so say which one it was and
/// how to follow or cancel it, then exit 130 as an interrupted command does.
final class Interrupt: @unchecked Sendable {
    private let source: any DispatchSourceSignal

    init(jobID: String) {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler {
            FileHandle.standardError.write(Data(("\nsynth: stopped following job \(jobID); it goes on in synthd.\n"
                + "  follow it:  synth watch \(jobID)\n  cancel it:  synth cancel \(jobID)\n").utf8))
            exit(130)
        }
        source.resume()
    }

    func cancel() {
        source.cancel()
        signal(SIGINT, SIG_DFL)
    }
}
