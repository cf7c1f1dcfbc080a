import CSketch

/// The distinct trigrams of one text at a time, with a hash of each and a membership test: the
/// input side of `NearDuplicateIndex`.
///
/// `load` gives exactly the set `Trigrams.set` gives, in order of first appearance instead of
/// sorted. ASCII texts (almost all of them) are read byte by byte with the same normalisation and
/// de-duplicated as they are read in a bitmap of all 2^21 ASCII trigrams (a test and a set per
/// trigram, without a branch); any other text goes through `Trigrams.set` itself and a small hash
/// table.
struct ProbeTrigrams {
    /// The distinct trigrams (packed as `Trigrams.set` packs them), in order of first appearance.
    private(set) var keys: [UInt64] = []
    /// Per trigram, `mix(trigram)` truncated: its top bits pick its sketch dimensions.
    private(set) var hashes: [UInt32] = []
    /// Open addressing with linear probing, at most half full: trigram + 1 (0 is empty; a packed
    /// trigram uses 63 bits, so + 1 cannot wrap), at the top bits of `mix(trigram)`.
    private var table: [UInt64] = Array(repeating: 0, count: 1 << 10)
    private var shift: UInt64 = 64 - 10
    /// Where each of `keys` sits in `table`, to empty it for the next text.
    private var slots: [Int] = []
    /// The loaded ASCII text's trigrams as bits of `bitmap(_:)`, when `ascii`; else they are in
    /// `table`. Allocated on the first ASCII text.
    private var seen: [UInt64] = []
    private var ascii = false

    var count: Int { keys.count }

    /// Makes the trigrams of `string` the loaded ones.
    mutating func load(_ string: String) {
        clear()
        let ascii = string.utf8.withContiguousStorageIfAvailable { bytes in fillASCII(bytes) } ?? false
        if !ascii {
            clear()
            self.ascii = false
            let trigrams = Trigrams.set(string)
            reserve(trigrams.count)
            _ = fill(trigrams.count) { add in
                for trigram in trigrams { add(trigram) }
                return true
            }
        }
    }

    /// Whether `trigram` is one of the loaded text's.
    @inline(__always) func contains(_ trigram: UInt64) -> Bool {
        if ascii {
            guard let i = Self.bitmap(trigram) else { return false }
            return seen.withUnsafeBufferPointer { seen in seen[i >> 6] >> UInt64(i & 63) & 1 != 0 }
        }
        return table.withUnsafeBufferPointer { table in
            let key = trigram &+ 1
            let mask = table.count - 1
            var i = Int(truncatingIfNeeded: Self.mix(trigram) >> shift)
            while true {
                let k = table[i]
                if k == key { return true }
                if k == 0 { return false }
                i = (i + 1) & mask
            }
        }
    }

    /// The bit of an ASCII trigram (three scalars below 128) in `seen`, else nil.
    @inline(__always) static func bitmap(_ trigram: UInt64) -> Int? {
        let a = trigram >> 42, b = trigram >> 21 & 0x1F_FFFF, c = trigram & 0x1F_FFFF
        return a | b | c < 128 ? Int(truncatingIfNeeded: a << 14 | b << 7 | c) : nil
    }

    /// Loads an ASCII text's distinct trigrams through the bitmap, with `Trigrams.set`'s
    /// normalisation (CSketch: ASCII whitespace runs become one space, trimmed at both ends, and
    /// A-Z are lower-cased). False (with what was read so far loaded, for `clear` to remove) when
    /// the text is not ASCII.
    private mutating func fillASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        if seen.isEmpty { seen = Array(repeating: 0, count: 1 << 15) }
        ascii = true
        let capacity = Swift.max(1, bytes.count)
        var ok: Int32 = 0
        var found = 0
        var hashes: [UInt32] = []
        let keys = [UInt64](unsafeUninitializedCapacity: capacity) { keys, keyCount in
            hashes = [UInt32](unsafeUninitializedCapacity: capacity) { hashes, hashCount in
                seen.withUnsafeMutableBufferPointer { seen in
                    ok = csketch_ascii_trigrams(bytes.baseAddress, bytes.count, seen.baseAddress, keys.baseAddress, hashes.baseAddress, &found)
                }
                hashCount = found
            }
            keyCount = found
        }
        self.keys = keys
        self.hashes = hashes
        return ok != 0
    }

    /// Whether at least `need` of a set's `count` narrow trigram codes (`JoinCore.narrow`) are
    /// the loaded text's; nil when the loaded text is not ASCII (then ask `contains`).
    @inline(__always) func sharesAtLeast(_ codes: UnsafePointer<UInt32>, _ count: Int, _ need: Int) -> Bool? {
        guard ascii else { return nil }
        return seen.withUnsafeBufferPointer { seen in csketch_shares_at_least(codes, count, seen.baseAddress, need) != 0 }
    }

    /// Empties the table (or the bitmap) of the loaded text's trigrams.
    private mutating func clear() {
        if ascii {
            seen.withUnsafeMutableBufferPointer { seen in
                for trigram in keys { seen[Self.bitmap(trigram)! >> 6] = 0 }
            }
        } else {
            table.withUnsafeMutableBufferPointer { table in
                for i in slots { table[i] = 0 }
            }
        }
        keys.removeAll(keepingCapacity: true)
        hashes.removeAll(keepingCapacity: true)
        slots.removeAll(keepingCapacity: true)
    }

    /// A table at most half full with `n` more trigrams in it (it only grows, and only while empty).
    private mutating func reserve(_ n: Int) {
        guard n * 2 > table.count else { return }
        var bits = 10
        while (1 << bits) < n * 2 { bits += 1 }
        table = Array(repeating: 0, count: 1 << bits)
        shift = UInt64(64 - bits)
    }

    /// Runs `body`, which adds at most `capacity` trigrams, keeping the distinct ones.
    private mutating func fill(_ capacity: Int, _ body: ((UInt64) -> Void) -> Bool) -> Bool {
        var keys = [UInt64](repeating: 0, count: capacity)
        var hashes = [UInt32](repeating: 0, count: capacity)
        var slots = [Int](repeating: 0, count: capacity)
        var k = 0
        let shift = shift
        let ok = table.withUnsafeMutableBufferPointer { table in
            keys.withUnsafeMutableBufferPointer { keys in
                hashes.withUnsafeMutableBufferPointer { hashes in
                    slots.withUnsafeMutableBufferPointer { slots in
                        let mask = table.count - 1
                        return body { trigram in
                            let key = trigram &+ 1
                            let h = Self.mix(trigram)
                            var i = Int(truncatingIfNeeded: h >> shift)
                            while true {
                                let t = table[i]
                                if t == key { return }
                                if t == 0 { break }
                                i = (i + 1) & mask
                            }
                            table[i] = key
                            keys[k] = trigram
                            hashes[k] = UInt32(truncatingIfNeeded: h)
                            slots[k] = i
                            k += 1
                        }
                    }
                }
            }
        }
        keys.removeLast(capacity - k)
        hashes.removeLast(capacity - k)
        slots.removeLast(capacity - k)
        self.keys = keys
        self.hashes = hashes
        self.slots = slots
        return ok
    }

    /// The same hash the ASCII reader gives its trigrams (CSketch).
    @inline(__always) static func mix(_ x: UInt64) -> UInt64 { csketch_mix(x) }
}
