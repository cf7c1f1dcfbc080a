/// A job that cannot start or go on.
public struct EngineError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable {
        case providerNotConfigured
        case invalidState
        /// The generator could not be reached for the configured time.
        case providerUnreachable
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
