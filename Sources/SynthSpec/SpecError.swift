import SynthProto

/// A request that cannot run as given: what the documentation calls a 4xx, with its error code.
public struct SpecError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        case validation = "VALIDATION_ERROR"
        case domainSpelling = "DOMAIN_SPELL_CHECK"
        case conflictingOptions = "CONFLICTING_OPTIONS"
        case malformedRequest = "MALFORMED_REQUEST"
    }

    public var code: Code
    public var message: String
    public var fieldErrors: [PBFieldError]
    public var suggestions: [PBSpellingSuggestion]

    public init(_ code: Code, _ message: String, fieldErrors: [PBFieldError] = [], suggestions: [PBSpellingSuggestion] = []) {
        self.code = code
        self.message = message
        self.fieldErrors = fieldErrors
        self.suggestions = suggestions
    }

    public var description: String {
        ([message] + fieldErrors.map { "\($0.field): \($0.rule) (got \($0.value))" }).joined(separator: "\n")
    }
}

extension PBFieldError {
    public init(_ field: String, _ rule: String, _ value: String) {
        self.init()
        self.field = field
        self.rule = rule
        self.value = value
    }
}
