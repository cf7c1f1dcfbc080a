#ifndef CSKETCH_H
#define CSKETCH_H
#include <stddef.h>
#include <stdint.h>

/* The near-duplicate join's sketch filter (Sources/SynthQuality/NearDuplicateIndex.swift), in C so
 * that it can use AVX2 where the processor has it (chosen at run time).
 *
 * `sketches` holds `count` sketches of `vectors` 16-byte vectors each, two 4-bit counts a byte:
 * byte k of vector v holds dimension 32v + k in its low four bits and 32v + 16 + k in its high
 * four. `probe` holds 2 * `vectors` 16-byte vectors: per vector v, the probe's counts of the low
 * dimensions one a byte, then those of the high dimensions times 16.
 *
 * Returns the first entry e in from..<count whose L1 distance to the probe, the sum over all
 * dimensions of |count(probe) - count(e)|, is at most `slack`; or `count` when there is none. */
size_t csketch_next_within(const uint8_t *sketches, const uint8_t *probe, long slack, size_t from, size_t count,
                           size_t vectors);

/* 2 when the AVX2 kernel is in use, 1 for SSE2, 0 for the portable one. */
int csketch_kernel(void);

/* `csketch_next_within` with a given kernel (2, 1 or 0; one this processor lacks falls back to the
 * next), for the tests that hold each kernel to the portable one. */
size_t csketch_next_within_using(int which, const uint8_t *sketches, const uint8_t *probe, long slack, size_t from, size_t count,
                                 size_t vectors);

/* The distinct trigrams of an ASCII text, normalised as Trigrams.set normalises (ASCII whitespace
 * runs are one space, trimmed at both ends; A-Z lower-cased), in order of first appearance:
 * `keys` gets each packed as a << 42 | b << 21 | c and `hashes` the low 32 bits of its mix.
 * `seen` is a bitmap of all 2^21 ASCII trigrams (bit a << 14 | b << 7 | c), empty on entry; the
 * text's trigrams are left set in it. `keys` has room for `n` entries. Returns 1, or 0 at the
 * first byte that is not ASCII (with what was read so far in `keys`, `*count` of them). */
int csketch_ascii_trigrams(const uint8_t *bytes, size_t n, uint64_t *seen, uint64_t *keys, uint32_t *hashes, size_t *count);

/* Whether at least `need` of `count` trigram codes (three 10-bit scalars, a << 20 | b << 10 | c)
 * have their bit set in `seen` (as above; a code with a scalar of 128 or more has none). Stops
 * once the answer is known. */
int csketch_shares_at_least(const uint32_t *codes, size_t count, const uint64_t *seen, size_t need);

/* A set's sketch over `dims` dimensions: hash h counts in dimension (h * dims) >> 32, each count
 * capped at 15, one a byte in `counts`, which holds `dims` zeros on entry. Returns the sum of the
 * counts. */
uint32_t csketch_build(const uint32_t *hashes, size_t n, size_t dims, uint8_t *counts);

/* The hash of a packed trigram (splitmix64's finaliser): its low 32 bits pick the trigram's sketch
 * dimension, its high bits its slot in a probe's hash table. */
static inline uint64_t csketch_mix(uint64_t z)
{
	z *= 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* A pause while one thread polls another's progress. */
static inline void csketch_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

#endif
