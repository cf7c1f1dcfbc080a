/// synthd's version: what Health reports and every manifest records.
public enum SynthVersion {
    public static let current = "0.1.0"
}
