import NIOCore
import Synchronization

/// Splits a byte stream into frames: a 4-byte big-endian length N, then N bytes.
///
/// The length is checked against `maxFrameSize` as soon as the 4 prefix bytes are in, before any
/// buffer for the body is reserved, so a hostile length costs nothing.
public struct FrameDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = ByteBuffer

    /// 16 MiB.
    public static let defaultMaxFrameSize = 16 * 1024 * 1024
    public static let prefixSize = 4

    /// The limit, which its owner may raise while the connection runs (a server raises it once the
    /// connection has authenticated).
    public let limit: FrameSizeLimit

    public var maxFrameSize: Int { limit.current }

    public init(maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize) {
        self.limit = FrameSizeLimit(maxFrameSize)
    }

    public init(limit: FrameSizeLimit) {
        self.limit = limit
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let next: ByteBuffer?
        do {
            next = try Self.nextFrame(from: &buffer, maxFrameSize: limit.current)
        } catch let e as WireError where e.code == .frameTooLarge && !limit.isRaised {
            throw WireError(.frameTooLarge, e.message + " (\(limit.full) once a call on this connection has authenticated with a valid key)")
        }
        guard let frame = next else {
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

/// A frame size limit that can change while a connection runs: small until the connection has
/// proved it holds a valid key, then the full limit.
public final class FrameSizeLimit: Sendable {
    private let value: Atomic<Int>
    public let full: Int

    /// Starts at `initial` (at most `full`); `raise()` moves it to `full`.
    public init(_ initial: Int, full: Int? = nil) {
        self.full = full ?? initial
        value = Atomic(min(initial, full ?? initial))
    }

    public var current: Int { value.load(ordering: .relaxed) }
    public var isRaised: Bool { current == full }

    public func raise() { value.store(full, ordering: .relaxed) }
}
