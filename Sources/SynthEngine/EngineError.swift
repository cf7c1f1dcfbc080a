/// A job that cannot start or go on.
public struct EngineError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable {
        case providerNotConfigured
        case invalidState
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
