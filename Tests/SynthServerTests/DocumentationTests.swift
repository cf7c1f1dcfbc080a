import Foundation
import SynthEngine
@testable import SynthSpec
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

    /// The rows of the markdown table that follows `heading` in `text`: cells, trimmed.
    static func table(after heading: String, in text: String) -> [[String]] {
        guard let start = text.range(of: heading) else { return [] }
        var rows: [[String]] = []
        var inTable = false
        for line in text[start.upperBound...].split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("|") {
                inTable = true
                let cells = line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
                    .map { $0.trimmingCharacters(in: .whitespaces) }
                if !(cells.first?.hasPrefix("---") ?? false) { rows.append(cells) }
            } else if inTable {
                break
            }
        }
        return Array(rows.dropFirst())   // the header
    }

    /// The README's quality-check table names exactly the reasons a record can be rejected for.
    @Test func theReadmeQualityTableNamesEveryRejectionReason() throws {
        let rows = Self.table(after: "## Quality checks", in: try Self.text("README.md"))
        let named = Set(rows.flatMap { Self.matches("`([a-z_]+)`", in: $0[0]) })
        #expect(named == Set(Rejection.allCases.map(\.rawValue)), "\(named)")
    }

    /// The README's errors table: each code with the status proto/README.md gives it, and the
    /// documented codes all there.
    @Test func theReadmeErrorTableMatchesTheProtocol() throws {
        let readme = Self.table(after: "### Errors", in: try Self.text("README.md"))
        let proto = Self.table(after: "## 5. Status", in: try Self.text("proto/README.md"))
        var statusByCode: [String: String] = [:]
        for row in proto { for code in row[0].split(separator: ",") { statusByCode[code.trimmingCharacters(in: .whitespaces)] = row[1] } }
        #expect(readme.count >= 10)
        for row in readme {
            let code = row[0].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            #expect(statusByCode[code] == row[1].trimmingCharacters(in: CharacterSet(charactersIn: "`")), "\(code): README \(row[1]), protocol \(statusByCode[code] ?? "none")")
        }
        let listed = Set(readme.map { $0[0].trimmingCharacters(in: CharacterSet(charactersIn: "`")) })
        #expect(["VALIDATION_ERROR", "DOMAIN_SPELL_CHECK", "INSUFFICIENT_BALANCE", "CONFLICTING_OPTIONS"].allSatisfy(listed.contains))
    }

    /// The README's request limits are the limits the validator enforces.
    @Test func theReadmeRequestLimitsAreTheValidatorsLimits() throws {
        let rows = Self.table(after: "### Request limits", in: try Self.text("README.md"))
        let want: [String: Int] = [
            "`domain`": RequestLimits.domain, "`system_prompt`": RequestLimits.systemPrompt,
            "`license`, `constraints.tone` / `difficulty`": RequestLimits.shortText,
            "`advanced.categories`": RequestLimits.categories, "`advanced.style_rules`": RequestLimits.styleRules,
            "`advanced.response_policy`": RequestLimits.policySections, "`advanced.metadata_fields`": RequestLimits.metadataFields,
            "`advanced.hard_negatives.techniques`": RequestLimits.techniques, "`idempotency_key`": RequestLimits.idempotencyKeyBytes,
            "`advanced.invariants`": RequestLimits.invariants,
        ]
        var seen = 0
        for row in rows {
            guard let limit = want[row[0]] else { continue }
            seen += 1
            let first = Self.matches("([0-9][0-9,]*)", in: row[1]).map { Int($0.replacingOccurrences(of: ",", with: "")) ?? -1 }
            // "1 to 10": the upper bound is the limit; otherwise the first figure is.
            let figure = row[1].hasPrefix("1 to ") ? first.dropFirst().first : first.first
            #expect(figure == limit, "\(row[0]): README says \(row[1]), the validator \(limit)")
        }
        #expect(seen == want.count)
        let names = try #require(rows.first { $0[0].hasPrefix("every name") })
        #expect(names[1].hasPrefix("\(RequestLimits.name) characters"))
        let descriptions = try #require(rows.first { $0[0].hasPrefix("descriptions") })
        #expect(descriptions[1].hasPrefix("1,000") && RequestLimits.description == 1_000)
    }

    /// docs/requests.md documents every field of the request, by its path, and every example it
    /// names exists.
    @Test func theRequestGuideDocumentsEveryField() throws {
        let guide = try Self.text("docs/requests.md")
        var missing: [String] = []
        func walk(_ message: String, _ path: String, inList: Bool) {
            for field in RequestShape.messages[message] ?? [] {
                let here = path.isEmpty ? field.name : "\(path).\(field.name)"
                // A field of a list item is documented by its name (`rule`) or its path with [] (`drives[].name`).
                let documented = inList ? guide.contains("`\(field.name)`") || guide.contains("[].\(field.name)`") || guide.contains("`\(here)`")
                                        : guide.contains("`\(here)`")
                if !documented { missing.append(here) }
                switch field.cardinality {
                case .single(.message(let m)): walk(m, here, inList: inList)
                case .repeated(.message(let m)), .map(.message(let m)): walk(m, here, inList: true)
                default: break
                }
            }
        }
        walk(RequestShape.root, "", inList: false)
        #expect(missing.isEmpty, "docs/requests.md does not document \(missing)")
        for example in Self.matches(#"\(\.\./tools/examples/([a-z0-9-]+\.json)\)"#, in: guide) {
            #expect(FileManager.default.fileExists(atPath: Self.root.appendingPathComponent("tools/examples/\(example)").path), "\(example)")
        }
        for schema in Schema.allCases {
            #expect(guide.contains("| `\(schema.rawValue)` | [`"), "no example for \(schema.rawValue)")
        }
    }
}
