#if FUZZING
/// libFuzzer's side of a fuzz executable (built by tools/fuzz with -DFUZZING): the executable's
/// main hands its target to `FuzzMain.run`, which runs libFuzzer's driver on it.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// Set once, before the driver starts, and only read after.
nonisolated(unsafe) private var target: ([UInt8]) -> Void = { _ in }

/// libFuzzer's entry: one input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    target(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

public enum FuzzMain {
    public static func run(_ body: @escaping ([UInt8]) -> Void, _ argc: CInt,
                           _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
        target = body
        var argc = argc
        var argv = argv
        return LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput)
    }
}
#endif
