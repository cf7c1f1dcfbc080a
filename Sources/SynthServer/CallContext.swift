import NIOCore
import SwiftProtobuf
import SynthConcurrency
import SynthCore
import SynthProto
import SynthWire

/// Who is calling and where the answers go.
public struct CallContext: Sendable {
    public let callID: UInt64
    public let method: String
    /// Empty (no org, no key) for the open methods.
    public let caller: Caller
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
    let outbound: NIOAsyncChannelOutboundWriter<OutboundFrame>
    let allocator: ByteBufferAllocator
    let maxFrameSize: Int
    /// Held by a stream call while it builds and writes a batch of records: all of a connection's
    /// calls share one socket, so one batch at a time is as fast, and a reader that stops reading
    /// holds back one batch however many streams it opened, instead of one per stream.
    let bulk = AsyncSemaphore(1)

    /// Throws RESOURCE_EXHAUSTED / RESPONSE_TOO_LARGE, having sent nothing, when the frame is
    /// above the connection's limit: the call then ends with that status, which the client hears,
    /// instead of a frame the encoder would refuse and a connection that goes quiet.
    func write(_ frame: PBFrame) async throws {
        let bytes: [UInt8] = try frame.serializedBytes()
        guard bytes.count <= maxFrameSize else { throw Self.tooLarge(bytes.count, maxFrameSize) }
        try await outbound.write(.payload(allocator.buffer(bytes: bytes)))
    }

    static let tooLargeCode = "RESPONSE_TOO_LARGE"

    static func tooLarge(_ size: Int, _ limit: Int) -> RPCError {
        RPCError(.resourceExhausted, "the answer is \(size) bytes, above the frame limit of \(limit) bytes (server.max_frame_size)",
                 errorCode: tooLargeCode)
    }
}

extension CallContext {
    /// Sends records of a stream (WatchJob or FetchSplits: both carry `Record record = 2`), many
    /// frames to one flush. The frames are encoded directly, byte for byte what SwiftProtobuf
    /// would write, without building a message per record.
    func sendRecords(_ records: some Sequence<(seq: UInt64, json: [UInt8])>) async throws {
        var buffers: [OutboundFrame] = []
        for r in records {
            buffers.append(.payload(writer.allocator.buffer(bytes: RecordFrame.encode(callID: callID, seq: r.seq, json: r.json))))
        }
        if !buffers.isEmpty { try await writer.outbound.write(contentsOf: buffers) }
    }

    /// Runs `body` (which builds and sends a batch of records) holding the connection's bulk permit.
    func bulk<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await writer.bulk.withPermit(body)
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

extension CallContext {
    /// Sends a frame payload made elsewhere (a record batch).
    func sendPayload(_ payload: ByteBuffer) async throws {
        try await writer.outbound.write(.payload(payload))
    }

    /// Sends a frame whose last bytes come straight from a file (a record batch from an export).
    func sendPayload(_ head: ByteBuffer, fileTail: FileSlice) async throws {
        try await writer.outbound.write(.withFileTail(head, fileTail))
    }
}

/// Builds one frame of a record batch in place: Frame { call_id = 1; message = 3 } holding a
/// response { batch = 3 } (WatchJobResponse and FetchSplitsResponse alike) holding
/// RecordBatch { first_seq = 1; last_seq = 2; count = 3; jsonl = 4 }. The JSON lines are copied
/// once, from the database into the frame; the headers, whose lengths depend on them, are written
/// into room kept in front of them.
public struct RecordBatchBuilder {
    /// The most the three headers take: varints of at most 10 bytes, each behind a 1-byte tag.
    public static let headroom = 64
    /// What a client may ask for, as the proto says.
    static let sizes: ClosedRange<UInt32> = 4096...8_388_608

    private(set) var buffer: ByteBuffer
    private(set) var first: UInt64 = 0
    private(set) var last: UInt64 = 0
    private(set) var count: UInt32 = 0
    let limit: Int

    /// `requested` is the call's batch_bytes; `maxFrameSize` the connection's frame limit.
    init(allocator: ByteBufferAllocator, requested: UInt32, maxFrameSize: Int) {
        limit = Self.limit(requested: requested, maxFrameSize: maxFrameSize)
        buffer = allocator.buffer(capacity: Self.headroom + limit + 1024)
        buffer.moveWriterIndex(forwardBy: Self.headroom)
        buffer.moveReaderIndex(forwardBy: Self.headroom)
    }

    /// The most JSON-line bytes in one batch (a single larger record still goes, alone).
    public static func limit(requested: UInt32, maxFrameSize: Int) -> Int {
        let size = Int(min(max(requested, sizes.lowerBound), sizes.upperBound))
        return max(1, min(size, maxFrameSize - headroom))
    }

    /// Adds a record's line unless the batch is full. An empty batch takes any record, so a record
    /// above the batch size travels alone.
    mutating func add(seq: UInt64, json: UnsafeRawBufferPointer) -> Bool {
        if count > 0, buffer.readableBytes + json.count + 1 > limit { return false }
        buffer.writeBytes(json)
        buffer.writeInteger(UInt8(0x0A))
        if count == 0 { first = seq }
        last = seq
        count += 1
        return true
    }

    /// The frame payload, made in place: the builder is done after this. `sequenced` false leaves
    /// first_seq and last_seq out (split order).
    mutating func payload(callID: UInt64, sequenced: Bool) -> ByteBuffer {
        let head = Self.head(callID: callID, first: sequenced ? first : 0, last: sequenced ? last : 0, count: UInt64(count),
                             jsonlBytes: buffer.readableBytes)
        let start = buffer.readerIndex - head.count
        buffer.setBytes(head, at: start)
        buffer.moveReaderIndex(to: start)
        return buffer
    }

    /// Everything of a record-batch frame's payload before its JSON lines: the Frame, response
    /// and RecordBatch headers, and the fields before `jsonl` (0 leaves a field out).
    static func head(callID: UInt64, first: UInt64, last: UInt64, count: UInt64, jsonlBytes: Int) -> [UInt8] {
        var batch: [UInt8] = []
        if first != 0 {
            batch.append(0x08)
            RecordFrame.putVarint(first, &batch)
        }
        if last != 0 {
            batch.append(0x10)
            RecordFrame.putVarint(last, &batch)
        }
        if count != 0 {
            batch.append(0x18)
            RecordFrame.putVarint(count, &batch)
        }
        batch.append(0x22)
        RecordFrame.putVarint(UInt64(jsonlBytes), &batch)
        let batchSize = batch.count + jsonlBytes
        var head: [UInt8] = []
        if callID != 0 {
            head.append(0x08)
            RecordFrame.putVarint(callID, &head)
        }
        let response = 1 + RecordFrame.varintSize(UInt64(batchSize)) + batchSize
        head.append(0x1A)
        RecordFrame.putVarint(UInt64(response), &head)
        head.append(0x1A)
        RecordFrame.putVarint(UInt64(batchSize), &head)
        return head + batch
    }
}
