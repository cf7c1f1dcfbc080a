import Foundation
import SynthConcurrency

/// Calls per org per minute, by the generic cell rate algorithm: each call moves the org's
/// theoretical arrival time on by one interval (60 s / rate), and a call is refused while that time
/// is more than `burst - 1` intervals ahead of now. Over any stretch a flooding org gets `burst`
/// calls at once and then `rate` a minute. Orgs do not affect each other.
public final class OrgRateLimiter: Sendable {
    let interval: Double
    let tolerance: Double
    /// Each org's theoretical arrival time.
    private let arrival = Locked<[String: Double]>([:])
    private let start = ContinuousClock.now

    /// nil when `perMinute` is 0: no limit.
    public init?(perMinute: Int, burst: Int) {
        guard perMinute > 0 else { return nil }
        interval = 60.0 / Double(perMinute)
        tolerance = interval * Double(max(1, burst) - 1)
    }

    private var now: Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// nil when the call may go; else how long until it could.
    public func admit(_ org: String) -> Duration? {
        arrival.withLock { arrival in
            let t = now
            let tat = max(arrival[org] ?? t, t)
            if tat - t > tolerance {
                return .milliseconds(Int64(((tat - tolerance - t) * 1000).rounded(.up)))
            }
            arrival[org] = tat + interval
            if arrival.count > 100_000 { arrival = arrival.filter { $0.value > t } }  // forget idle orgs
            return nil
        }
    }
}
