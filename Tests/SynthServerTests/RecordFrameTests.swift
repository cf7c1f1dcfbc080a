import Foundation
import SwiftProtobuf
import SynthProto
import Testing
@testable import SynthServer

@Suite struct RecordFrameTests {
    @Test(arguments: [(UInt64(1), UInt64(1), 1), (7, 127, 200), (300, 128, 5000), (UInt64.max, 1 << 40, 70000), (2, 99, 0)])
    func directEncodingEqualsSwiftProtobuf(callID: UInt64, seq: UInt64, size: Int) throws {
        let json = [UInt8]((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        var watch = PBWatchJobResponse()
        watch.record.seq = seq
        watch.record.json = Data(json)
        var frame = PBFrame()
        frame.callID = callID
        frame.message = try watch.serializedData()
        let expected: [UInt8] = try frame.serializedBytes()
        #expect(RecordFrame.encode(callID: callID, seq: seq, json: json) == expected)
        // FetchSplits carries its record under the same field number.
        var fetch = PBFetchSplitsResponse()
        fetch.record.seq = seq
        fetch.record.json = Data(json)
        let decoded = try PBFetchSplitsResponse(serializedBytes: try PBFrame(serializedBytes: expected).message)
        #expect(decoded == fetch)
    }
}
