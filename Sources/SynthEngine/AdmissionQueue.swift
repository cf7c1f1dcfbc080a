/// Jobs waiting for a running place (`max_running_jobs`), one first-come line per org. The next
/// to start is the head of the line of the org with the fewest running jobs relative to its
/// weight (ties: whichever came first), so choosing costs the number of orgs waiting, not the
/// number of jobs: a long line (thousands of small jobs) stays cheap to serve and to answer for.
public struct AdmissionQueue {
    private struct Line {
        var ids: [(id: String, seq: UInt64)] = []
        var head = 0
        var isEmpty: Bool { head >= ids.count }
        var first: (id: String, seq: UInt64)? { isEmpty ? nil : ids[head] }

        mutating func popFirst() -> String? {
            guard !isEmpty else { return nil }
            let id = ids[head].id
            head += 1
            // Compacted now and then, so a long-lived line does not keep what it served.
            if head > 64, head * 2 > ids.count {
                ids.removeFirst(head)
                head = 0
            }
            return id
        }
    }

    private var lines: [String: Line] = [:]
    /// Each waiting job's org.
    private(set) var members: [String: String] = [:]
    private var seq: UInt64 = 0
    /// The places computed for `place(of:)`, and the running jobs and weights they were worked
    /// out for, until the line changes.
    private var places: [String: Int]?
    private var placesFor: (running: [String: Int], weights: [String: Double]) = ([:], [:])
    /// Places are worked out this far; a job further back is told only that it is further back.
    public static let placesShown = 10_000

    public init() {}

    public var count: Int { members.count }
    public var ids: [String] { Array(members.keys) }

    public func contains(_ id: String) -> Bool { members[id] != nil }

    public mutating func append(_ id: String, org: String) {
        seq += 1
        lines[org, default: Line()].ids.append((id, seq))
        members[id] = org
        places = nil
    }

    /// Takes a job out of the line (cancelled); false when it was not in it.
    public mutating func remove(_ id: String) -> Bool {
        guard let org = members.removeValue(forKey: id), var line = lines[org] else { return false }
        if let i = line.ids[line.head...].firstIndex(where: { $0.id == id }) { line.ids.remove(at: i) }
        lines[org] = line.isEmpty ? nil : line
        places = nil
        return true
    }

    public mutating func removeAll() {
        lines.removeAll()
        members.removeAll()
        places = nil
    }

    /// The org whose head goes next, given the running jobs by org.
    private static func nextOrg(_ lines: [String: Line], heads: [String: Int], running: [String: Int],
                                weights: [String: Double]) -> String? {
        var best: String?
        var bestKey = (Double.infinity, UInt64.max)
        for (org, line) in lines {
            let at = heads[org] ?? line.head
            guard at < line.ids.count else { continue }
            let key = (Double(running[org] ?? 0) / max(1e-9, weights[org] ?? 1), line.ids[at].seq)
            if key < bestKey {
                best = org
                bestKey = key
            }
        }
        return best
    }

    /// Takes the job that starts next out of the line.
    public mutating func popNext(running: [String: Int], weights: [String: Double]) -> (id: String, org: String)? {
        guard let org = Self.nextOrg(lines, heads: [:], running: running, weights: weights), let id = lines[org]?.popFirst() else { return nil }
        if lines[org]?.isEmpty == true { lines[org] = nil }
        members[id] = nil
        places = nil
        return (id, org)
    }

    /// A waiting job's place (1: the next to start), if within `placesShown`; the order the rule
    /// would start them in if nothing else changed.
    public mutating func place(of id: String, running: [String: Int], weights: [String: Double]) -> Int? {
        if places == nil || placesFor.running != running || placesFor.weights != weights {
            placesFor = (running, weights)
            var heads: [String: Int] = [:]
            var running = running
            var order: [String: Int] = [:]
            while order.count < Self.placesShown, let org = Self.nextOrg(lines, heads: heads, running: running, weights: weights) {
                let line = lines[org]!
                let at = heads[org] ?? line.head
                order[line.ids[at].id] = order.count + 1
                heads[org] = at + 1
                running[org, default: 0] += 1
            }
            places = order
        }
        return places![id]
    }
}
