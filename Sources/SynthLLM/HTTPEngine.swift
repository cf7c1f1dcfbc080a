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
/// Unchecked: libcurl's multi and easy handles and `active` belong to the engine's thread alone;
/// what other threads hand over (`pending`, `cancelled`, `stopping`) sits under `lock`.
public final class HTTPEngine: @unchecked Sendable {
    private let multi: UnsafeMutableRawPointer
    private let lock = NSLock()
    private var pending: [Transfer] = []
    private var cancelled: [UInt64] = []
    private var active: [UInt64: Transfer] = [:]
    private var nextID: UInt64 = 0
    private var stopping = false
    private var thread: Thread?

    public init(maxConnections: Int = 512) {
        curl_global_init(Int(CURL_GLOBAL_DEFAULT))
        multi = curl_multi_init()!
        synth_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, maxConnections)
        // The loop keeps the engine alive until shutdown() ends it; an engine dropped without
        // shutdown() lives on rather than leaving its thread with a dangling reference.
        let thread = Thread { self.run() }
        thread.name = "synthd-http"
        self.thread = thread
        thread.start()
    }

    deinit {
        curl_multi_cleanup(multi)
    }

    /// Stops the loop; transfers still in flight fail with `HTTPError.shutdown`.
    public func shutdown() {
        lock.lock()
        stopping = true
        lock.unlock()
        curl_multi_wakeup(multi)
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
                let accepted = lock.withLock {
                    // A task cancelled before it got here would never see its cancel: refuse now.
                    if stopping || Task.isCancelled { return false }
                    transfer.continuation = cont
                    pending.append(transfer)
                    return true
                }
                if accepted {
                    curl_multi_wakeup(multi)
                } else if Task.isCancelled {
                    cont.resume(throwing: CancellationError())
                } else {
                    cont.resume(throwing: HTTPError(code: -1, message: "the HTTP engine is shut down"))
                }
            }
        } onCancel: { [id = transfer.id] in
            lock.withLock { cancelled.append(id) }
            curl_multi_wakeup(multi)
        }
    }

    private func run() {
        var running: Int32 = 0
        while true {
            let (starting, cancelling, stop) = lock.withLock {
                defer {
                    pending.removeAll()
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
            curl_multi_perform(multi, &running)
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
            curl_multi_poll(multi, nil, 0, 1000, nil)
        }
    }

    private func start(_ t: Transfer) {
        guard let easy = curl_easy_init() else {
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
            if let data, count > 0 {
                let line = data.withMemoryRebound(to: UInt8.self, capacity: count) { String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self) }
                if line.hasPrefix("HTTP/") { t.headers.removeAll() }  // a new response (after 100-continue or a redirect)
                if let colon = line.firstIndex(of: ":") {
                    let name = line[..<colon].lowercased()
                    let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
                    t.headers[name] = value
                }
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
            curl_easy_cleanup(easy)
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
