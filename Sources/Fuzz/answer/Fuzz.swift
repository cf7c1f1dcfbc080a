import SynthFuzz

#if FUZZING
/// SwiftPM links an executable's `main` to `<module>_main`: in a fuzzing build, libFuzzer's driver.
@_cdecl("fuzz_answer_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzMain.run(FuzzTargets.answer, argc, argv)
}
#else
/// Without libFuzzer: replays the files or directories named.
@main
struct Replay {
    static func main() throws { try FuzzTargets.replay(FuzzTargets.answer, Array(CommandLine.arguments.dropFirst())) }
}
#endif
