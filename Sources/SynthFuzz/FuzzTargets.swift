import Foundation
import NIOCore
import SwiftProtobuf
import SynthAPI
import SynthCore
import SynthEngine
import SynthProto
import SynthSpec
import SynthWire

/// What each fuzz target does with one input. The libFuzzer binaries (Sources/Fuzz) call these, and
/// so do the tests, on every saved input: a crash found once stays fixed without a fuzzing build.
/// A target must not crash, trap or run away on any input; where a property is cheap to state,
/// it checks it too.
public enum FuzzTargets {
    public static let all: [String: @Sendable ([UInt8]) -> Void] = [
        "frames": frames, "request": request, "answer": answer,
    ]

    /// The server's read of a connection's bytes: frames off the stream under the limit, each
    /// decoded as a Frame, and an open call's request decoded as its method's type, strictly.
    public static func frames(_ data: [UInt8]) {
        var buffer = ByteBufferAllocator().buffer(bytes: data)
        while true {
            let next: ByteBuffer?
            do {
                next = try FrameDecoder.nextFrame(from: &buffer, maxFrameSize: 1 << 20)
            } catch {
                return  // the connection would end here, with a status on call 0
            }
            guard var frame = next else { return }
            let bytes = frame.readBytes(length: frame.readableBytes) ?? []
            guard let decoded = try? PBFrame(serializedBytes: bytes) else { continue }
            // What decodes re-encodes to something that decodes to the same frame.
            if let again: [UInt8] = try? decoded.serializedBytes() {
                precondition((try? PBFrame(serializedBytes: again)) == decoded, "a frame changes when encoded again")
            }
            if case .open(let open)? = decoded.kind, let method = Methods.named(open.method),
               let type = Methods.requestType(method) {
                _ = try? decodeRequest(type, open.request, method)
            }
        }
    }

    static func decodeRequest<M: SwiftProtobuf.Message>(_ type: M.Type, _ bytes: Data, _ method: MethodInfo) throws -> M {
        try CallGate.decode(bytes, for: method)
    }

    /// A request body, as JSON or binary (the first byte says which).
    public static func request(_ data: [UInt8]) {
        SpecFuzz.request(data)
    }

    /// A provider's answer, then the model's text in it, per schema.
    public static func answer(_ data: [UInt8]) {
        EngineFuzz.answer(data)
    }

    /// The executables' main without libFuzzer: runs each file named (or every file of each
    /// directory named) through the target, and says how many.
    public static func replay(_ target: ([UInt8]) -> Void, _ paths: [String]) throws {
        var n = 0
        for path in paths {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw CocoaError(.fileNoSuchFile) }
            let files = isDir.boolValue
                ? try FileManager.default.contentsOfDirectory(atPath: path).sorted().map { "\(path)/\($0)" }
                : [path]
            for f in files {
                target(Array(try Data(contentsOf: URL(fileURLWithPath: f))))
                n += 1
            }
        }
        print("replayed \(n) inputs")
    }
}
