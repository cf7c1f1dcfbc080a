import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SwiftProtobuf
import SynthAPI
import SynthProto
import SynthWire
import SynthConcurrency

/// A connection to synthd. Calls are multiplexed on it: each has its own call id, and answers are
/// routed back by id, so many calls may run at once from many tasks.
public final class SynthClient: Sendable {
    public let apiKey: String
    private let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private struct State {
        /// Open calls by id: where their answers go.
        var calls: [UInt64: AsyncThrowingStream<Data, Error>.Continuation] = [:]
        var nextCallID: UInt64 = 0
        /// Why the connection ended, once it has.
        var closedError: ClientError?
        var readerTask: Task<Void, Never>?
        var writerTask: Task<Void, Never>?
    }

    private let state = Locked(State())
    // Every outgoing frame goes through this one queue, so a call's cancel can never overtake its open.
    private let outgoing: AsyncStream<ByteBuffer>.Continuation

    init(channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
         inbound: NIOAsyncChannelInboundStream<ByteBuffer>, apiKey: String) {
        self.channel = channel
        self.outbound = outbound
        self.apiKey = apiKey
        let (queue, outgoing) = AsyncStream<ByteBuffer>.makeStream()
        self.outgoing = outgoing
        let reader = Task { await self.read(inbound) }
        let writer = Task { [outbound] in
            for await frame in queue {
                do {
                    try await outbound.write(frame)
                } catch {
                    break
                }
            }
        }
        state.withLock {
            $0.readerTask = reader
            $0.writerTask = writer
        }
    }

    /// Connects to `address`; a `tls:` address with `tls` (the CA that signed the server's
    /// certificate, else the system's roots; a client certificate and key for mutual TLS).
    public static func connect(_ address: Address, apiKey: String = "", maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize,
                               tls: TLSOptions = TLSOptions(), group: MultiThreadedEventLoopGroup = .singleton) async throws -> SynthClient {
        let bootstrap = ClientBootstrap(group: group).connectTimeout(.seconds(10))
        var secure: (context: NIOSSLContext, hostname: String?, handshake: EventLoopPromise<Void>)?
        if case .tls(let host, _) = address {
            // An IP address is checked against the certificate's IP names; a name is also sent as SNI.
            secure = (try tls.context(), host.isIPAddress ? nil : host, group.next().makePromise(of: Void.self))
        }
        let initializer: @Sendable (Channel) -> EventLoopFuture<NIOAsyncChannel<ByteBuffer, ByteBuffer>> = { ch in
            ch.eventLoop.makeCompletedFuture {
                if let secure {
                    try ch.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: secure.context, serverHostname: secure.hostname))
                    try ch.pipeline.syncOperations.addHandler(TLSHandshakeWatcher(promise: secure.handshake))
                }
                try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameSize: maxFrameSize)))
                try ch.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder(maxFrameSize: maxFrameSize)))
                return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch)
            }
        }
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            switch address {
            case .unix(let path):
                channel = try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: initializer)
            case .tcp(let host, let port), .tls(let host, let port):
                channel = try await bootstrap.connect(host: host, port: port, channelInitializer: initializer)
            }
        } catch {
            secure?.handshake.fail(error)
            throw ClientError(.unavailable, "cannot connect to synthd at \(address): \(error)")
        }
        if let secure {
            // A certificate the client does not trust fails here, before any key is sent.
            do {
                try await secure.handshake.futureResult.get()
            } catch {
                try? await channel.channel.close()
                throw ClientError(.unavailable, "the TLS handshake with synthd at \(address) failed: \(error)")
            }
        }
        // The channel's streams are taken apart once here: the reader task owns inbound.
        let (inbound, outbound) = try await channel.channel.eventLoop.submit { () -> (NIOAsyncChannelInboundStream<ByteBuffer>, NIOAsyncChannelOutboundWriter<ByteBuffer>) in
            (channel.inbound, channel.outbound)
        }.get()
        return SynthClient(channel: channel, outbound: outbound, inbound: inbound, apiKey: apiKey)
    }

    deinit {
        outgoing.finish()
        outbound.finish()
    }

    /// Closes the connection; calls still open end with UNAVAILABLE. Call it when done: the
    /// connection's reader keeps the client alive until then.
    public func close() async {
        let (reader, writer) = state.withLock { ($0.readerTask, $0.writerTask) }
        outgoing.finish()
        await writer?.value
        outbound.finish()
        try? await channel.channel.close()
        await reader?.value
    }

    private func read(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>) async {
        var failure = ClientError(.unavailable, "the connection to synthd closed")
        do {
            for try await payload in inbound {
                guard let frame = try? PBFrame(serializedBytes: Array(payload.readableBytesView)) else {
                    failure = ClientError(.internal, "synthd sent a frame that is not a valid Frame message")
                    break
                }
                route(frame)
                if frame.callID == 0, case .status(let s) = frame.kind {
                    failure = ClientError(s)
                    break
                }
            }
        } catch let e as WireError where e.code == .truncatedFrame {
            // The server went away in the middle of a frame (killed, say): the connection is
            // lost, as when it closes between frames, and a caller may connect again.
            failure = ClientError(.unavailable, "the connection to synthd closed in the middle of a frame")
        } catch let e as WireError {
            failure = ClientError(.internal, "protocol error from synthd: \(e.description)")
        } catch {
            failure = ClientError(.unavailable, "the connection to synthd failed: \(error)")
        }
        let open: [AsyncThrowingStream<Data, Error>.Continuation] = state.withLock {
            $0.closedError = failure
            let open = Array($0.calls.values)
            $0.calls.removeAll()
            return open
        }
        for c in open { c.finish(throwing: failure) }
        try? await channel.channel.close()
    }

    private func route(_ frame: PBFrame) {
        let c = state.withLock { $0.calls[frame.callID] }
        guard let c else { return }
        switch frame.kind {
        case .message(let data):
            c.yield(data)
        case .status(let status):
            _ = state.withLock { $0.calls.removeValue(forKey: frame.callID) }
            if status.code == .ok { c.finish() } else { c.finish(throwing: ClientError(status)) }
        default:
            break
        }
    }

    /// Opens a call and returns the raw response messages as they arrive. The stream ends after an
    /// OK status and throws `ClientError` for any other. Ending the iteration early cancels the call.
    public func call(_ method: String, request: some SwiftProtobuf.Message, timeout: Duration? = nil) -> AsyncThrowingStream<Data, Error> {
        let (stream, continuation) = AsyncThrowingStream<Data, Error>.makeStream()
        let (id, closed): (UInt64, ClientError?) = state.withLock {
            $0.nextCallID += 1
            if $0.closedError == nil { $0.calls[$0.nextCallID] = continuation }
            return ($0.nextCallID, $0.closedError)
        }
        if let closed {
            continuation.finish(throwing: closed)
            return stream
        }
        var frame = PBFrame()
        frame.callID = id
        frame.open.method = method
        frame.open.apiKey = apiKey
        if let timeout {
            let (s, a) = timeout.components
            frame.open.timeoutMs = UInt64(max(1, s * 1000 + a / 1_000_000_000_000_000))
        }
        do {
            frame.open.request = try request.serializedData()
        } catch {
            continuation.finish(throwing: ClientError(.invalidArgument, "cannot encode the request: \(error)"))
            return stream
        }
        continuation.onTermination = { [weak self] termination in
            guard case .cancelled = termination, let self else { return }
            // The consumer stopped listening: tell the server to stop the call.
            let stillOpen = self.state.withLock { $0.calls.removeValue(forKey: id) != nil }
            guard stillOpen else { return }
            var cancel = PBFrame()
            cancel.callID = id
            cancel.cancel = PBCancel()
            if let bytes: [UInt8] = try? cancel.serializedBytes() {
                self.outgoing.yield(ByteBuffer(bytes: bytes))
            }
        }
        let bytes: [UInt8]
        do {
            bytes = try frame.serializedBytes()
        } catch {
            continuation.finish(throwing: ClientError(.invalidArgument, "cannot encode the call: \(error)"))
            return stream
        }
        if case .terminated = outgoing.yield(ByteBuffer(bytes: bytes)) {
            _ = state.withLock { $0.calls.removeValue(forKey: id) }
            continuation.finish(throwing: ClientError(.unavailable, "the connection to synthd is closed"))
        }
        return stream
    }

    /// A unary call: exactly one response message.
    public func unary<Request, Response>(_ method: Method<Request, Response>, _ request: Request,
                                         timeout: Duration? = nil) async throws -> Response {
        var result: Response?
        for try await data in call(method.info.name, request: request, timeout: timeout) {
            result = try Response(serializedBytes: data)
        }
        guard let result else { throw ClientError(.internal, "\(method.info.name) ended without a response") }
        return result
    }

    /// A server-streaming call, decoded.
    public func stream<Request, Response>(_ method: Method<Request, Response>, _ request: Request,
                                          timeout: Duration? = nil) -> AsyncThrowingMapSequence<AsyncThrowingStream<Data, Error>, Response> {
        call(method.info.name, request: request, timeout: timeout).map { try Response(serializedBytes: $0) }
    }

    /// One job.
    public func getJob(_ id: String, timeout: Duration? = nil) async throws -> PBJob {
        try await unary(Methods.getJob, PBGetJobRequest.with { $0.jobID = id }, timeout: timeout).job
    }

    /// Cancels a job; returns it as it stands after the cancel.
    public func cancelJob(_ id: String, timeout: Duration? = nil) async throws -> PBJob {
        try await unary(Methods.cancelJob, PBCancelJobRequest.with { $0.jobID = id }, timeout: timeout).job
    }

    /// The server's state (no key needed).
    public func health(timeout: Duration? = nil) async throws -> PBHealthResponse {
        try await unary(Methods.health, PBHealthRequest(), timeout: timeout)
    }
}
