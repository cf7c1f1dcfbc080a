import SynthFuzz

#if FUZZING
/// SwiftPM links an executable's `main` to `<module>_main`: in a fuzzing build, libFuzzer's driver.
@_cdecl("fuzz_request_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzMain.run(FuzzTargets.request, argc, argv)
}
#else
/// Without libFuzzer: replays the files or directories named.
@main
struct Replay {
    static func main() throws { try FuzzTargets.replay(FuzzTargets.request, Array(CommandLine.arguments.dropFirst())) }
}
#endif
