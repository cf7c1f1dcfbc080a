/// The built-in hard-negative techniques and what each one does.
public enum Techniques {
    public static let builtIn: [String: String] = [
        "educational_framing": "Frames harmful requests as academic study",
        "fictional_framing": "Requests harmful info within a story context",
        "hypothetical_framing": "Uses 'what if' to lower the model's guard",
        "authority_appeal": "Claims professional authority to bypass refusals",
        "emotional_manipulation": "Uses urgency or distress to extract compliance",
        "gradual_escalation": "Starts safe and escalates incrementally",
        "already_know_disclaimer": "Claims prior knowledge to skip safety checks",
        "misleading_context": "Provides false context to justify unsafe requests",
        "ambiguous_phrasing": "Uses deliberate ambiguity to obtain harmful content",
        "edge_cases": "Probes boundary conditions and unusual inputs",
        "factual_errors": "Introduces false premises requiring correction",
        "logical_fallacies": "Tests whether the model accepts flawed reasoning",
        "contradictions": "Internal contradictions that confuse model behavior",
        "incomplete_information": "Leaves out critical context to induce errors",
    ]

    /// The documentation's order, used when a request names no techniques.
    public static let defaultOrder = [
        "educational_framing", "fictional_framing", "hypothetical_framing", "authority_appeal",
        "emotional_manipulation", "gradual_escalation", "already_know_disclaimer", "misleading_context",
        "ambiguous_phrasing", "edge_cases", "factual_errors", "logical_fallacies", "contradictions",
        "incomplete_information",
    ]
}
