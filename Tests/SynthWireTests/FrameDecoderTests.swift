import NIOCore
import NIOEmbedded
import Testing
@testable import SynthWire

@Suite struct FrameDecoderTests {
    static func frames(_ payloads: [[UInt8]]) -> [UInt8] {
        var out = ByteBuffer()
        for p in payloads { try! FrameEncoder.encode(ByteBuffer(bytes: p), into: &out, maxFrameSize: 1 << 20) }
        return Array(out.readableBytesView)
    }

    static let payloads: [[UInt8]] = [[1], Array(repeating: 7, count: 300), Array(0...255), [9, 9, 9]]

    /// Feeds `chunks` through a real ByteToMessageHandler and returns what came out, or the error.
    static func decode(_ chunks: [[UInt8]], max: Int = 1 << 20) -> (frames: [[UInt8]], error: Error?) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maxFrameSize: max)))
        var error: Error?
        for c in chunks {
            do {
                try channel.writeInbound(ByteBuffer(bytes: c))
            } catch let e {
                error = e
                break
            }
        }
        var out: [[UInt8]] = []
        while let b = try? channel.readInbound(as: ByteBuffer.self) { out.append(Array(b.readableBytesView)) }
        if error == nil {
            do { _ = try channel.finish() } catch let e { error = e }
        }
        return (out, error)
    }

    @Test func wholeStreamAtOnce() {
        let r = Self.decode([Self.frames(Self.payloads)])
        #expect(r.error == nil)
        #expect(r.frames == Self.payloads)
    }

    @Test func byteByByte() {
        let r = Self.decode(Self.frames(Self.payloads).map { [$0] })
        #expect(r.error == nil)
        #expect(r.frames == Self.payloads)
    }

    @Test func splitAtEveryOffset() {
        let bytes = Self.frames(Self.payloads)
        for cut in 0...bytes.count {
            let r = Self.decode([Array(bytes[..<cut]), Array(bytes[cut...])])
            #expect(r.error == nil, "cut at \(cut)")
            #expect(r.frames == Self.payloads, "cut at \(cut)")
        }
    }

    @Test func oversizedLengthIsRefusedBeforeTheBodyArrives() {
        // Only the 4-byte prefix is sent: the decoder must refuse on the length alone.
        let r = Self.decode([[0x00, 0x10, 0x00, 0x01]], max: 1 << 20)
        let e = r.error as? WireError
        #expect(e?.code == .frameTooLarge)
        #expect(e?.message.contains("1048577") == true)
        #expect(r.frames.isEmpty)
    }

    @Test func hostileLengthDoesNotAllocate() throws {
        // 4 GiB - 1: refused by the pure function without touching more than the prefix.
        var buffer = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3])
        #expect(throws: WireError.self) { try FrameDecoder.nextFrame(from: &buffer, maxFrameSize: FrameDecoder.defaultMaxFrameSize) }
        #expect(buffer.readerIndex == 0)
    }

    @Test func zeroLengthIsRefused() {
        let r = Self.decode([[0, 0, 0, 0]])
        #expect((r.error as? WireError)?.code == .emptyFrame)
    }

    @Test func truncatedFrameAtCloseIsReported() {
        let bytes = Self.frames([[1, 2, 3, 4, 5]])
        let r = Self.decode([Array(bytes.dropLast(2))])
        #expect(r.frames.isEmpty)
        #expect((r.error as? WireError)?.code == .truncatedFrame)
    }

    @Test func partialPrefixWaits() throws {
        var buffer = ByteBuffer(bytes: [0, 0])
        #expect(try FrameDecoder.nextFrame(from: &buffer, maxFrameSize: 100) == nil)
        #expect(buffer.readableBytes == 2)
    }

    @Test func encoderRefusesEmptyAndOversized() {
        var out = ByteBuffer()
        #expect(throws: WireError.self) { try FrameEncoder.encode(ByteBuffer(), into: &out, maxFrameSize: 10) }
        #expect(throws: WireError.self) { try FrameEncoder.encode(ByteBuffer(bytes: Array(repeating: 1, count: 11)), into: &out, maxFrameSize: 10) }
        #expect(out.readableBytes == 0)
    }

    @Test func addresses() {
        #expect(Address("unix:/tmp/a.sock") == .unix("/tmp/a.sock"))
        #expect(Address("127.0.0.1:7000") == .tcp(host: "127.0.0.1", port: 7000))
        #expect(Address("[::1]:80") == .tcp(host: "::1", port: 80))
        #expect(Address("nonsense") == nil)
        #expect(Address("host:99999") == nil)
        #expect(Address("unix:") == nil)
    }
}
