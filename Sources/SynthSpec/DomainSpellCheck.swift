import Foundation
import SynthProto

/// The domain spell check: a word of `domain` that is in neither the system word list (Debian's
/// wamerican, /usr/share/dict/words) nor a built-in technical vocabulary, and that is within a
/// small edit distance of a listed word, is a likely typo. The answer names each such word with
/// up to three suggestions, closest first.
///
/// Left alone: words of one or two letters, words with digits, acronyms and brand spellings
/// (any upper-case letter after the first: SaaS, QLoRA, iOS), and words that are listed once an
/// English ending (s, es, ed, ing, ly, 's) is taken off.
public final class DomainSpellCheck: Sendable {
    let words: Set<String>
    /// Listed words by length, for the suggestion search.
    let byLength: [Int: [String]]

    public static let defaultPath = "/usr/share/dict/words"

    /// Terms of the trade that a general word list lacks.
    public static let vocabulary: Set<String> = [
        "ai", "ml", "llm", "llms", "nlp", "api", "apis", "saas", "paas", "iaas", "sdk", "sdks", "cli", "gui", "ui", "ux", "json", "yaml",
        "xml", "csv", "sql", "nosql", "http", "https", "grpc", "rest", "restful", "graphql", "oauth", "sso", "jwt", "tls", "ssl", "dns",
        "devops", "mlops", "fintech", "insurtech", "healthtech", "edtech", "regtech", "pytorch", "tensorflow", "keras", "numpy", "pandas",
        "sklearn", "huggingface", "transformers", "lora", "qlora", "peft", "rlhf", "dpo", "sft", "ppo", "gguf", "quantization",
        "quantized", "finetune", "finetuning", "fine", "tuning", "embeddings", "tokenizer", "tokenizers", "tokenization", "chatbot",
        "chatbots", "backend", "frontend", "fullstack", "kubernetes", "docker", "dockerfile", "terraform", "ansible", "linux", "unix",
        "macos", "ios", "android", "javascript", "typescript", "python", "golang", "rust", "kotlin", "swift", "postgres", "postgresql",
        "mysql", "sqlite", "mongodb", "redis", "kafka", "spark", "hadoop", "aws", "gcp", "azure", "cloud", "serverless", "microservices",
        "microservice", "webhook", "webhooks", "cybersecurity", "malware", "ransomware", "phishing", "blockchain", "crypto",
        "cryptocurrency", "ecommerce", "onboarding", "offboarding", "workflow", "workflows", "dataset", "datasets", "metadata",
        "hyperparameter", "hyperparameters", "inference", "multilingual", "multimodal", "async", "runtime", "middleware", "login",
        "signup", "username", "usernames", "email", "emails", "chargeback", "chargebacks", "kyc", "aml", "gdpr", "hipaa", "soc",
        "telehealth", "telemedicine", "ehr", "emr", "crm", "erp", "hr", "b2b", "b2c", "esg", "roi", "kpi", "kpis", "okr", "okrs",
        "helpdesk", "helpdesks", "walkthrough", "walkthroughs", "dropdown", "codebase", "codebases", "repo", "repos", "github",
        "gitlab", "jira", "wifi", "bluetooth", "uptime", "timeout", "timeouts", "copywriting", "refactoring", "preprocessing",
        "postprocessing", "deduplication", "smartphone", "smartphones", "app", "apps", "signup", "signups", "checkout",
        "screenshot", "screenshots", "hotfix", "hotfixes", "changelog", "lookup", "autocomplete", "geolocation", "crowdfunding",
        "cryptocurrencies", "biotech", "medtech", "proptech", "agritech", "ebook", "ebooks", "podcast", "podcasts", "vlog",
    ]

    public init(path: String = DomainSpellCheck.defaultPath) {
        var words = Set<String>()
        var byLength: [Int: [String]] = [:]
        // On bytes: most lines are ASCII, and String's Unicode-aware lowercasing and counting of
        // 100,000 lines took a quarter of a second.
        if let data = FileManager.default.contents(atPath: path) {
            words.reserveCapacity(data.count / 9)
            for line in data.split(separator: UInt8(ascii: "\n")) {
                if line.contains(UInt8(ascii: "'")) { continue }
                let ascii = !line.contains { $0 >= 0x80 }
                let w = ascii ? String(decoding: line.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
                              : String(decoding: line, as: UTF8.self).lowercased()
                if w.isEmpty || !words.insert(w).inserted { continue }
                let length = ascii ? w.utf8.count : w.count
                if length >= 2 { byLength[length, default: []].append(w) }
            }
        }
        self.words = words
        self.byLength = byLength
    }

    /// Shared, loaded on first use.
    public static let shared = DomainSpellCheck()

    /// Whether a word list was found; without one the check passes everything.
    public var isAvailable: Bool { !words.isEmpty }

    public func suspects(in domain: String) -> [PBSpellingSuggestion] {
        guard isAvailable else { return [] }
        var out: [PBSpellingSuggestion] = []
        var seen = Set<String>()
        for raw in domain.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "'" || $0 == "’") }) {
            let token = String(raw).replacingOccurrences(of: "’", with: "'")
            for part in token.split(separator: "'").prefix(1) {
                let word = String(part)
                guard word.count >= 3, !word.contains(where: \.isNumber), !word.dropFirst().contains(where: \.isUppercase) else { continue }
                let lower = word.lowercased()
                guard !seen.contains(lower), !known(lower) else { continue }
                seen.insert(lower)
                let close = suggestions(for: lower)
                if !close.isEmpty {
                    var s = PBSpellingSuggestion()
                    s.word = word
                    s.suggestions = close
                    out.append(s)
                }
            }
        }
        return out
    }

    func known(_ w: String) -> Bool {
        if words.contains(w) || Self.vocabulary.contains(w) { return true }
        for ending in ["s", "es", "ed", "ing", "ly", "er", "ers"] where w.hasSuffix(ending) && w.count > ending.count + 2 {
            let stem = String(w.dropLast(ending.count))
            if words.contains(stem) || words.contains(stem + "e") || Self.vocabulary.contains(stem) { return true }
        }
        return false
    }

    /// Listed words within 1 edit (words up to 4 letters) or 2 edits, at most 3.
    func suggestions(for w: String) -> [String] {
        let limit = w.count <= 4 ? 1 : 2
        var found: [(Int, String)] = []
        let chars = Array(w.unicodeScalars)
        for length in (w.count - limit)...(w.count + limit) {
            for candidate in byLength[length] ?? [] {
                let d = Self.distance(chars, Array(candidate.unicodeScalars), limit: limit)
                if d <= limit { found.append((d, candidate)) }
            }
        }
        // Closest first; among equals, a word at least as long (a dropped letter is the commonest
        // typo), then the same first letter, then alphabetical.
        func rank(_ c: String) -> (Int, Int) { (c.count >= w.count ? 0 : 1, c.first == w.first ? 0 : 1) }
        return found.sorted {
            if $0.0 != $1.0 { return $0.0 < $1.0 }
            let a = rank($0.1), b = rank($1.1)
            return a != b ? a < b : $0.1 < $1.1
        }.prefix(3).map(\.1)
    }

    /// Optimal string alignment distance (a swap of neighbours counts one), stopping early once
    /// every path is above `limit`.
    static func distance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar], limit: Int) -> Int {
        if abs(a.count - b.count) > limit { return limit + 1 }
        var prev2 = [Int](repeating: 0, count: b.count + 1)
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...max(1, a.count) where !a.isEmpty {
            cur[0] = i
            var rowMin = cur[0]
            for j in 1...max(1, b.count) where !b.isEmpty {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                var v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { v = min(v, prev2[j - 2] + 1) }
                cur[j] = v
                rowMin = min(rowMin, v)
            }
            if rowMin > limit { return limit + 1 }
            (prev2, prev, cur) = (prev, cur, prev2)
        }
        return a.isEmpty ? b.count : prev[b.count]
    }
}
