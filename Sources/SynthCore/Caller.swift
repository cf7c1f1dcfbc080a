/// Who is calling: the org and the key a call authenticated with, and what the key may do.
/// Public methods have none.
public struct Caller: Sendable, Hashable {
    public let org: String
    public let keyID: String
    /// The key may call the read methods only (GetJob, ListJobs, WatchJob, FetchSplits,
    /// GetQualityReport, GetManifest).
    public let readOnly: Bool

    public init(org: String, keyID: String, readOnly: Bool = false) {
        self.org = org
        self.keyID = keyID
        self.readOnly = readOnly
    }
}
