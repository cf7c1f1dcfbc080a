#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SynthConcurrency

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

/// A byte range of an open file that ends a frame, sent from the page cache with sendfile(2).
/// It owns its descriptor until `FrameOutboundHandler` takes it; a slice that is never written
/// closes the descriptor when it is released.
public final class FileSlice: Sendable {
    private let descriptor: Locked<CInt>
    public let offset: Int
    public let length: Int

    public init(descriptor: CInt, offset: Int, length: Int) {
        self.descriptor = Locked(descriptor)
        self.offset = offset
        self.length = length
    }

    /// The descriptor, once: the caller closes it from then on.
    func take() -> CInt? {
        descriptor.withLock { fd in
            defer { fd = -1 }
            return fd >= 0 ? fd : nil
        }
    }

    deinit {
        if let fd = take() { close(fd) }
    }
}

/// What a server writes: a whole frame payload, or a payload whose last bytes are a file slice
/// (a record batch's JSON lines), which go from the file to the socket without being copied in.
public enum OutboundFrame: Sendable {
    case payload(ByteBuffer)
    case withFileTail(ByteBuffer, FileSlice)
}

/// Writes each outbound payload as one frame, like `MessageToByteHandler(FrameEncoder)`, without
/// copying a large payload: its 4-byte length goes as a buffer of its own, in front of the payload
/// itself, and the socket gathers both in one write. Small payloads are still joined to their
/// length in one buffer. A frame with a file tail is its length and head, then a `FileRegion`.
public final class FrameOutboundHandler: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = OutboundFrame
    public typealias OutboundOut = IOData

    /// Payloads below this are copied behind their length rather than written separately.
    static let joinBelow = 16 * 1024
    let maxFrameSize: Int
    /// Whether a file tail may go as a `FileRegion` (sendfile). Not under TLS: the bytes must pass
    /// through the TLS handler, so the slice is read into a buffer (from the page cache, where
    /// the export that holds it was just checked) and written as one.
    let sendFile: Bool

    public init(maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize, sendFile: Bool = true) {
        self.maxFrameSize = maxFrameSize
        self.sendFile = sendFile
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .payload(let payload):
            guard check(payload.readableBytes, promise) else { return }
            if payload.readableBytes < Self.joinBelow {
                context.write(wrapOutboundOut(.byteBuffer(joined(payload, size: payload.readableBytes, context))), promise: promise)
            } else {
                var head = context.channel.allocator.buffer(capacity: FrameDecoder.prefixSize)
                head.writeInteger(UInt32(payload.readableBytes), endianness: .big)
                context.write(wrapOutboundOut(.byteBuffer(head)), promise: nil)
                context.write(wrapOutboundOut(.byteBuffer(payload)), promise: promise)
            }
        case .withFileTail(let head, let slice):
            let size = head.readableBytes + slice.length
            guard check(size, promise) else { return }
            guard let fd = slice.take() else {
                promise?.fail(WireError(.malformedFrame, "a file slice was written twice"))
                return
            }
            if !sendFile {
                defer { _ = Glibc.close(fd) }
                var out = joined(head, size: size, context)
                let read = out.writeWithUnsafeMutableBytes(minimumWritableBytes: slice.length) { buffer -> Int in
                    var done = 0
                    while done < slice.length {
                        let n = pread(fd, buffer.baseAddress! + done, slice.length - done, off_t(slice.offset + done))
                        if n < 0, errno == EINTR { continue }
                        if n <= 0 { break }
                        done += n
                    }
                    return done
                }
                guard read == slice.length else {
                    promise?.fail(WireError(.truncatedFrame, "an export file ended early (\(read) of \(slice.length) bytes)"))
                    return
                }
                context.write(wrapOutboundOut(.byteBuffer(out)), promise: promise)
                return
            }
            context.write(wrapOutboundOut(.byteBuffer(joined(head, size: size, context))), promise: nil)
            let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: fd)
            let region = FileRegion(fileHandle: handle, readerIndex: slice.offset, endIndex: slice.offset + slice.length)
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { _ in try? handle.close() }
            if let promise { written.futureResult.cascade(to: promise) }
            context.write(wrapOutboundOut(.fileRegion(region)), promise: written)
        }
    }

    private func check(_ size: Int, _ promise: EventLoopPromise<Void>?) -> Bool {
        guard size > 0 else {
            promise?.fail(WireError(.emptyFrame, "refusing to send an empty frame"))
            return false
        }
        guard size <= maxFrameSize else {
            promise?.fail(WireError.tooLarge(UInt32(clamping: size), max: maxFrameSize))
            return false
        }
        return true
    }

    /// The frame's length (`size`, which may count bytes still to come) and then `bytes`.
    private func joined(_ bytes: ByteBuffer, size: Int, _ context: ChannelHandlerContext) -> ByteBuffer {
        var out = context.channel.allocator.buffer(capacity: FrameDecoder.prefixSize + bytes.readableBytes)
        out.writeInteger(UInt32(size), endianness: .big)
        out.writeImmutableBuffer(bytes)
        return out
    }
}
