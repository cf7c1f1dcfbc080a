#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSketch
import Synchronization

/// A bin's sketches and their sums, and the probe's sketch and what a pair's sums and minima must
/// reach (`base`): the portable kernel's input.
struct SketchSet {
    let sketches: UnsafePointer<SIMD16<UInt8>>, sums: UnsafePointer<UInt32>
    let x: UnsafePointer<SIMD16<UInt8>>, base: Int
}

/// A sketch length in vectors, fixed at compile time so that loops over it unroll.
protocol SketchLength { static var vectors: Int { get } }
enum Vectors2: SketchLength { static var vectors: Int { 2 } }
enum Vectors3: SketchLength { static var vectors: Int { 3 } }
enum Vectors4: SketchLength { static var vectors: Int { 4 } }
enum Vectors5: SketchLength { static var vectors: Int { 5 } }
enum Vectors6: SketchLength { static var vectors: Int { 6 } }
enum Vectors7: SketchLength { static var vectors: Int { 7 } }
enum Vectors8: SketchLength { static var vectors: Int { 8 } }
enum Vectors9: SketchLength { static var vectors: Int { 9 } }
enum Vectors10: SketchLength { static var vectors: Int { 10 } }
enum Vectors11: SketchLength { static var vectors: Int { 11 } }
enum Vectors12: SketchLength { static var vectors: Int { 12 } }
enum Vectors13: SketchLength { static var vectors: Int { 13 } }
enum Vectors14: SketchLength { static var vectors: Int { 14 } }
enum Vectors15: SketchLength { static var vectors: Int { 15 } }
enum Vectors16: SketchLength { static var vectors: Int { 16 } }
/// Any other length, given at run time.
enum AnyVectors: SketchLength { static var vectors: Int { 0 } }

/// The sketch comparison: Σ min(cx, cy) over packed counts, against what the pair needs.
enum Kernel<Length: SketchLength> {
    @inline(__always)
    static func next(_ k: SketchSet, _ from: Int, _ count: Int, _ length: Int = 0) -> Int {
        let vectors = Length.vectors > 0 ? Length.vectors : length
        var e = from
        var p = k.sketches + e * vectors
        while e < count {
            if 2 * sumOfMinima(p, k.x, vectors) >= k.base + Int(k.sums[e]) { return e }
            e += 1
            p += vectors
        }
        return count
    }

    /// Σ min(cx, cy) over a packed sketch of `vectors` vectors (Length.vectors when fixed),
    /// whose byte k of vector v holds the counts of dimensions 32v + k (low four bits) and
    /// 32v + 16 + k (high four), and the probe's counts one a byte.
    @inline(__always)
    static func sumOfMinima(_ p: UnsafePointer<SIMD16<UInt8>>, _ x: UnsafePointer<SIMD16<UInt8>>, _ vectors: Int) -> Int {
        var total = 0
        var acc = SIMD16<UInt8>()
        for v in 0..<(Length.vectors > 0 ? Length.vectors : vectors) {
            let y = p[v]
            let lo = y & 0x0F, hi = (y &>> 4) & 0x0F
            let a = x[2 * v], b = x[2 * v + 1]
            acc &+= lo.replacing(with: a, where: a .< lo)
            acc &+= hi.replacing(with: b, where: b .< hi)
            // Each lane adds at most 16 minima of counts capped at 15 before this: at most 240.
            if v & 7 == 7 {
                total += horizontalSum(acc)
                acc = SIMD16<UInt8>()
            }
        }
        return total + horizontalSum(acc)
    }

    @inline(__always) static func horizontalSum(_ v: SIMD16<UInt8>) -> Int {
        let w = unsafeBitCast(v, to: SIMD2<UInt64>.self)
        let m: UInt64 = 0x00FF_00FF_00FF_00FF
        // Four 16-bit lanes of at most 4·255, then their sum in the top lane.
        let s = (w[0] & m) &+ ((w[0] &>> 8) & m) &+ (w[1] & m) &+ ((w[1] &>> 8) & m)
        return Int(truncatingIfNeeded: (s &* 0x0001_0001_0001_0001) &>> 48)
    }
}
