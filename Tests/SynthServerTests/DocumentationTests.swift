import Foundation
import SynthSpec
import SynthWire
import Testing

/// What the repository's documents say against what the code does.
@Suite struct DocumentationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func text(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// Every Swift source file under Sources, generated code left out.
    static func sources() throws -> [String] {
        let dir = root.appendingPathComponent("Sources")
        let files = FileManager.default.enumerator(atPath: dir.path)?.compactMap { $0 as? String } ?? []
        return try files.filter { $0.hasSuffix(".swift") && !$0.hasSuffix(".pb.swift") }
            .map { try String(contentsOf: dir.appendingPathComponent($0), encoding: .utf8) }
    }

    static func matches(_ pattern: String, in text: String) -> [String] {
        let re = try! NSRegularExpression(pattern: pattern)
        return re.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap {
            Range($0.range(at: 1), in: text).map { String(text[$0]) }
        }
    }

    /// Every error code synthd can send, and every job detail code, is in proto/README.md's tables.
    @Test func everyErrorCodeSynthdSendsIsDocumented() throws {
        let readme = try Self.text("proto/README.md")
        var codes = Set(SpecError.Code.allCases.map(\.rawValue))
        codes.formUnion(WireError.Code.allCases.map(\.rawValue))
        var details = Set<String>()
        for source in try Self.sources() {
            codes.formUnion(Self.matches(#"errorCode: "([A-Z_]+)""#, in: source))
            codes.formUnion(Self.matches(#"sendConnectionStatus\([^,]+, \.[a-zA-Z]+, "([A-Z_]+)""#, in: source))
            codes.formUnion(Self.matches(#"static let tooLargeCode = "([A-Z_]+)""#, in: source))
            details.formUnion(Self.matches(#"(?:detail|endDetail)\.code = "([A-Z_]+)""#, in: source))
        }
        #expect(codes.count >= 18 && details.count >= 5, "\(codes) \(details)")
        // A table row names each: "| CODE |" or "| A, CODE, B |".
        let rows = readme.split(separator: "\n").filter { $0.hasPrefix("| ") }.map { String($0.split(separator: "|").first ?? "") }
        let documented = Set(rows.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } })
        #expect(codes.subtracting(documented).isEmpty, "not in proto/README.md: \(codes.subtracting(documented).sorted())")
        #expect(details.subtracting(documented).isEmpty, "not in proto/README.md: \(details.subtracting(documented).sorted())")
        #expect(!readme.lowercased().contains("reserved code"))
    }
}
