import Foundation
import SwiftProtobuf
import SynthProto

/// The most a request may hold: every list and free-text field has a maximum, so that what one
/// request costs (its decode, its validation, the prompts it makes, its manifest) is bounded.
/// Text lengths are in characters as Unicode code points (what Python's `len` counts).
///
/// The documented limits: domain 500 (ours), system_prompt 4,000, 1-10 invariants of 10-500
/// characters, 1-5 coverage dimensions of 1-20 values and at most 100 cells, 2-5 splits, 1-20 drive
/// pairs, 50 override words. The rest are ours, documented in the README.
public enum RequestLimits {
    public static let domain = 500
    public static let systemPrompt = 4_000
    /// license, constraints.tone / difficulty (constraints.language is an ISO 639-1 code).
    public static let shortText = 200
    /// Every name: categories, coverage dimensions and values, splits, metadata fields, policy
    /// sections, techniques, axes and drives, override words, providers and models.
    public static let name = 100
    /// Descriptions of categories, techniques, axes, drives and llm_assessed fields; a constant
    /// metadata value; an auto_increment prefix.
    public static let description = 1_000
    public static let categories = 100
    public static let styleRules = 20
    public static let styleRule = 500
    public static let policySections = 20
    public static let policyText = 2_000
    public static let coverageDimensions = 5
    public static let coverageValues = 20
    public static let coverageCells = 100
    public static let invariants = 10
    public static let invariantRule = 10...500
    public static let metadataFields = 50
    public static let techniques = 50
    public static let splits = 2...5
    public static let drivePairs = 20
    public static let overrideVocabulary = 50
    public static let idempotencyKeyBytes = 255
    /// `advanced.dedup_against`: jobs named at most, and a job id's length at most (ours).
    public static let dedupAgainst = 10
    public static let jobIDBytes = 128
    /// `max_provider_cost_usd` at most (ours).
    public static let maxProviderCostUSD = 1_000_000.0
    /// A VALIDATION_ERROR lists at most this many field errors, and counts the rest.
    public static let fieldErrors = 100
    /// A field error quotes at most this many characters of the value it refuses.
    public static let quotedValue = 80

    /// The serialized size of the largest `GenerateRequest` these limits let through (an upper
    /// bound: it fills categories and coverage both, which no one request may). A frame from a
    /// connection that has not yet authenticated may be no larger than this plus the call's
    /// envelope.
    public static let largestGenerateRequestBytes: Int = {
        let proto = (try? largestRequest().serializedBytes() as [UInt8])?.count ?? 4 << 20
        // Or the same call carrying the body as JSON text (request_json), with its key.
        return max(proto, requestJSONBytes + idempotencyKeyBytes + 64)
    }()

    /// The largest JSON body (`request_json`, or what `RequestJSON.read` takes): the largest valid
    /// request as compact JSON, plus room for indentation and escapes (64 KiB, or a quarter).
    public static let requestJSONBytes: Int = {
        let compact = largestRequestJSON.utf8.count
        return compact + max(64 << 10, compact / 4)
    }()

    /// The most JSON values (objects, lists, strings, numbers...) a body may hold: four times as
    /// many as the largest valid request has. It bounds the parse tree, whatever the bytes hold.
    public static let requestJSONValues: Int = {
        var n = 0
        func count(_ v: JSONValue) {
            n += 1
            switch v {
            case .array(let items): items.forEach(count)
            case .object(let pairs): pairs.forEach { count($0.1) }
            default: break
            }
        }
        if let v = JSONValue.parse(Array(largestRequestJSON.utf8)) { count(v) }
        return 4 * max(n, 1000)
    }()

    static var largestRequestJSON: String { RequestJSON.render(largestRequest().request) }

    /// Every list at its maximum length and every text at its maximum, in 4-byte characters.
    public static func largestRequest() -> PBGenerateRequest {
        func text(_ n: Int, _ tag: Int = 0) -> String {
            let head = String(tag)
            return head + String(repeating: "\u{1D49C}", count: n - head.count)
        }
        var g = PBGenerateRequest()
        g.idempotencyKey = String(repeating: "k", count: idempotencyKeyBytes)
        g.domainConfirmed = true
        var r = PBJobRequest()
        r.schema = "conflict_v1"
        r.domain = text(domain)
        r.count = 1_000_000
        r.model = "deep"
        r.models.generator.provider = "anthropic"
        r.models.generator.model = text(name)
        r.models.critic = r.models.generator
        r.systemPrompt = text(systemPrompt)
        r.verified = true
        r.license = text(shortText)
        r.delivery = "online"
        r.maxProviderCostUsd.value = maxProviderCostUSD
        r.constraints.language = "en"
        r.constraints.tone = text(shortText)
        r.constraints.difficulty = text(shortText)
        r.constraints.minTokens.value = 10_000
        r.constraints.maxTokens.value = 10_000
        var a = PBAdvanced()
        for i in 0..<categories {
            var c = PBCategory()
            c.percentage = 100.0 / Double(categories)
            c.description_p = text(description)
            a.categories[text(name, i)] = c
        }
        for i in 0..<coverageDimensions {
            var d = PBCoverageDimension()
            d.name = text(name, i)
            d.values = (0..<coverageValues).map { text(name, $0) }
            a.coverage.dimensions.append(d)
        }
        // each_value: all_combinations would allow fewer values (at most 100 cells).
        a.coverage.mode = "each_value"
        a.coverage.minPerCell.value = 1
        for _ in 0..<invariants {
            var inv = PBInvariant()
            inv.rule = text(invariantRule.upperBound)
            inv.enforcement = "strict"
            a.invariants.append(inv)
        }
        for i in 0..<policySections { a.responsePolicy[text(name, i)] = text(policyText) }
        a.styleRules = (0..<styleRules).map { _ in text(styleRule) }
        a.dedupAgainst = (0..<dedupAgainst).map { "job_" + String(repeating: "x", count: jobIDBytes - 7) + String(format: "%03d", $0) }
        a.hardNegatives.enabled = true
        a.hardNegatives.percentage.value = 100
        a.hardNegatives.techniques = (0..<techniques).map { i in
            var s = Google_Protobuf_Struct()
            s.fields["name"] = Google_Protobuf_Value(stringValue: text(name, i))
            s.fields["description"] = Google_Protobuf_Value(stringValue: text(description))
            return Google_Protobuf_Value(structValue: s)
        }
        for i in 0..<splits.upperBound { a.outputSplit[text(name, i)] = 100.0 / Double(splits.upperBound) }
        a.metadataFields = (0..<metadataFields).map { i in
            var f = PBMetadataField()
            f.name = text(name, i)
            f.type = "auto_increment"
            f.prefix = text(description)
            f.value = Google_Protobuf_Value(stringValue: text(description))
            f.description_p = text(description)
            return f
        }
        a.responseConstraints.minTokens.value = 10_000
        a.responseConstraints.maxTokens.value = 10_000
        r.advanced = a
        var cc = PBConflictConfig()
        cc.drivePairs = (0..<drivePairs).map { i in
            var p = PBDrivePair()
            p.axisName = text(name, i)
            p.description_p = text(description)
            p.drives = (0..<2).map { j in
                var d = PBDrive()
                d.name = text(name, j)
                d.description_p = text(description)
                return d
            }
            return p
        }
        for i in 0..<drivePairs { cc.axisDistribution[text(name, i)] = 100.0 / Double(drivePairs) }
        cc.resolutionMode = "annotated"
        cc.overrideVocabulary = (0..<overrideVocabulary).map { text(name, $0) }
        r.conflictConfig = cc
        g.request = r
        return g
    }
}

/// The ISO 639-1 language codes (two letters), which `constraints.language` must be one of.
public enum LanguageCodes {
    public static let iso639_1: Set<String> = [
        "aa", "ab", "ae", "af", "ak", "am", "an", "ar", "as", "av", "ay", "az", "ba", "be", "bg", "bh", "bi", "bm",
        "bn", "bo", "br", "bs", "ca", "ce", "ch", "co", "cr", "cs", "cu", "cv", "cy", "da", "de", "dv", "dz", "ee",
        "el", "en", "eo", "es", "et", "eu", "fa", "ff", "fi", "fj", "fo", "fr", "fy", "ga", "gd", "gl", "gn", "gu",
        "gv", "ha", "he", "hi", "ho", "hr", "ht", "hu", "hy", "hz", "ia", "id", "ie", "ig", "ii", "ik", "io", "is",
        "it", "iu", "ja", "jv", "ka", "kg", "ki", "kj", "kk", "kl", "km", "kn", "ko", "kr", "ks", "ku", "kv", "kw",
        "ky", "la", "lb", "lg", "li", "ln", "lo", "lt", "lu", "lv", "mg", "mh", "mi", "mk", "ml", "mn", "mr", "ms",
        "mt", "my", "na", "nb", "nd", "ne", "ng", "nl", "nn", "no", "nr", "nv", "ny", "oc", "oj", "om", "or", "os",
        "pa", "pi", "pl", "ps", "pt", "qu", "rm", "rn", "ro", "ru", "rw", "sa", "sc", "sd", "se", "sg", "si", "sk",
        "sl", "sm", "sn", "so", "sq", "sr", "ss", "st", "su", "sv", "sw", "ta", "te", "tg", "th", "ti", "tk", "tl",
        "tn", "to", "tr", "ts", "tt", "tw", "ty", "ug", "uk", "ur", "uz", "ve", "vi", "vo", "wa", "wo", "xh", "yi",
        "yo", "za", "zh", "zu"
    ]
}
