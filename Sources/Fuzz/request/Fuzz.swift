import SynthFuzz

#if FUZZING
/// libFuzzer's entry: one input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FuzzTargets.request(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
#else
/// Without libFuzzer: replays the files or directories named.
@main
struct Replay {
    static func main() throws {
        try FuzzTargets.replay(FuzzTargets.request, Array(CommandLine.arguments.dropFirst()))
    }
}
#endif
