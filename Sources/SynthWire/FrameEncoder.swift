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

/// Writes each outbound payload as one frame, like `MessageToByteHandler(FrameEncoder)`, without
/// copying a large payload: its 4-byte length goes as a buffer of its own, in front of the payload
/// itself, and the socket gathers both in one write. Small payloads are still joined to their
/// length in one buffer.
public final class FrameOutboundHandler: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Payloads below this are copied behind their length rather than written separately.
    static let joinBelow = 16 * 1024
    let maxFrameSize: Int

    public init(maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize) {
        self.maxFrameSize = maxFrameSize
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let payload = unwrapOutboundIn(data)
        guard payload.readableBytes > 0 else {
            promise?.fail(WireError(.emptyFrame, "refusing to send an empty frame"))
            return
        }
        guard payload.readableBytes <= maxFrameSize else {
            promise?.fail(WireError.tooLarge(UInt32(clamping: payload.readableBytes), max: maxFrameSize))
            return
        }
        if payload.readableBytes < Self.joinBelow {
            var out = context.channel.allocator.buffer(capacity: FrameDecoder.prefixSize + payload.readableBytes)
            out.writeInteger(UInt32(payload.readableBytes), endianness: .big)
            out.writeImmutableBuffer(payload)
            context.write(wrapOutboundOut(out), promise: promise)
        } else {
            var head = context.channel.allocator.buffer(capacity: FrameDecoder.prefixSize)
            head.writeInteger(UInt32(payload.readableBytes), endianness: .big)
            context.write(wrapOutboundOut(head), promise: nil)
            context.write(wrapOutboundOut(payload), promise: promise)
        }
    }
}
