/// Who is calling: the org and the key a call authenticated with. Public methods have none.
public struct Caller: Sendable, Hashable {
    public let org: String
    public let keyID: String

    public init(org: String, keyID: String) {
        self.org = org
        self.keyID = keyID
    }
}
