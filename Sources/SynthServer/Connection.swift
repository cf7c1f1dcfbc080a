import Foundation
import Logging
import NIOCore
import SynthProto
import SynthWire

/// One client connection: reads frames, runs each call as its own child task, writes the
/// answers. Its errors are its own: they end this connection and nothing else.
struct Connection {
    let channel: NIOAsyncChannel<ByteBuffer, OutboundFrame>
    let server: Server

    func run() async {
        let logger = server.logger
        do {
            try await channel.executeThenClose { inbound, outbound in
                let writer = FrameWriter(outbound: outbound, allocator: channel.channel.allocator)
                let state = ConnectionState()
                server.register(state)
                defer { server.unregister(state) }
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { await idleWatchdog(state) }
                    do {
                        for try await payload in inbound {
                            state.touch()
                            let frame: PBFrame
                            do {
                                frame = try PBFrame(serializedBytes: Array(payload.readableBytesView))
                            } catch {
                                try await sendConnectionStatus(writer, .invalidArgument, "MALFORMED_FRAME", "a frame is not a valid Frame message")
                                break
                            }
                            try await dispatch(frame, writer: writer, state: state, group: &group)
                        }
                    } catch let e as WireError {
                        let code: PBStatusCode = e.code == .frameTooLarge ? .resourceExhausted : .invalidArgument
                        try? await sendConnectionStatus(writer, code, e.code.rawValue, e.message)
                    }
                    // The client is gone or broke the protocol: stop what it started.
                    group.cancelAll()
                }
            }
        } catch {
            logger.debug("connection ended", metadata: ["error": "\(error)"])
        }
    }

    func dispatch(_ frame: PBFrame, writer: FrameWriter, state: ConnectionState,
                  group: inout ThrowingDiscardingTaskGroup<Error>) async throws {
        let id = frame.callID
        switch frame.kind {
        case .open(let open):
            guard id != 0 else {
                try await sendStatus(writer, id, RPCError(.invalidArgument, "call id 0 is reserved").status)
                return
            }
            guard !server.service.isStopping else {
                try await sendStatus(writer, id, Service.stoppingStatus)
                return
            }
            guard let control = state.open(id, limit: server.config.maxCallsPerConnection) else {
                let why = state.isOpen(id) ? "call id \(id) is already open on this connection" :
                    "too many open calls on this connection (at most \(server.config.maxCallsPerConnection))"
                try await sendStatus(writer, id, RPCError(state.isOpen(id) ? .invalidArgument : .resourceExhausted, why).status)
                return
            }
            let service = server.service
            group.addTask {
                let status = await Self.runCall(open, id: id, control: control, service: service, writer: writer)
                state.close(id)
                try? await sendStatus(writer, id, status)
            }
        case .cancel:
            state.cancel(id)
        case .message, .status, .none:
            try await sendStatus(writer, id, RPCError(.invalidArgument, "a client may send only open and cancel frames").status)
        }
    }

    /// Runs one call to its final status: the handler's, CANCELLED when the client cancels, or
    /// DEADLINE_EXCEEDED when its deadline passes first.
    static func runCall(_ open: PBCallOpen, id: UInt64, control: CallControl, service: Service, writer: FrameWriter) async -> PBStatus {
        await withTaskGroup(of: PBStatus?.self) { g in
            g.addTask {
                do {
                    try await service.handle(open, callID: id, writer: writer)
                    return PBStatus()
                } catch {
                    if Task.isCancelled, control.isCancelled { return nil }
                    if Task.isCancelled, service.isStopping { return Service.stoppingStatus }
                    return RPCError.from(error).status
                }
            }
            g.addTask {
                await control.waitCancelled()
                if Task.isCancelled { return nil }
                return control.byServer ? Service.stoppingStatus : RPCError(.cancelled, "call cancelled by the client").status
            }
            if open.timeoutMs > 0 {
                let timeout = open.timeoutMs
                g.addTask {
                    do {
                        try await Task.sleep(for: .milliseconds(Int64(min(timeout, UInt64(Int64.max / 1_000_000)))))
                        return RPCError(.deadlineExceeded, "deadline of \(timeout) ms exceeded").status
                    } catch {
                        return nil
                    }
                }
            }
            var result: PBStatus?
            while result == nil, let next = await g.next() {
                result = next
            }
            g.cancelAll()
            return result ?? (service.isStopping ? Service.stoppingStatus : RPCError(.cancelled, "call cancelled").status)
        }
    }

    func idleWatchdog(_ state: ConnectionState) async {
        let timeout = server.config.idleTimeout
        let tick = min(timeout / 4, .seconds(1))
        while !Task.isCancelled {
            try? await Task.sleep(for: tick)
            if state.isIdle(for: timeout) {
                server.logger.debug("closing idle connection")
                try? await channel.channel.close()
                return
            }
        }
    }
}

func sendStatus(_ writer: FrameWriter, _ id: UInt64, _ status: PBStatus) async throws {
    var frame = PBFrame()
    frame.callID = id
    frame.status = status
    try await writer.write(frame)
}

/// A status on call 0: the connection broke the protocol and is about to be closed.
func sendConnectionStatus(_ writer: FrameWriter, _ code: PBStatusCode, _ errorCode: String, _ message: String) async throws {
    try await sendStatus(writer, 0, RPCError(code, message, errorCode: errorCode).status)
}

/// The open calls of one connection and when it last saw traffic.
final class ConnectionState: @unchecked Sendable {
    private let lock = NSLock()
    private var calls: [UInt64: CallControl] = [:]
    private var lastActivity = ContinuousClock.now

    func touch() { lock.withLock { lastActivity = .now } }

    func open(_ id: UInt64, limit: Int) -> CallControl? {
        lock.withLock {
            guard calls[id] == nil, calls.count < limit else { return nil }
            let c = CallControl()
            calls[id] = c
            return c
        }
    }

    func isOpen(_ id: UInt64) -> Bool { lock.withLock { calls[id] != nil } }

    func close(_ id: UInt64) {
        lock.withLock {
            calls[id] = nil
            lastActivity = .now
        }
    }

    func cancel(_ id: UInt64) {
        let c = lock.withLock { calls[id] }
        c?.cancel()
    }

    func isIdle(for timeout: Duration) -> Bool {
        lock.withLock { calls.isEmpty && ContinuousClock.now - lastActivity > timeout }
    }

    /// The server is stopping: every open call ends with UNAVAILABLE (SHUTTING_DOWN).
    func endCallsForShutdown() {
        for c in lock.withLock({ Array(calls.values) }) { c.cancel(byServer: true) }
    }

    var openCalls: Int { lock.withLock { calls.count } }
}

/// Lets a Cancel frame reach the task running its call.
final class CallControl: @unchecked Sendable {
    private let lock = NSLock()
    private var cancelled = false
    private var server = false
    private let stream: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    init() {
        (stream, continuation) = AsyncStream<Void>.makeStream()
    }

    var isCancelled: Bool { lock.withLock { cancelled } }
    /// Cancelled because the server is stopping, not by the client.
    var byServer: Bool { lock.withLock { server } }

    func cancel(byServer: Bool = false) {
        lock.withLock {
            cancelled = true
            server = server || byServer
        }
        continuation.finish()
    }

    /// Returns when the client cancels, or when the waiting task is cancelled.
    func waitCancelled() async {
        for await _ in stream {}
    }
}
