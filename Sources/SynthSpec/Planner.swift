import SwiftProtobuf
import SynthProto

/// Turns a valid request into its exact allocation: how many records each category, coverage
/// cell or conflict axis gets, how many of them are hard negatives and with which technique, and
/// how the accepted records split. The engine generates exactly this plan.
public enum Planner {
    /// Splits `total` into parts proportional to `weights` with the largest-remainder method:
    /// floors first, then one more to the largest remainders (ties: the earlier part). The parts
    /// always sum to `total`.
    public static func largestRemainder(_ total: Int64, _ weights: [Double]) -> [Int64] {
        let sum = weights.reduce(0, +)
        guard total > 0, !weights.isEmpty, sum > 0 else { return weights.map { _ in 0 } }
        let quotas = weights.map { Double(total) * $0 / sum }
        var parts = quotas.map { Int64($0.rounded(.down)) }
        var left = total - parts.reduce(0, +)
        let order = quotas.indices.sorted { a, b in
            let ra = quotas[a] - Double(parts[a]), rb = quotas[b] - Double(parts[b])
            return ra != rb ? ra > rb : a < b
        }
        var i = 0
        while left > 0 {
            parts[order[i % order.count]] += 1
            left -= 1
            i += 1
        }
        return parts
    }

    /// The request with its defaults filled in: the tier a legacy alias maps to, the hard-negative
    /// percentage, the coverage mode, the resolution mode. With the server's catalog, a verbose
    /// generator gets its provider and `model` becomes the tier it is priced at (its own tier's,
    /// not the shorthand written beside it); a verbose critic gets its provider.
    public static func effective(_ request: PBJobRequest, catalog: ModelCatalog? = nil) -> PBJobRequest {
        var r = request
        if let tier = Tier(shorthand: r.model) { r.model = tier.rawValue }
        if let catalog {
            if let generator = catalog.explicitGenerator(r) {
                r.models.generator.provider = generator.provider
                r.model = catalog.tier(of: generator).rawValue
            }
            if r.hasModels, r.models.hasCritic, r.models.critic.provider.isEmpty {
                r.models.critic.provider = catalog.critic.provider
            }
        }
        if r.hasAdvanced {
            if r.advanced.hasHardNegatives, r.advanced.hardNegatives.enabled, !r.advanced.hardNegatives.hasPercentage {
                r.advanced.hardNegatives.percentage.value = 20
            }
            if r.advanced.hasCoverage {
                if r.advanced.coverage.mode.isEmpty { r.advanced.coverage.mode = "all_combinations" }
                if !r.advanced.coverage.hasMinPerCell { r.advanced.coverage.minPerCell.value = 1 }
            }
            if r.advanced.hardNegatives.enabled, r.advanced.hardNegatives.techniques.isEmpty {
                r.advanced.hardNegatives.techniques = Techniques.defaultOrder.map { name in
                    var v = Google_Protobuf_Value()
                    v.stringValue = name
                    return v
                }
            }
        }
        if r.hasConflictConfig, r.conflictConfig.resolutionMode.isEmpty {
            r.conflictConfig.resolutionMode = "annotated"
        }
        return r
    }

    /// The cells of a coverage grid: the cross product for `all_combinations`; for `each_value`,
    /// as many cells as the longest dimension has values, cell i taking value i (mod length) of
    /// each dimension, so every value appears.
    public static func coverageCells(_ coverage: PBCoverage) -> [[(String, String)]] {
        let dims = coverage.dimensions.filter { !$0.values.isEmpty }
        guard !dims.isEmpty else { return [] }
        if coverage.mode == "each_value" {
            let n = dims.map(\.values.count).max()!
            return (0..<n).map { i in dims.map { ($0.name, $0.values[i % $0.values.count]) } }
        }
        var cells: [[(String, String)]] = [[]]
        for d in dims {
            // Guard the product before it explodes; validation reports the real size.
            if cells.count * d.values.count > 100_000 { return Array(repeating: [], count: cells.count * d.values.count) }
            cells = cells.flatMap { cell in d.values.map { cell + [(d.name, $0)] } }
        }
        return cells
    }

    /// The axis names of a conflict config, in order: `axis_name`, or `a_b` for the short form.
    public static func axes(_ config: PBConflictConfig) -> [String] {
        config.drivePairs.map { p in
            if !p.axisName.isEmpty { return p.axisName }
            if !p.a.isEmpty || !p.b.isEmpty { return "\(p.a)_\(p.b)" }
            return p.drives.map(\.name).joined(separator: "_")
        }
    }

    /// The names of the custom or built-in techniques of a request, in order.
    public static func techniques(_ hn: PBHardNegatives) -> [String] {
        hn.techniques.compactMap { t in
            switch t.kind {
            case .stringValue(let s): return s
            case .structValue(let s): return s.fields["name"]?.stringValue
            default: return nil
            }
        }
    }

    /// Output splits ordered by size (largest first), then name: the order files are listed in.
    public static func splitOrder(_ split: [String: Double]) -> [(String, Double)] {
        split.map { ($0.key, $0.value) }.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
    }

    /// The plan of a validated, effective request.
    public static func plan(_ r: PBJobRequest) -> PBPlan {
        var plan = PBPlan()
        plan.count = r.count
        plan.tier = Tier(shorthand: r.model)?.rawValue ?? ""
        var cells: [PBPlanCell] = []
        var weights: [Double] = []
        if r.schema == Schema.conflict.rawValue, r.hasConflictConfig {
            let axes = axes(r.conflictConfig)
            for axis in axes {
                var cell = PBPlanCell()
                cell.axis = axis
                cells.append(cell)
                weights.append(r.conflictConfig.axisDistribution.isEmpty ? 1 : (r.conflictConfig.axisDistribution[axis] ?? 0))
            }
        }
        if r.hasAdvanced, !r.advanced.categories.isEmpty {
            let base = cells.isEmpty ? [PBPlanCell()] : cells
            let baseWeights = weights.isEmpty ? [1.0] : weights
            cells = []
            weights = []
            for (b, w) in zip(base, baseWeights) {
                for (name, cat) in r.advanced.categories.sorted(by: { $0.key < $1.key }) {
                    var cell = b
                    cell.category = name
                    cells.append(cell)
                    weights.append(w * cat.percentage)
                }
            }
        } else if r.hasAdvanced, r.advanced.hasCoverage {
            let base = cells.isEmpty ? [PBPlanCell()] : cells
            let baseWeights = weights.isEmpty ? [1.0] : weights
            cells = []
            weights = []
            for (b, w) in zip(base, baseWeights) {
                for values in coverageCells(r.advanced.coverage) {
                    var cell = b
                    for (k, v) in values { cell.coverage[k] = v }
                    cells.append(cell)
                    weights.append(w)
                }
            }
        }
        if cells.isEmpty {
            cells = [PBPlanCell()]
            weights = [1]
        }
        for (i, n) in largestRemainder(r.count, weights).enumerated() { cells[i].count = n }

        if r.hasAdvanced, r.advanced.hardNegatives.enabled {
            let pct = r.advanced.hardNegatives.hasPercentage ? r.advanced.hardNegatives.percentage.value : 20
            let total = largestRemainder(r.count, [pct, 100 - pct])[0]
            let perCell = largestRemainder(total, cells.map { Double($0.count) })
            for i in cells.indices { cells[i].hardNegatives = min(perCell[i], cells[i].count) }
            plan.hardNegatives = cells.map(\.hardNegatives).reduce(0, +)
            let names = techniques(r.advanced.hardNegatives)
            let counts = largestRemainder(plan.hardNegatives, names.map { _ in 1 })
            plan.techniques = zip(names, counts).map { name, n in
                var t = PBTechniqueCount()
                t.technique = name
                t.count = n
                return t
            }
        }
        plan.cells = cells

        if r.hasAdvanced, !r.advanced.outputSplit.isEmpty {
            let order = splitOrder(r.advanced.outputSplit)
            let counts = largestRemainder(r.count, order.map(\.1))
            plan.splits = zip(order, counts).map { s, n in
                var sc = PBSplitCount()
                sc.name = s.0
                sc.percentage = Int64(s.1)
                sc.count = n
                return sc
            }
        }
        return plan
    }
}
