/// synthd's version: what Health reports and every manifest records.
public enum SynthVersion {
    public static let current = "0.3.0"
}

/// A key's lifetime as people write it: `90s`, `45m`, `12h`, `30d`, `8w`.
public enum Lifetime {
    /// The seconds `text` stands for, or nil when it is not a whole number and one of s, m, h, d, w.
    public static func seconds(_ text: String) -> Int64? {
        guard let unit = text.last, let n = Int64(text.dropLast()), n > 0 else { return nil }
        let scale: Int64
        switch unit {
        case "s": scale = 1
        case "m": scale = 60
        case "h": scale = 3_600
        case "d": scale = 86_400
        case "w": scale = 7 * 86_400
        default: return nil
        }
        let (v, overflow) = n.multipliedReportingOverflow(by: scale)
        return overflow ? nil : v
    }
}
