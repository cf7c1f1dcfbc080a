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

extension CallContext {
    /// Sends records of a stream (WatchJob or FetchSplits: both carry `Record record = 2`), many
    /// frames to one flush. The frames are encoded directly, byte for byte what SwiftProtobuf
    /// would write, without building a message per record.
    func sendRecords(_ records: some Sequence<(seq: UInt64, json: [UInt8])>) async throws {
        var buffers: [ByteBuffer] = []
        for r in records {
            buffers.append(writer.allocator.buffer(bytes: RecordFrame.encode(callID: callID, seq: r.seq, json: r.json)))
        }
        if !buffers.isEmpty { try await writer.outbound.write(contentsOf: buffers) }
    }
}

/// Frame { call_id = 1; message = 3 } holding a response { record = 2 } holding
/// Record { seq = 1; json = 2 }.
enum RecordFrame {
    static func varintSize(_ v: UInt64) -> Int {
        var n = 1, x = v
        while x >= 0x80 { x >>= 7; n += 1 }
        return n
    }

    static func putVarint(_ v: UInt64, _ out: inout [UInt8]) {
        var x = v
        while x >= 0x80 {
            out.append(UInt8(x & 0x7F) | 0x80)
            x >>= 7
        }
        out.append(UInt8(x))
    }

    static func encode(callID: UInt64, seq: UInt64, json: [UInt8]) -> [UInt8] {
        let record = (seq == 0 ? 0 : 1 + varintSize(seq)) + (json.isEmpty ? 0 : 1 + varintSize(UInt64(json.count)) + json.count)
        let response = 1 + varintSize(UInt64(record)) + record
        let frame = (callID == 0 ? 0 : 1 + varintSize(callID)) + 1 + varintSize(UInt64(response)) + response
        var out = [UInt8]()
        out.reserveCapacity(frame)
        if callID != 0 {
            out.append(0x08)
            putVarint(callID, &out)
        }
        out.append(0x1A)
        putVarint(UInt64(response), &out)
        out.append(0x12)
        putVarint(UInt64(record), &out)
        if seq != 0 {
            out.append(0x08)
            putVarint(seq, &out)
        }
        if !json.isEmpty {
            out.append(0x12)
            putVarint(UInt64(json.count), &out)
            out += json
        }
        return out
    }
}
