import CCurl
import Foundation

/// One request for the engine.
public struct HTTPRequest: Sendable {
    public enum Method: Sendable { case get, post }

    public var method: Method
    public var url: String
    public var headers: [String]
    public var body: [UInt8]
    public var connectTimeout: Duration
    public var totalTimeout: Duration

    public init(url: String, headers: [String], body: [UInt8], connectTimeout: Duration = .seconds(10), totalTimeout: Duration = .seconds(120),
                method: Method = .post) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.connectTimeout = connectTimeout
        self.totalTimeout = totalTimeout
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    /// Header names lowercased; the last value wins.
    public var headers: [String: String]
    public var body: [UInt8]
}

/// Many HTTP requests in flight from one thread on libcurl's multi interface, bridged to Swift
/// concurrency: `send` suspends until its transfer completes. Connections are kept and reused by
/// the multi handle's connection cache.
///
/// The thread drives libcurl through its socket interface (`curl_multi_socket_action`) on epoll:
/// a wakeup costs what its own sockets did, where `curl_multi_poll` + `curl_multi_perform` cost
/// a pass over every connection in flight (hundreds, with a fleet) on every answer.
///
/// Unchecked: libcurl's multi and easy handles, `active`, `watched`, `timer` and `idle` belong to
/// the engine's thread alone; what other threads hand over (`pending`, `cancelled`, `stopping`)
/// sits under `lock`, and they wake the thread through an eventfd.
public final class HTTPEngine: @unchecked Sendable {
    private let multi: UnsafeMutableRawPointer
    private let lock = NSLock()
    private var pending: [Transfer] = []
    private var cancelled: [UInt64] = []
    private var active: [UInt64: Transfer] = [:]
    private var nextID: UInt64 = 0
    private var stopping = false
    private var thread: Thread?
    private let epoll: Int32
    private let wake: Int32
    /// When libcurl wants `CURL_SOCKET_TIMEOUT` next (nil: no timer).
    private var timer: ContinuousClock.Instant?
    /// Easy handles of finished transfers, reset for the next (their allocations reused).
    private var idle: [UnsafeMutableRawPointer] = []

    public init(maxConnections: Int = 512) {
        curl_global_init(Int(CURL_GLOBAL_DEFAULT))
        multi = curl_multi_init()!
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        wake = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        precondition(epoll >= 0 && wake >= 0, "epoll or eventfd unavailable")
        _ = synth_epoll_set(epoll, wake, EPOLLIN.rawValue)
        synth_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, maxConnections)
        let me = Unmanaged.passUnretained(self).toOpaque()
        let socketCallback: synth_curl_socket_cb = { _, fd, what, user, _ in
            let engine = Unmanaged<HTTPEngine>.fromOpaque(user!).takeUnretainedValue()
            switch what {
            case CURL_POLL_REMOVE: _ = synth_epoll_remove(engine.epoll, fd)
            case CURL_POLL_IN: _ = synth_epoll_set(engine.epoll, fd, EPOLLIN.rawValue)
            case CURL_POLL_OUT: _ = synth_epoll_set(engine.epoll, fd, EPOLLOUT.rawValue)
            case CURL_POLL_INOUT: _ = synth_epoll_set(engine.epoll, fd, EPOLLIN.rawValue | EPOLLOUT.rawValue)
            default: break
            }
            return 0
        }
        let timerCallback: synth_curl_timer_cb = { _, ms, user in
            let engine = Unmanaged<HTTPEngine>.fromOpaque(user!).takeUnretainedValue()
            engine.timer = ms < 0 ? nil : .now + .milliseconds(Int64(ms))
            return 0
        }
        synth_curl_multi_socketfunction(multi, socketCallback)
        synth_curl_multi_setopt_ptr(multi, CURLMOPT_SOCKETDATA, me)
        synth_curl_multi_timerfunction(multi, timerCallback)
        synth_curl_multi_setopt_ptr(multi, CURLMOPT_TIMERDATA, me)
        // The loop keeps the engine alive until shutdown() ends it; an engine dropped without
        // shutdown() lives on rather than leaving its thread with a dangling reference.
        let thread = Thread { self.run() }
        thread.name = "synthd-http"
        self.thread = thread
        thread.start()
    }

    deinit {
        for easy in idle { curl_easy_cleanup(easy) }
        curl_multi_cleanup(multi)
        close(epoll)
        close(wake)
    }

    private func wakeUp() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(wake, $0.baseAddress, 8) }
    }

    /// Stops the loop; transfers still in flight fail with `HTTPError.shutdown`.
    public func shutdown() {
        lock.lock()
        stopping = true
        lock.unlock()
        wakeUp()
    }

    /// Performs one request. Cancelling the calling task aborts the transfer.
    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let transfer = Transfer(request: request)
        transfer.id = lock.withLock {
            nextID += 1
            return nextID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<HTTPResponse, Error>) in
                let (accepted, first) = lock.withLock {
                    // A task cancelled before it got here would never see its cancel: refuse now.
                    if stopping || Task.isCancelled { return (false, false) }
                    transfer.continuation = cont
                    pending.append(transfer)
                    return (true, pending.count == 1)
                }
                if accepted {
                    // One wakeup per batch: the thread takes every pending transfer at once.
                    if first { wakeUp() }
                } else if Task.isCancelled {
                    cont.resume(throwing: CancellationError())
                } else {
                    cont.resume(throwing: HTTPError(code: -1, message: "the HTTP engine is shut down"))
                }
            }
        } onCancel: { [id = transfer.id] in
            lock.withLock { cancelled.append(id) }
            wakeUp()
        }
    }

    private func run() {
        var running: Int32 = 0
        var fds = [Int32](repeating: 0, count: 256)
        var events = [UInt32](repeating: 0, count: 256)
        while true {
            let (starting, cancelling, stop) = lock.withLock {
                defer {
                    pending.removeAll(keepingCapacity: true)
                    cancelled.removeAll()
                }
                return (pending, cancelled, stopping)
            }
            for t in starting { start(t) }
            for id in cancelling {
                if let t = active[id] { finish(t, .failure(CancellationError())) }
            }
            if stop {
                for t in active.values { finish(t, .failure(HTTPError(code: -1, message: "the HTTP engine is shut down"))) }
                return
            }
            var wait: Int32 = 1000
            if let timer {
                let left = timer - .now
                wait = left <= .zero ? 0 : Int32(min(1000, max(1, left.milliseconds)))
            }
            let n = fds.withUnsafeMutableBufferPointer { f in
                events.withUnsafeMutableBufferPointer { e in synth_epoll_wait(epoll, f.baseAddress, e.baseAddress, wait) }
            }
            for i in 0..<max(0, Int(n)) {
                if fds[i] == wake {
                    var count: UInt64 = 0
                    _ = withUnsafeMutableBytes(of: &count) { read(wake, $0.baseAddress, 8) }
                    continue
                }
                var mask: Int32 = 0
                if events[i] & EPOLLIN.rawValue != 0 { mask |= CURL_CSELECT_IN }
                if events[i] & EPOLLOUT.rawValue != 0 { mask |= CURL_CSELECT_OUT }
                if events[i] & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { mask |= CURL_CSELECT_ERR }
                curl_multi_socket_action(multi, fds[i], mask, &running)
            }
            if let timer, timer <= .now {
                self.timer = nil
                curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running)
            }
            var left: Int32 = 0
            while let msg = curl_multi_info_read(multi, &left) {
                guard msg.pointee.msg == CURLMSG_DONE, let easy = msg.pointee.easy_handle else { continue }
                var raw: UnsafeMutableRawPointer?
                synth_curl_getinfo_ptr(easy, CURLINFO_PRIVATE, &raw)
                guard let raw else { continue }
                let t = Unmanaged<Transfer>.fromOpaque(raw).takeUnretainedValue()
                let code = msg.pointee.data.result
                if code == CURLE_OK {
                    var status = 0
                    synth_curl_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
                    finish(t, .success(HTTPResponse(status: status, headers: t.headers, body: t.body)))
                } else {
                    let text = String(cString: curl_easy_strerror(code))
                    finish(t, .failure(HTTPError(code: Int(code.rawValue), message: text)))
                }
            }
        }
    }

    private func start(_ t: Transfer) {
        guard let easy = idle.popLast() ?? curl_easy_init() else {
            t.continuation?.resume(throwing: HTTPError(code: -1, message: "curl_easy_init failed"))
            return
        }
        t.easy = easy
        let me = Unmanaged.passUnretained(t).toOpaque()
        t.url.withUnsafeBufferPointer { _ = synth_curl_setopt_ptr(easy, CURLOPT_URL, $0.baseAddress) }
        synth_curl_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        switch t.request.method {
        case .post:
            synth_curl_setopt_long(easy, CURLOPT_POST, 1)
            synth_curl_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(t.request.body.count))
            t.bodyPointer.withUnsafeBufferPointer { _ = synth_curl_setopt_ptr(easy, CURLOPT_POSTFIELDS, $0.baseAddress) }
        case .get:
            synth_curl_setopt_long(easy, CURLOPT_HTTPGET, 1)
        }
        synth_curl_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, Int(t.request.connectTimeout.milliseconds))
        synth_curl_setopt_long(easy, CURLOPT_TIMEOUT_MS, Int(t.request.totalTimeout.milliseconds))
        synth_curl_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1)
        synth_curl_setopt_ptr(easy, CURLOPT_HTTPHEADER, t.headerList)
        synth_curl_setopt_ptr(easy, CURLOPT_PRIVATE, me)
        synth_curl_setopt_ptr(easy, CURLOPT_WRITEDATA, me)
        synth_curl_setopt_ptr(easy, CURLOPT_HEADERDATA, me)
        let write: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { data, size, n, user in
            let t = Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
            let count = size * n
            if let data, count > 0 {
                // Provider answers are small; refuse an endless body instead of buffering it.
                if t.body.count + count > Transfer.maxBody { return 0 }
                data.withMemoryRebound(to: UInt8.self, capacity: count) { t.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: count)) }
            }
            return count
        }
        let header: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { data, size, n, user in
            let t = Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
            let count = size * n
            guard let data, count > 0 else { return count }
            // On the bytes: a String per line, lowercased and trimmed, cost more than the rest of
            // reading an answer.
            data.withMemoryRebound(to: UInt8.self, capacity: count) { p in
                let line = UnsafeBufferPointer(start: p, count: count)
                if count >= 5, line[0] == 0x48, line[1] == 0x54, line[2] == 0x54, line[3] == 0x50, line[4] == 0x2F {
                    t.headers.removeAll()  // "HTTP/": a new response (after 100-continue or a redirect)
                    return
                }
                guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return }
                let name = String(decoding: line[..<colon].map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self)
                func blank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D || b == 0x0A }
                var lo = colon + 1, hi = count
                while lo < hi, blank(line[lo]) { lo += 1 }
                while hi > lo, blank(line[hi - 1]) { hi -= 1 }
                t.headers[name] = String(decoding: UnsafeBufferPointer(rebasing: line[lo..<hi]), as: UTF8.self)
            }
            return count
        }
        curl_easy_setopt_writefunction(easy, write)
        curl_easy_setopt_headerfunction(easy, header)
        active[t.id] = t
        curl_multi_add_handle(multi, easy)
    }

    private func finish(_ t: Transfer, _ result: Result<HTTPResponse, Error>) {
        if let easy = t.easy {
            curl_multi_remove_handle(multi, easy)
            if idle.count < 1024 {
                curl_easy_reset(easy)
                idle.append(easy)
            } else {
                curl_easy_cleanup(easy)
            }
            t.easy = nil
        }
        active[t.id] = nil
        t.continuation?.resume(with: result)
        t.continuation = nil
    }
}

/// One transfer's state, owned by the engine thread once started.
final class Transfer {
    static let maxBody = 64 << 20
    var id: UInt64 = 0
    let request: HTTPRequest
    let url: [CChar]
    let bodyPointer: [UInt8]
    let headerList: UnsafeMutablePointer<curl_slist>?
    var easy: UnsafeMutableRawPointer?
    var continuation: CheckedContinuation<HTTPResponse, Error>?
    var body: [UInt8] = []
    var headers: [String: String] = [:]

    init(request: HTTPRequest) {
        self.request = request
        self.url = Array(request.url.utf8CString)
        self.bodyPointer = request.body
        var list: UnsafeMutablePointer<curl_slist>?
        for h in request.headers + ["Expect:"] { list = curl_slist_append(list, h) }
        self.headerList = list
    }

    deinit {
        curl_slist_free_all(headerList)
    }
}

/// A transport failure: libcurl's code and its own text.
public struct HTTPError: Error, Sendable, CustomStringConvertible {
    public var code: Int
    public var message: String
    public var description: String { "HTTP transport error \(code): \(message)" }
    public var isTimeout: Bool { code == Int(CURLE_OPERATION_TIMEDOUT.rawValue) }
    /// No connection was made: the host is unknown, refused it, or the TLS handshake failed.
    public var isConnectFailure: Bool {
        [CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_CONNECT, CURLE_SSL_CONNECT_ERROR,
         CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE]
            .contains { Int($0.rawValue) == code }
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (s, a) = components
        return s * 1000 + a / 1_000_000_000_000_000
    }
}
