import Foundation
import Logging
import SynthConcurrency

/// `--log-format json`: one JSON object a line on standard error, for a log collector.
///
///     {"time":"2026-12-07T19:40:01.123Z","level":"info","message":"job created","job":"syn_job_...","org":"acme","count":"50"}
///
/// `time` (UTC, milliseconds), `level`, `message` and `logger` (the label) come first; then the
/// metadata, each key at the top level (a key that would shadow one of those four is written as
/// `metadata_<key>`); nested metadata becomes nested JSON. Lines are written whole, with one write
/// each, so that lines from different threads never interleave.
struct JSONLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?
    let label: String
    private let sink: JSONLogSink

    init(label: String, sink: JSONLogSink = .standardError) {
        self.label = label
        self.sink = sink
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static let reserved: Set<String> = ["time", "level", "message", "logger"]

    func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let explicit { all.merge(explicit) { _, new in new } }
        var out = "{\"time\":"
        Self.string(Self.timestamp(Date()), into: &out)
        out += ",\"level\":"
        Self.string(level.rawValue, into: &out)
        out += ",\"message\":"
        Self.string(message.description, into: &out)
        out += ",\"logger\":"
        Self.string(label, into: &out)
        for key in all.keys.sorted() {
            out += ","
            Self.string(Self.reserved.contains(key) ? "metadata_" + key : key, into: &out)
            out += ":"
            Self.value(all[key]!, into: &out)
        }
        out += "}\n"
        sink.write(out)
    }

    static func value(_ v: Logger.Metadata.Value, into out: inout String) {
        switch v {
        case .string(let s): string(s, into: &out)
        case .stringConvertible(let c): string(c.description, into: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                value(item, into: &out)
            }
            out += "]"
        case .dictionary(let d):
            out += "{"
            for (i, key) in d.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                string(key, into: &out)
                out += ":"
                value(d[key]!, into: &out)
            }
            out += "}"
        }
    }

    /// A JSON string: quotes, backslashes and every control character escaped; the rest as it is (UTF-8).
    static func string(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20 || u.value == 0x7F || (0x2028...0x2029).contains(u.value):
                out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }

    static func timestamp(_ d: Date) -> String {
        let ms = Int64((d.timeIntervalSince1970 * 1000).rounded(.down))
        var t = time_t(ms / 1000)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                      Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(ms % 1000))
    }
}

/// Where JSON lines go: one write(2) a line, under a lock, so that lines stay whole.
final class JSONLogSink: Sendable {
    private let fd: Int32
    private let lock = Locked(())

    init(fd: Int32) {
        self.fd = fd
    }

    static let standardError = JSONLogSink(fd: 2)

    func write(_ line: String) {
        let bytes = Array(line.utf8)
        lock.withLock { _ in
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress! + offset, $0.count - offset) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }
}

/// How synthd writes its log lines (`--log-format`).
enum LogFormat: String, CaseIterable {
    case text, json

    /// Sets up the process's logging; called once, before anything logs.
    func bootstrap(level: Logger.Level) {
        switch self {
        case .text:
            LoggingSystem.bootstrap { label in
                var h = StreamLogHandler.standardError(label: label)
                h.logLevel = level
                return h
            }
        case .json:
            LoggingSystem.bootstrap { label in
                var h = JSONLogHandler(label: label)
                h.logLevel = level
                return h
            }
        }
    }

    /// A message that stops synthd before its services run: a line `synthd: message` in text, a
    /// critical log line in JSON.
    func fail(_ message: String, logger: Logger) {
        switch self {
        case .text: FileHandle.standardError.write(Data("synthd: \(message)\n".utf8))
        case .json: logger.critical("\(message)")
        }
    }
}
