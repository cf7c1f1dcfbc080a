import ArgumentParser
import Foundation
import SynthEngine
import SynthSpec

/// `synthd check`: a job's automatic checks on a JSONL file of records, with no server and no
/// model. What a job would have accepted, and why it would have rejected the rest.
struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a request's automatic quality checks (format, preference, near-duplicate) on a JSONL file of records.",
        discussion: """
            Each line is one record: a JSON object with the schema's fields, as a model answers or as synthd \
            writes records. The request (the JSON you would send to generate) gives the schema, the length \
            bounds and the rest of the rules. The critic's checks (verified, invariants) need a model and are \
            not run. Prints one verdict per line, then the counts by reason.
            """)

    @Option(help: "The request JSON file whose rules apply.") var request: String
    @Option(help: "The records, one JSON object per line (default: standard input).") var records: String?
    @Flag(help: "Print only the counts, as JSON.") var json = false

    func run() async throws {
        let requestText: String
        do {
            requestText = try String(contentsOfFile: request, encoding: .utf8)
        } catch {
            throw CheckError("cannot read --request \(request): \(error.localizedDescription)")
        }
        let checker: OfflineCheck
        do {
            checker = try OfflineCheck(request: try RequestJSON.read(Array(requestText.utf8)))
        } catch let e as SpecError {
            throw CheckError("--request \(request): \(e.description)")
        }
        let input: FileHandle
        if let records {
            guard let h = FileHandle(forReadingAtPath: records) else { throw CheckError("cannot read --records \(records)") }
            input = h
        } else {
            input = .standardInput
        }
        var checked = 0, accepted = 0
        var reasons: [String: Int] = [:], details: [String: Int] = [:]
        // A line at a time, so that a file of any size is checked in bounded memory.
        var lines = LineReader(input)
        while let piece = try lines.next() {
            let line = String(decoding: piece, as: UTF8.self)
            if line.allSatisfy(\.isWhitespace) { continue }
            checked += 1
            let outcome = try await checker.check(line)
            if let reason = outcome.rejection {
                reasons[reason, default: 0] += 1
                if let d = outcome.detail { details[d, default: 0] += 1 }
                if !json { print("\(checked)\trejected\t\(reason)" + (outcome.detail.map { "\t\($0)" } ?? "")) }
            } else {
                accepted += 1
                if !json { print("\(checked)\taccepted") }
            }
        }
        if json {
            let out: [String: Any] = ["checked": checked, "accepted": accepted, "rejected": checked - accepted,
                                      "rejection_breakdown": reasons, "format_problems": details]
            let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("checked \(checked), accepted \(accepted), rejected \(checked - accepted)"
                  + reasons.sorted { $0.key < $1.key }.map { " · \($0.key) \($0.value)" }.joined()
                  + (details.isEmpty ? "" : " (format: " + details.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"))
        }
    }
}

/// The lines of a file or pipe, read a megabyte at a time: memory holds the longest line and a
/// chunk, never the whole input.
struct LineReader {
    let handle: FileHandle
    private var buffer: [UInt8] = []
    /// Where the current line starts in `buffer`, and how far it has been searched for its end.
    private var start = 0, searched = 0
    private var ended = false
    /// Lines returned so far, for errors.
    private(set) var number = 0
    static let chunk = 1 << 20
    /// A record line longer than this is refused rather than held (records are a few KB).
    static let longest = 64 << 20

    init(_ handle: FileHandle) {
        self.handle = handle
    }

    /// The next line without its newline, or nil at the end of the input.
    mutating func next() throws -> ArraySlice<UInt8>? {
        while true {
            if let end = buffer[searched...].firstIndex(of: UInt8(ascii: "\n")) {
                defer { start = end + 1; searched = start }
                number += 1
                return buffer[start..<end]
            }
            searched = buffer.count
            if ended {
                guard start < buffer.count else { return nil }
                defer { start = buffer.count; searched = start }
                number += 1
                return buffer[start...]
            }
            if buffer.count - start > Self.longest {
                throw CheckError("line \(number + 1) of the records is longer than \(Self.longest >> 20) MB; a record is one JSON object per line")
            }
            buffer.removeFirst(start)
            searched -= start
            start = 0
            let data: Data
            do {
                data = try handle.read(upToCount: Self.chunk) ?? Data()
            } catch {
                throw CheckError("cannot read the records after line \(number): \(error.localizedDescription)")
            }
            if data.isEmpty { ended = true } else { buffer.append(contentsOf: data) }
        }
    }
}

/// A failure of `synthd check` that is about its input, not its usage: printed without the usage
/// text.
struct CheckError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
