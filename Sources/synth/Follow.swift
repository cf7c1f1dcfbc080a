import ArgumentParser
import Foundation
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

    static func job(_ client: SynthClient, _ id: String, afterSeq: UInt64, records: Sink, json: Bool, quiet: Bool = false,
                    transform: (([UInt8]) throws -> [UInt8])? = nil) async throws -> PBJob {
        var req = PBWatchJobRequest()
        req.jobID = id
        req.afterSeq = afterSeq
        if case .none = records { req.progressOnly = true }
        var out: FileHandle?
        switch records {
        case .none: break
        case .stdout: out = FileHandle.standardOutput
        case .file(let path):
            FileManager.default.createFile(atPath: path, contents: nil)
            out = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        }
        var bar = ProgressBar(enabled: !quiet && !json)
        var last = PBJob()
        var pending = Data()
        for try await event in client.stream("WatchJob", req, as: PBWatchJobResponse.self) {
            switch event.event {
            case .record(let r):
                if let transform {
                    pending.append(contentsOf: try transform(Array(r.json)))
                } else {
                    pending.append(r.json)
                }
                pending.append(0x0A)
                if pending.count > 1 << 16 {
                    try emit(pending, out)
                    pending.removeAll(keepingCapacity: true)
                }
            case .batch(let b):
                // Not asked for here, but a batch is its records' lines.
                for line in b.jsonl.split(separator: 0x0A) {
                    pending.append(contentsOf: try transform?(Array(line)) ?? Array(line))
                    pending.append(0x0A)
                }
            case .progress(let job):
                if !pending.isEmpty {
                    try emit(pending, out)
                    pending.removeAll(keepingCapacity: true)
                }
                last = job
                bar.draw(job)
                if json { FileHandle.standardError.write(Data((Output.json(job) + "\n").utf8)) }
            case nil:
                break
            }
        }
        if !pending.isEmpty { try emit(pending, out) }
        if case .file(let path) = records {
            try out?.close()
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

    func line(_ j: PBJob) -> String {
        let total = max(1, j.count)
        let frac = Double(j.accepted) / Double(total)
        let width = 30
        let filled = Int(frac * Double(width))
        let elapsed = Date().timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(j.accepted) / elapsed : 0
        let eta = rate > 0 ? Double(j.count - j.accepted) / rate : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        return String(format: "[%@] %lld/%lld %3.0f%%  %lld rejected  %.1f rec/s  %@  %@", bar, j.accepted, j.count, frac * 100, j.rejected, rate,
                      j.status == "running" && rate > 0 ? String(format: "ETA %.0fs", eta) : "", j.status)
    }

    mutating func draw(_ j: PBJob) {
        guard enabled else { return }
        if tty {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line(j)).utf8))
        } else if Date().timeIntervalSince(lastPlain) >= 2 {
            lastPlain = Date()
            FileHandle.standardError.write(Data((line(j) + "\n").utf8))
        }
    }

    func finish(_ j: PBJob) {
        guard enabled else { return }
        FileHandle.standardError.write(Data(((tty ? "\r\u{1B}[K" : "") + line(j) + "\n").utf8))
        if !j.error.isEmpty { FileHandle.standardError.write(Data("error: \(j.error)\n".utf8)) }
    }
}
