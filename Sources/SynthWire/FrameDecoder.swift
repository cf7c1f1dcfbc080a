import NIOCore

/// Splits a byte stream into frames: a 4-byte big-endian length N, then N bytes.
///
/// The length is checked against `maxFrameSize` as soon as the 4 prefix bytes are in, before any
/// buffer for the body is reserved, so a hostile length costs nothing.
public struct FrameDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = ByteBuffer

    /// 16 MiB.
    public static let defaultMaxFrameSize = 16 * 1024 * 1024
    public static let prefixSize = 4

    public let maxFrameSize: Int

    public init(maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize) {
        self.maxFrameSize = maxFrameSize
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.nextFrame(from: &buffer, maxFrameSize: maxFrameSize) else {
            return .needMoreData
        }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            let pending = buffer.readableBytes
            buffer.moveReaderIndex(forwardBy: pending)
            throw WireError(.truncatedFrame, "connection closed with \(pending) bytes of an incomplete frame")
        }
        return .needMoreData
    }

    /// Takes one whole frame off the front of `buffer`, or returns nil and leaves it untouched
    /// when the frame is not complete yet. Pure, so that it can be tested without a channel.
    public static func nextFrame(from buffer: inout ByteBuffer, maxFrameSize: Int) throws -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else {
            return nil
        }
        if length == 0 {
            throw WireError(.emptyFrame, "frame length is zero")
        }
        if Int(length) > maxFrameSize {
            throw WireError.tooLarge(length, max: maxFrameSize)
        }
        guard buffer.readableBytes >= prefixSize + Int(length) else {
            return nil
        }
        buffer.moveReaderIndex(forwardBy: prefixSize)
        return buffer.readSlice(length: Int(length))
    }
}
