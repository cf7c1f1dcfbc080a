import Foundation
import Testing
import SynthFuzz

/// Every saved fuzz input through its target, in the normal test build: the seeds `make fuzz`
/// starts from, and each input that once found a defect (fuzz/regressions/<target>/, kept once the
/// defect is fixed). A target that crashes, traps or fails a check on one ends the test run.
@Suite struct FuzzReplayTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func inputs(_ dir: String, suffix: String = "") throws -> [[UInt8]] {
        let url = repo.appendingPathComponent(dir)
        guard FileManager.default.fileExists(atPath: url.path) else { return [] }
        return try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
            .filter { !$0.hasPrefix(".") && $0.hasSuffix(suffix) }
            .map { Array(try Data(contentsOf: url.appendingPathComponent($0))) }
    }

    @Test func frames() throws {
        let seeds = try Self.inputs("proto/testdata", suffix: ".frame")
        #expect(seeds.count >= 14)
        for input in seeds + (try Self.inputs("fuzz/regressions/frames")) { FuzzTargets.frames(input) }
    }

    @Test func requests() throws {
        // As the fuzzer's seeds: each documented example as a JSON body (first byte 0).
        let examples = try Self.inputs("tools/examples", suffix: ".json").map { [0] + $0 }
        #expect(examples.count >= 10)
        for input in examples + (try Self.inputs("fuzz/regressions/request")) { FuzzTargets.request(input) }
    }

    @Test func answers() throws {
        let seeds = try Self.inputs("fuzz/seeds/answer")
        #expect(seeds.count == 8)
        for input in seeds + (try Self.inputs("fuzz/regressions/answer")) { FuzzTargets.answer(input) }
    }
}
