import NIOCore
import SwiftProtobuf
import SynthProto

/// Who is calling and where the answers go.
public struct CallContext: Sendable {
    public let callID: UInt64
    public let method: String
    /// Empty for the public methods.
    public let org: String
    public let keyID: String
    let writer: FrameWriter

    /// Sends one response message of the call.
    func send(_ message: some SwiftProtobuf.Message) async throws {
        var frame = PBFrame()
        frame.callID = callID
        frame.message = try message.serializedData()
        try await writer.write(frame)
    }
}

/// Serialises frames onto a connection. Many calls write at once; each frame goes as one write,
/// and `write` suspends while the socket is not writable, so a slow reader holds back its
/// writers instead of growing a buffer.
struct FrameWriter: Sendable {
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let allocator: ByteBufferAllocator

    func write(_ frame: PBFrame) async throws {
        let bytes: [UInt8] = try frame.serializedBytes()
        try await outbound.write(allocator.buffer(bytes: bytes))
    }
}
