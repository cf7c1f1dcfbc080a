import Foundation
import SynthConcurrency
import Logging
import NIOCore
import SynthAPI
import SynthCore
import SynthMetrics
import SynthProto
import SynthWire

/// One client connection: reads frames, runs each call as its own child task, writes the
/// answers. Its errors are its own: they end this connection and nothing else.
struct Connection {
    let channel: NIOAsyncChannel<ByteBuffer, OutboundFrame>
    let limit: FrameSizeLimit
    let server: Server

    func run() async {
        let logger = server.logger
        do {
            try await channel.executeThenClose { inbound, outbound in
                let writer = FrameWriter(outbound: outbound, allocator: channel.channel.allocator, maxFrameSize: server.config.maxFrameSize)
                let state = ConnectionState(limit: limit)
                guard server.register(state) else {
                    logger.warning("refusing a connection: the server has its maximum open", metadata: ["max": "\(server.config.maxConnections)"])
                    try? await sendConnectionStatus(writer, .resourceExhausted, "TOO_MANY_CONNECTIONS",
                                                    "the server has \(server.config.maxConnections) connections open, its maximum; retry later")
                    return
                }
                defer {
                    server.unregister(state)
                    if state.streamed { MemoryTrim.afterStreams() }
                }
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { await idleWatchdog(state) }
                    var clean = false
                    do {
                        var malformed = false
                        for try await payload in inbound {
                            state.touch()
                            let frame: PBFrame
                            do {
                                frame = try PBFrame(serializedBytes: Array(payload.readableBytesView))
                            } catch {
                                try await sendConnectionStatus(writer, .invalidArgument, "MALFORMED_FRAME", "a frame is not a valid Frame message")
                                malformed = true
                                break
                            }
                            try await dispatch(frame, writer: writer, state: state, group: &group)
                        }
                        // The client closed its side at a frame boundary: it may still be reading.
                        clean = !malformed && !Task.isCancelled
                    } catch let e as WireError {
                        let code: PBStatusCode = e.code == .frameTooLarge ? .resourceExhausted : .invalidArgument
                        try? await sendConnectionStatus(writer, code, e.code.rawValue, e.message)
                    }
                    // A half-closed client gets the answers of the calls it opened; one that broke
                    // the protocol gets its calls stopped.
                    if clean { await state.waitForCalls() }
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
            let method = Methods.named(open.method)
            if method?.kind == .serverStreaming { state.streamed = true }
            group.addTask(priority: method?.priority) {
                let status = await Self.runCall(open, id: id, control: control, service: service, writer: writer, connection: state)
                state.close(id)
                try? await sendStatus(writer, id, status)
                state.answered()
            }
        case .cancel:
            state.cancel(id)
        case .message, .status, .none:
            try await sendStatus(writer, id, RPCError(.invalidArgument, "a client may send only open and cancel frames").status)
        }
    }

    /// Runs one call to its final status: the handler's, CANCELLED when the client cancels, or
    /// DEADLINE_EXCEEDED when its deadline passes first.
    static func runCall(_ open: PBCallOpen, id: UInt64, control: CallControl, service: Service, writer: FrameWriter,
                        connection: ConnectionState) async -> PBStatus {
        let caller = CallerSlot()
        let started = ContinuousClock.now
        return await withTaskGroup(of: PBStatus?.self) { g in
            g.addTask {
                do {
                    try await service.handle(open, callID: id, writer: writer) { who in
                        caller.value = who
                        connection.authenticated()
                    }
                    return PBStatus()
                } catch {
                    if Task.isCancelled, control.isCancelled { return nil }
                    if Task.isCancelled, service.isStopping { return Service.stoppingStatus }
                    let failure = RPCError.from(error)
                    let status = failure.status
                    if let closed = error as? ChannelError, closed == .ioOnClosedChannel || closed == .alreadyClosed {
                        // The client closed the connection while its call still wrote (it stopped
                        // reading a stream, say): its leaving, not a fault of the server.
                        service.logger.debug("the client went away during a call", metadata: [
                            "method": "\(open.method.prefix(64))", "call": "\(id)"])
                    } else if status.errorCode == FrameWriter.tooLargeCode {
                        service.logger.warning("an answer was too large for a frame", metadata: [
                            "method": "\(open.method.prefix(64))", "call": "\(id)", "detail": "\(status.message)"])
                    } else if failure.isServerFault {
                        // The client hears a safe sentence; the log keeps what really happened.
                        service.logger.error("call failed", metadata: [
                            "method": "\(open.method.prefix(64))", "call": "\(id)", "org": "\(caller.value?.org ?? "-")",
                            "status": "\(status.code)", "message": "\(status.message)", "cause": "\(failure.cause.map { "\($0)" } ?? "-")"])
                    }
                    return status
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
            let status = result ?? (service.isStopping ? Service.stoppingStatus : RPCError(.cancelled, "call cancelled").status)
            // The access log, at debug level (its metadata is not even built above it).
            let took = ContinuousClock.now - started
            // Metrics: a method name from the table, never what the client wrote (a label per
            // made-up name would grow without bound).
            SynthMetrics.call(method: Methods.named(open.method)?.name ?? "unknown", code: SynthMetrics.codeName(status.code.rawValue), took: took)
            service.logger.debug("call ended", metadata: [
                "method": "\(open.method.prefix(64))", "call": "\(id)", "org": "\(caller.value?.org ?? "-")",
                "status": "\(status.code)", "error_code": "\(status.errorCode.isEmpty ? "-" : status.errorCode)",
                "ms": "\(took.components.seconds * 1000 + took.components.attoseconds / 1_000_000_000_000_000)"])
            return status
        }
    }

    /// Closes the connection once it has had no open call and no frame for the idle timeout, or
    /// for the shorter unauthenticated timeout while no call on it has authenticated.
    func idleWatchdog(_ state: ConnectionState) async {
        let timeout = server.config.idleTimeout, early = min(server.config.unauthenticatedIdleTimeout, server.config.idleTimeout)
        let tick = min(early / 4, .seconds(1))
        while !Task.isCancelled {
            try? await Task.sleep(for: tick)
            if state.isIdle(for: state.hasAuthenticated ? timeout : early) {
                server.logger.debug("closing idle connection", metadata: ["authenticated": "\(state.hasAuthenticated)"])
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
    do {
        try await writer.write(frame)
    } catch let e as RPCError where e.status.errorCode == FrameWriter.tooLargeCode {
        // A status must always arrive: one too large for a frame goes without its lists.
        var short = status
        short.fieldErrors = []
        short.suggestions = []
        short.message = String(status.message.prefix(1000)) + " (the status's details were too large for a frame)"
        frame.status = short
        try await writer.write(frame)
    }
}

/// A status on call 0: the connection broke the protocol and is about to be closed.
func sendConnectionStatus(_ writer: FrameWriter, _ code: PBStatusCode, _ errorCode: String, _ message: String) async throws {
    try await sendStatus(writer, 0, RPCError(code, message, errorCode: errorCode).status)
}

/// The open calls of one connection and when it last saw traffic.
final class ConnectionState: Sendable {
    private struct State {
        var calls: [UInt64: CallControl] = [:]
        var lastActivity = ContinuousClock.now
        /// Calls opened whose final status has not been written yet.
        var unanswered = 0
        var drained: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
        /// Whether a stream call ran on it (its connection's end is then a moment to trim the heap).
        var streamed = false
    }

    private let state = Locked(State())
    let limit: FrameSizeLimit

    var streamed: Bool {
        get { state.withLock { $0.streamed } }
        set { state.withLock { $0.streamed = newValue } }
    }

    init(limit: FrameSizeLimit) {
        self.limit = limit
    }

    /// A call on this connection has authenticated: its frames may now be as large as the server allows.
    func authenticated() { limit.raise() }

    var hasAuthenticated: Bool { limit.isRaised }

    /// Returns once every call opened has had its final status written, or when the waiting
    /// task is cancelled.
    func waitForCalls() async {
        let id = state.withLock {
            $0.nextWaiter += 1
            return $0.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                let now: Bool = state.withLock {
                    if $0.unanswered == 0 || Task.isCancelled { return true }
                    $0.drained[id] = done
                    return false
                }
                if now { done.resume() }
            }
        } onCancel: {
            state.withLock { $0.drained.removeValue(forKey: id) }?.resume()
        }
    }

    /// A call's final status was written (or could not be).
    func answered() {
        let waiting: [CheckedContinuation<Void, Never>] = state.withLock {
            $0.unanswered -= 1
            guard $0.unanswered == 0 else { return [] }
            let waiting = Array($0.drained.values)
            $0.drained = [:]
            return waiting
        }
        for w in waiting { w.resume() }
    }

    func touch() { state.withLock { $0.lastActivity = .now } }

    func open(_ id: UInt64, limit: Int) -> CallControl? {
        state.withLock {
            guard $0.calls[id] == nil, $0.calls.count < limit else { return nil }
            let c = CallControl()
            $0.calls[id] = c
            $0.unanswered += 1
            return c
        }
    }

    func isOpen(_ id: UInt64) -> Bool { state.withLock { $0.calls[id] != nil } }

    func close(_ id: UInt64) {
        state.withLock {
            $0.calls[id] = nil
            $0.lastActivity = .now
        }
    }

    func cancel(_ id: UInt64) {
        let c = state.withLock { $0.calls[id] }
        c?.cancel()
    }

    func isIdle(for timeout: Duration) -> Bool {
        state.withLock { $0.calls.isEmpty && ContinuousClock.now - $0.lastActivity > timeout }
    }

    /// The server is stopping: every open call ends with UNAVAILABLE (SHUTTING_DOWN).
    func endCallsForShutdown() {
        for c in state.withLock({ Array($0.calls.values) }) { c.cancel(byServer: true) }
    }

    var openCalls: Int { state.withLock { $0.calls.count } }
}

/// Lets a Cancel frame reach the task running its call.
final class CallControl: Sendable {
    private struct State {
        var cancelled = false
        /// Cancelled because the server is stopping, not by the client.
        var byServer = false
    }

    private let state = Locked(State())
    private let stream: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    init() {
        (stream, continuation) = AsyncStream<Void>.makeStream()
    }

    var isCancelled: Bool { state.withLock { $0.cancelled } }
    /// Cancelled because the server is stopping, not by the client.
    var byServer: Bool { state.withLock { $0.byServer } }

    func cancel(byServer: Bool = false) {
        state.withLock {
            $0.cancelled = true
            $0.byServer = $0.byServer || byServer
        }
        continuation.finish()
    }

    /// Returns when the client cancels, or when the waiting task is cancelled.
    func waitCancelled() async {
        for await _ in stream {}
    }
}

/// The caller of one call, once it has authenticated (for the log line of a call that fails).
final class CallerSlot: Sendable {
    private let slot = Locked<Caller?>(nil)
    var value: Caller? {
        get { slot.withLock { $0 } }
        set { slot.withLock { $0 = newValue } }
    }
}
