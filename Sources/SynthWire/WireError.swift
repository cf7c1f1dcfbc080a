import NIOCore

/// A framing violation. The connection that produced it cannot be trusted to stay in sync, so the
/// peer that sees one reports it and closes.
public struct WireError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// The length prefix is above the configured maximum.
        case frameTooLarge = "FRAME_TOO_LARGE"
        /// The length prefix is zero: a frame always carries a message.
        case emptyFrame = "EMPTY_FRAME"
        /// The connection ended in the middle of a frame.
        case truncatedFrame = "TRUNCATED_FRAME"
        /// The bytes of a frame are not a valid message.
        case malformedFrame = "MALFORMED_FRAME"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    static func tooLarge(_ length: UInt32, max: Int) -> WireError {
        WireError(.frameTooLarge, "frame of \(length) bytes is above the maximum of \(max) bytes")
    }
}
