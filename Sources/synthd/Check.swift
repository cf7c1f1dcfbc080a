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
            checker = try OfflineCheck(request: try RequestJSON.parse(requestText))
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
        let data = input.readDataToEndOfFile()
        for piece in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
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

/// A failure of `synthd check` that is about its input, not its usage: printed without the usage
/// text.
struct CheckError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
