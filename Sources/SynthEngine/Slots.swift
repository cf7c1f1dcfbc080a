import SynthProto
import SynthSpec

/// One planned record: which cell it belongs to and whether it is a hard negative, and with
/// which technique. A job is done when every slot is filled.
public struct Slot: Sendable, Equatable {
    public var index: Int
    public var cell: Int
    public var hardNegative: Bool
    public var technique: String?
}

extension Slot {
    /// The slots of a plan, cell by cell, hard negatives first in each cell. Techniques go round
    /// robin over the hard-negative slots, which gives each technique exactly its planned count.
    public static func all(_ plan: PBPlan) -> [Slot] {
        let techniques = plan.techniques.map(\.technique)
        var out: [Slot] = []
        out.reserveCapacity(Int(plan.count))
        var hn = 0
        for (c, cell) in plan.cells.enumerated() {
            for k in 0..<Int(cell.count) {
                let isHN = k < Int(cell.hardNegatives)
                var technique: String?
                if isHN, !techniques.isEmpty {
                    technique = techniques[hn % techniques.count]
                    hn += 1
                }
                out.append(Slot(index: out.count, cell: c, hardNegative: isHN, technique: technique))
            }
        }
        return out
    }
}

/// A bit set over slot indexes, stored in the job as bytes.
struct SlotBits {
    var bytes: [UInt8]

    init(_ data: [UInt8], count: Int) {
        bytes = data
        let need = (count + 7) / 8
        if bytes.count < need { bytes += [UInt8](repeating: 0, count: need - bytes.count) }
    }

    func contains(_ i: Int) -> Bool { bytes[i >> 3] & (1 << UInt8(i & 7)) != 0 }
    mutating func insert(_ i: Int) { bytes[i >> 3] |= 1 << UInt8(i & 7) }
}
