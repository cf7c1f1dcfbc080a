import NIOCore

/// Writes each outbound payload as one frame: its 4-byte big-endian length, then the bytes.
public struct FrameEncoder: MessageToByteEncoder, Sendable {
    public typealias OutboundIn = ByteBuffer

    public let maxFrameSize: Int

    public init(maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize) {
        self.maxFrameSize = maxFrameSize
    }

    public func encode(data: ByteBuffer, out: inout ByteBuffer) throws {
        try Self.encode(data, into: &out, maxFrameSize: maxFrameSize)
    }

    /// Appends one frame holding `payload` to `out`.
    public static func encode(_ payload: ByteBuffer, into out: inout ByteBuffer, maxFrameSize: Int) throws {
        guard payload.readableBytes > 0 else {
            throw WireError(.emptyFrame, "refusing to send an empty frame")
        }
        guard payload.readableBytes <= maxFrameSize else {
            throw WireError.tooLarge(UInt32(clamping: payload.readableBytes), max: maxFrameSize)
        }
        out.reserveCapacity(out.readableBytes + FrameDecoder.prefixSize + payload.readableBytes)
        out.writeInteger(UInt32(payload.readableBytes), endianness: .big)
        out.writeImmutableBuffer(payload)
    }
}
