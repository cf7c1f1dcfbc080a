import Foundation
import SynthConcurrency

/// Keeps one provider inside its requests-per-minute and tokens-per-minute limits.
///
/// Two sources of limits, both enforced:
/// - Configured limits: token buckets refilled continuously at limit/60 per second, holding at most
///   one second's worth, so requests are paced rather than burst. A reservation may drive a bucket
///   into debt; the caller then waits until the debt is repaid, which keeps callers in order.
/// - What the provider reports: OpenAI's `x-ratelimit-*` and Anthropic's `anthropic-ratelimit-*`
///   headers give the remaining requests and tokens of the current window and when it resets.
///   Once the remainder is spent, new requests wait for the reset.
///
/// Token costs are estimated before sending (prompt characters / 4 plus `max_tokens`, as providers
/// count them for rate limiting) and settled against the usage the answer reports.
public final class RateLimiter: Sendable {
    struct Bucket {
        var perSecond: Double
        var capacity: Double
        var level: Double
        var updated: ContinuousClock.Instant

        mutating func refill(_ now: ContinuousClock.Instant) {
            let elapsed = Self.seconds(now - updated)
            if elapsed > 0 {
                level = min(capacity, level + elapsed * perSecond)
                updated = now
            }
        }

        /// Takes `cost` and returns how long the caller must wait for the debt to clear.
        mutating func take(_ cost: Double, _ now: ContinuousClock.Instant) -> Double {
            refill(now)
            level -= cost
            return level >= 0 ? 0 : -level / perSecond
        }

        static func seconds(_ d: Duration) -> Double {
            Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }
    }

    /// The provider's own account of its current window.
    struct Window {
        var limit: Double?
        var remaining: Double
        var resetAt: ContinuousClock.Instant?
        /// For a window assumed to follow a spent one: requests in it wait until it opens.
        var opensAt: ContinuousClock.Instant?
        /// Answers to requests sent before this moment describe an earlier window and are ignored.
        var since: ContinuousClock.Instant? = nil
    }

    private struct State {
        var requestBucket: Bucket?
        var tokenBucket: Bucket?
        var requestWindow: Window?
        var tokenWindow: Window?
    }

    private let clock = ContinuousClock()
    private let state: Locked<State>
    /// Added to a reported reset time: clocks and rounding differ a little.
    let resetMargin: Duration

    public init(requestsPerMinute: Int?, tokensPerMinute: Int?, resetMargin: Duration = .milliseconds(250)) {
        let now = ContinuousClock.now
        func bucket(_ perMinute: Int?) -> Bucket? {
            guard let perMinute, perMinute > 0 else { return nil }
            let perSecond = Double(perMinute) / 60
            let capacity = max(1, perSecond)
            return Bucket(perSecond: perSecond, capacity: capacity, level: capacity, updated: now)
        }
        state = Locked(State(requestBucket: bucket(requestsPerMinute), tokenBucket: bucket(tokensPerMinute)))
        self.resetMargin = resetMargin
    }

    /// Reserves one request costing about `tokens`, and returns how long to wait before sending it.
    public func reserve(tokens: Int) -> Duration {
        state.withLock { s in
            let now = clock.now
            var wait = 0.0
            if s.requestBucket != nil { wait = max(wait, s.requestBucket!.take(1, now)) }
            if s.tokenBucket != nil { wait = max(wait, s.tokenBucket!.take(Double(tokens), now)) }
            var until = now + .milliseconds(Int64((wait * 1000).rounded(.up)))
            if let w = Self.spend(&s.requestWindow, 1, now, resetMargin) { until = max(until, w) }
            if let w = Self.spend(&s.tokenWindow, Double(tokens), now, resetMargin) { until = max(until, w) }
            return until - now
        }
    }

    /// Takes `cost` from a reported window. Returns when the request may go, if it must wait.
    private static func spend(_ window: inout Window?, _ cost: Double, _ now: ContinuousClock.Instant,
                              _ margin: Duration) -> ContinuousClock.Instant? {
        guard var w = window else { return nil }
        if let reset = w.resetAt, reset + margin <= now {
            // The window the provider told of is over. Assume the next one starts full; the
            // answers to the requests sent in it bring its real figures.
            guard let limit = w.limit else {
                window = nil
                return nil
            }
            w = Window(limit: limit, remaining: limit, resetAt: nil, opensAt: nil, since: now)
        }
        if w.remaining >= cost {
            w.remaining -= cost
            window = w
            return w.opensAt.flatMap { $0 > now ? $0 : nil }
        }
        // Spent: wait for the reset, then take from the next window.
        guard let reset = w.resetAt else {
            window = w
            return w.opensAt.flatMap { $0 > now ? $0 : nil }
        }
        let go = reset + margin
        if let limit = w.limit {
            window = Window(limit: limit, remaining: max(0, limit - cost), resetAt: nil, opensAt: go, since: go)
        } else {
            window = nil
        }
        return go
    }

    /// Corrects the token accounts once the real usage is known.
    public func settle(estimated: Int, actual: Int) {
        let delta = Double(actual - estimated)
        guard delta != 0 else { return }
        state.withLock { s in
            if s.tokenBucket != nil { s.tokenBucket!.level = min(s.tokenBucket!.capacity, s.tokenBucket!.level - delta) }
            if s.tokenWindow != nil { s.tokenWindow!.remaining = max(0, s.tokenWindow!.remaining - delta) }
        }
    }

    /// Reads the provider's rate-limit headers. `inFlight` requests were sent after the provider
    /// counted this one; they are taken off the reported remainder.
    public func observe(headers: [String: String], inFlight: Int, sentAt: ContinuousClock.Instant? = nil) {
        guard let report = RateLimitHeaders.parse(headers) else { return }
        state.withLock { s in
            let now = clock.now
            func apply(_ window: inout Window?, _ r: RateLimitHeaders.Figures?, _ pending: Double) {
                guard let r, let remaining = r.remaining else { return }
                let resetAt = r.resetIn.map { now + $0 }
                let left = max(0, remaining - pending)
                if let since = window?.since, let sentAt, sentAt < since {
                    // An answer to a request sent in a window that has since ended.
                    return
                }
                if let w = window, let opens = w.opensAt, let reported = resetAt, reported <= opens {
                    // A late answer from the window that is already spent.
                    return
                }
                if var w = window, let known = w.resetAt, let reported = resetAt, reported <= known + .seconds(1) {
                    // The same window: keep the lower figure, since answers arrive out of order.
                    w.remaining = min(w.remaining, left)
                    w.limit = r.limit ?? w.limit
                    w.resetAt = reported
                    window = w
                } else {
                    window = Window(limit: r.limit, remaining: left, resetAt: resetAt, opensAt: nil, since: window?.since)
                }
            }
            apply(&s.requestWindow, report.requests, Double(inFlight))
            apply(&s.tokenWindow, report.tokens, 0)
        }
    }

    /// A rough token count for rate limiting: four characters a token, plus the completion budget.
    public static func estimateTokens(_ request: ChatRequest) -> Int {
        (request.system.utf8.count + request.user.utf8.count + (request.jsonSchema?.utf8.count ?? 0)) / 4 + request.maxTokens
    }
}

/// The rate-limit headers of OpenAI (`x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets
/// as durations such as `850ms`, `12.5s`, `1m0s`) and Anthropic
/// (`anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`, resets as RFC 3339 times).
public struct RateLimitHeaders: Equatable, Sendable {
    public struct Figures: Equatable, Sendable {
        public var limit: Double?
        public var remaining: Double?
        public var resetIn: Duration?
    }

    public var requests: Figures?
    public var tokens: Figures?

    public static func parse(_ headers: [String: String], now: Date = Date()) -> RateLimitHeaders? {
        func figures(limit: String, remaining: String, reset: String) -> Figures? {
            let f = Figures(limit: headers[limit].flatMap(Double.init).flatMap(finite),
                            remaining: headers[remaining].flatMap(Double.init).flatMap(finite),
                            resetIn: headers[reset].flatMap { duration($0) ?? until($0, now: now) })
            return f.limit == nil && f.remaining == nil ? nil : f
        }
        var out = RateLimitHeaders()
        if headers.keys.contains(where: { $0.hasPrefix("anthropic-ratelimit-") }) {
            out.requests = figures(limit: "anthropic-ratelimit-requests-limit", remaining: "anthropic-ratelimit-requests-remaining",
                                   reset: "anthropic-ratelimit-requests-reset")
            out.tokens = figures(limit: "anthropic-ratelimit-tokens-limit", remaining: "anthropic-ratelimit-tokens-remaining",
                                 reset: "anthropic-ratelimit-tokens-reset")
        } else {
            out.requests = figures(limit: "x-ratelimit-limit-requests", remaining: "x-ratelimit-remaining-requests",
                                   reset: "x-ratelimit-reset-requests")
            out.tokens = figures(limit: "x-ratelimit-limit-tokens", remaining: "x-ratelimit-remaining-tokens",
                                 reset: "x-ratelimit-reset-tokens")
        }
        return out.requests == nil && out.tokens == nil ? nil : out
    }

    static func finite(_ v: Double) -> Double? { v.isFinite && v >= 0 ? v : nil }

    /// A Go-style duration: `850ms`, `1s`, `12.5s`, `1m0s`, `1h2m3.5s`. Clamped to an hour.
    static func duration(_ text: String) -> Duration? {
        // On the UTF-8 bytes: every answer carries two of these, and Characters cost a lot more.
        var bytes = Array(text.utf8)[...]
        while let f = bytes.first, f == 0x20 || f == 0x09 { bytes.removeFirst() }
        while let l = bytes.last, l == 0x20 || l == 0x09 { bytes.removeLast() }
        guard !bytes.isEmpty else { return nil }
        var total = 0.0
        var number: ArraySlice<UInt8> = []
        var sawUnit = false
        var i = bytes.startIndex
        while i < bytes.endIndex {
            let c = bytes[i]
            if (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: ".") {
                if number.isEmpty { number = bytes[i..<i] }
                number = bytes[number.startIndex...i]
                i += 1
                continue
            }
            guard !number.isEmpty, let value = Double(String(decoding: number, as: UTF8.self)) else { return nil }
            let unit: Double
            if c == UInt8(ascii: "m"), i + 1 < bytes.endIndex, bytes[i + 1] == UInt8(ascii: "s") {
                unit = 0.001
                i += 2
            } else if c == UInt8(ascii: "h") {
                unit = 3600; i += 1
            } else if c == UInt8(ascii: "m") {
                unit = 60; i += 1
            } else if c == UInt8(ascii: "s") {
                unit = 1; i += 1
            } else {
                return nil
            }
            total += value * unit
            number = []
            sawUnit = true
        }
        guard sawUnit, number.isEmpty, total.isFinite else { return nil }
        return .milliseconds(Int64((min(total, 3600) * 1000).rounded(.up)))
    }

    /// The time until an RFC 3339 instant; zero if it is past, clamped to an hour.
    static func until(_ text: String, now: Date) -> Duration? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        // Whole seconds may have been cut off: count the reset at the end of that second.
        var slack = 1.0
        var date = f.date(from: text)
        if date == nil {
            f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            date = f.date(from: text)
            slack = 0
        }
        guard let date else { return nil }
        let seconds = min(3600, max(0, date.timeIntervalSince(now) + slack))
        return .milliseconds(Int64((seconds * 1000).rounded(.up)))
    }
}
