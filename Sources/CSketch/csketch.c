#include "csketch.h"

static inline long abs_diff(int a, int b)
{
	return a > b ? a - b : b - a;
}

/* The same, one count at a time: the reference the vector kernels are tested against. */
static size_t next_portable(const uint8_t *sketches, const uint8_t *probe, long slack, size_t from, size_t count, size_t vectors)
{
	for (size_t e = from; e < count; e++) {
		const uint8_t *p = sketches + e * vectors * 16;
		long d = 0;
		for (size_t v = 0; v < vectors; v++) {
			for (size_t k = 0; k < 16; k++) {
				int y = p[16 * v + k];
				int a = probe[32 * v + k], b = probe[32 * v + 16 + k] >> 4;
				d += abs_diff(y & 15, a) + abs_diff(y >> 4, b);
			}
		}
		if (d <= slack)
			return e;
	}
	return count;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* One vector v of an entry against the probe: sums of absolute differences of the low nibbles and
 * of the high nibbles (the latter times 16), in the two 64-bit lanes of each result. */
static inline __m128i sad_vector(__m128i y, const __m128i *x, size_t v, __m128i *high)
{
	const __m128i lo = _mm_set1_epi8(0x0F), hi = _mm_set1_epi8((char)0xF0);
	*high = _mm_add_epi64(*high, _mm_sad_epu8(_mm_and_si128(y, hi), _mm_loadu_si128(x + 2 * v + 1)));
	return _mm_sad_epu8(_mm_and_si128(y, lo), _mm_loadu_si128(x + 2 * v));
}

static size_t next_sse2(const uint8_t *sketches, const uint8_t *probe, long slack, size_t from, size_t count, size_t vectors)
{
	const __m128i *x = (const __m128i *)probe;
	for (size_t e = from; e < count; e++) {
		const __m128i *p = (const __m128i *)(sketches + e * vectors * 16);
		__m128i low = _mm_setzero_si128(), high = _mm_setzero_si128();
		for (size_t v = 0; v < vectors; v++)
			low = _mm_add_epi64(low, sad_vector(_mm_loadu_si128(p + v), x, v, &high));
		__m128i t = _mm_add_epi64(low, _mm_srli_epi64(high, 4));
		long d = (long)_mm_cvtsi128_si64(t) + (long)_mm_cvtsi128_si64(_mm_unpackhi_epi64(t, t));
		if (d <= slack)
			return e;
	}
	return count;
}

/* Sketches of a length V fixed at compile time (so the loops unroll and the probe stays in
 * registers), two entries per iteration (so their sums are reduced and compared together).
 * `pl`/`ph`: the probe's low and high counts of vectors 2k and 2k + 1 side by side; `ol`/`oh`:
 * those of the last vector when V is odd. An odd last entry is compared twice. */
#define FIXED_KERNEL(V)                                                                                                          \
	__attribute__((target("avx2"))) static size_t next_avx2_##V(const uint8_t *sketches, const __m256i *pl, const __m256i *ph,  \
								    __m128i ol, __m128i oh, long slack, size_t from, size_t count) \
	{                                                                                                                        \
		const __m256i lo = _mm256_set1_epi8(0x0F), hi = _mm256_set1_epi8((char)0xF0);                                    \
		const __m128i lo1 = _mm_set1_epi8(0x0F), hi1 = _mm_set1_epi8((char)0xF0);                                        \
		const __m128i limit = _mm_set1_epi64x(slack);                                                                    \
		for (size_t e = from; e < count; e += 2) {                                                                       \
			const uint8_t *p = sketches + e * (V * 16);                                                              \
			const uint8_t *q = e + 1 < count ? p + V * 16 : p;                                                       \
			__m256i l0 = _mm256_setzero_si256(), h0 = l0, l1 = l0, h1 = l0;                                          \
			for (int k = 0; k < V / 2; k++) {                                                                        \
				__m256i y = _mm256_loadu_si256((const __m256i *)(p + 32 * k));                                   \
				__m256i z = _mm256_loadu_si256((const __m256i *)(q + 32 * k));                                   \
				l0 = _mm256_add_epi64(l0, _mm256_sad_epu8(_mm256_and_si256(y, lo), pl[k]));                     \
				h0 = _mm256_add_epi64(h0, _mm256_sad_epu8(_mm256_and_si256(y, hi), ph[k]));                     \
				l1 = _mm256_add_epi64(l1, _mm256_sad_epu8(_mm256_and_si256(z, lo), pl[k]));                     \
				h1 = _mm256_add_epi64(h1, _mm256_sad_epu8(_mm256_and_si256(z, hi), ph[k]));                     \
			}                                                                                                        \
			__m256i t0 = _mm256_add_epi64(l0, _mm256_srli_epi64(h0, 4));                                             \
			__m256i t1 = _mm256_add_epi64(l1, _mm256_srli_epi64(h1, 4));                                             \
			__m128i r0 = _mm_add_epi64(_mm256_castsi256_si128(t0), _mm256_extracti128_si256(t0, 1));                 \
			__m128i r1 = _mm_add_epi64(_mm256_castsi256_si128(t1), _mm256_extracti128_si256(t1, 1));                 \
			if (V & 1) {                                                                                             \
				__m128i y = _mm_loadu_si128((const __m128i *)(p + 32 * (V / 2)));                                \
				__m128i z = _mm_loadu_si128((const __m128i *)(q + 32 * (V / 2)));                                \
				r0 = _mm_add_epi64(r0, _mm_sad_epu8(_mm_and_si128(y, lo1), ol));                                 \
				r0 = _mm_add_epi64(r0, _mm_srli_epi64(_mm_sad_epu8(_mm_and_si128(y, hi1), oh), 4));              \
				r1 = _mm_add_epi64(r1, _mm_sad_epu8(_mm_and_si128(z, lo1), ol));                                 \
				r1 = _mm_add_epi64(r1, _mm_srli_epi64(_mm_sad_epu8(_mm_and_si128(z, hi1), oh), 4));              \
			}                                                                                                        \
			/* [d0, d1]: each entry's two lane sums added. */                                                        \
			__m128i d = _mm_add_epi64(_mm_unpacklo_epi64(r0, r1), _mm_unpackhi_epi64(r0, r1));                       \
			int over = _mm_movemask_pd(_mm_castsi128_pd(_mm_cmpgt_epi64(d, limit)));                                  \
			if (over != 3)                                                                                           \
				return (over & 1) ? e + 1 : e;                                                                   \
		}                                                                                                                \
		return count;                                                                                                    \
	}

FIXED_KERNEL(2)
FIXED_KERNEL(3)
FIXED_KERNEL(4)
FIXED_KERNEL(5)
FIXED_KERNEL(6)
FIXED_KERNEL(7)
FIXED_KERNEL(8)
FIXED_KERNEL(9)
FIXED_KERNEL(10)
FIXED_KERNEL(11)
FIXED_KERNEL(12)
FIXED_KERNEL(13)
FIXED_KERNEL(14)
FIXED_KERNEL(15)
FIXED_KERNEL(16)

/* Two vectors per instruction. The probe is first laid out as the entries are: the low-nibble
 * counts of vectors v and v + 1 side by side, and the high ones likewise. */
__attribute__((target("avx2"))) static size_t next_avx2(const uint8_t *sketches, const uint8_t *probe, long slack, size_t from,
							 size_t count, size_t vectors)
{
	enum { MAX_VECTORS = 64 };
	if (vectors > MAX_VECTORS)
		return next_sse2(sketches, probe, slack, from, count, vectors);
	const __m128i *x = (const __m128i *)probe;
	__m128i plow[MAX_VECTORS], phigh[MAX_VECTORS];
	for (size_t v = 0; v < vectors; v++) {
		plow[v] = _mm_loadu_si128(x + 2 * v);
		phigh[v] = _mm_loadu_si128(x + 2 * v + 1);
	}
	if (vectors >= 2 && vectors <= 16) {
		__m256i pl[8], ph[8];
		for (size_t k = 0; k < vectors / 2; k++) {
			pl[k] = _mm256_loadu_si256((const __m256i *)(plow + 2 * k));
			ph[k] = _mm256_loadu_si256((const __m256i *)(phigh + 2 * k));
		}
		__m128i ol = plow[vectors - 1], oh = phigh[vectors - 1];
		switch (vectors) {
		case 2: return next_avx2_2(sketches, pl, ph, ol, oh, slack, from, count);
		case 3: return next_avx2_3(sketches, pl, ph, ol, oh, slack, from, count);
		case 4: return next_avx2_4(sketches, pl, ph, ol, oh, slack, from, count);
		case 5: return next_avx2_5(sketches, pl, ph, ol, oh, slack, from, count);
		case 6: return next_avx2_6(sketches, pl, ph, ol, oh, slack, from, count);
		case 7: return next_avx2_7(sketches, pl, ph, ol, oh, slack, from, count);
		case 8: return next_avx2_8(sketches, pl, ph, ol, oh, slack, from, count);
		case 9: return next_avx2_9(sketches, pl, ph, ol, oh, slack, from, count);
		case 10: return next_avx2_10(sketches, pl, ph, ol, oh, slack, from, count);
		case 11: return next_avx2_11(sketches, pl, ph, ol, oh, slack, from, count);
		case 12: return next_avx2_12(sketches, pl, ph, ol, oh, slack, from, count);
		case 13: return next_avx2_13(sketches, pl, ph, ol, oh, slack, from, count);
		case 14: return next_avx2_14(sketches, pl, ph, ol, oh, slack, from, count);
		case 15: return next_avx2_15(sketches, pl, ph, ol, oh, slack, from, count);
		default: return next_avx2_16(sketches, pl, ph, ol, oh, slack, from, count);
		}
	}
	const __m256i lo = _mm256_set1_epi8(0x0F), hi = _mm256_set1_epi8((char)0xF0);
	const size_t pairs = vectors / 2;
	for (size_t e = from; e < count; e++) {
		const uint8_t *p = sketches + e * vectors * 16;
		__m256i low = _mm256_setzero_si256(), high = _mm256_setzero_si256();
		for (size_t k = 0; k < pairs; k++) {
			__m256i y = _mm256_loadu_si256((const __m256i *)(p + 32 * k));
			low = _mm256_add_epi64(low, _mm256_sad_epu8(_mm256_and_si256(y, lo), _mm256_loadu_si256((const __m256i *)(plow + 2 * k))));
			high = _mm256_add_epi64(high, _mm256_sad_epu8(_mm256_and_si256(y, hi), _mm256_loadu_si256((const __m256i *)(phigh + 2 * k))));
		}
		__m256i t = _mm256_add_epi64(low, _mm256_srli_epi64(high, 4));
		__m128i s = _mm_add_epi64(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
		if (vectors & 1) {
			__m128i y = _mm_loadu_si128((const __m128i *)(p + 32 * pairs));
			__m128i l = _mm_sad_epu8(_mm_and_si128(y, _mm_set1_epi8(0x0F)), plow[vectors - 1]);
			__m128i h = _mm_sad_epu8(_mm_and_si128(y, _mm_set1_epi8((char)0xF0)), phigh[vectors - 1]);
			s = _mm_add_epi64(s, _mm_add_epi64(l, _mm_srli_epi64(h, 4)));
		}
		long d = (long)_mm_cvtsi128_si64(s) + (long)_mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s));
		if (d <= slack)
			return e;
	}
	return count;
}

#endif

/* Chosen on first use; two threads may both choose it, and both choose the same, so relaxed
 * atomic accesses suffice. */
static int kernel = -1;

int csketch_kernel(void)
{
	int k = __atomic_load_n(&kernel, __ATOMIC_RELAXED);
	if (k < 0) {
#if defined(__x86_64__)
		__builtin_cpu_init();
		k = __builtin_cpu_supports("avx2") ? 2 : 1;
#else
		k = 0;
#endif
		__atomic_store_n(&kernel, k, __ATOMIC_RELAXED);
	}
	return k;
}

size_t csketch_next_within_using(int which, const uint8_t *sketches, const uint8_t *probe, long slack, size_t from, size_t count,
				 size_t vectors)
{
#if defined(__x86_64__)
	if (which == 2 && csketch_kernel() == 2)
		return next_avx2(sketches, probe, slack, from, count, vectors);
	if (which >= 1)
		return next_sse2(sketches, probe, slack, from, count, vectors);
#endif
	(void)which;
	return next_portable(sketches, probe, slack, from, count, vectors);
}

size_t csketch_next_within(const uint8_t *sketches, const uint8_t *probe, long slack, size_t from, size_t count, size_t vectors)
{
	return csketch_next_within_using(csketch_kernel(), sketches, probe, slack, from, count, vectors);
}

int csketch_ascii_trigrams(const uint8_t *bytes, size_t n, uint64_t *seen, uint64_t *keys, uint32_t *hashes, size_t *count)
{
	uint64_t a = 0, b = 0;
	size_t have = 0, k = 0;
	int pending_space = 0, ascii = 1;
	/* Three 7-bit scalars: the trigram is a << 42 | b << 21 | c, its bit a << 14 | b << 7 | c. Every
	 * trigram is written; the count only moves past a new one. */
#define ADD(c)                                                            \
	do {                                                              \
		uint64_t t_ = a << 42 | b << 21 | (c);                    \
		uint64_t i_ = a << 14 | b << 7 | (c);                     \
		uint64_t bit_ = 1ull << (i_ & 63), word_ = seen[i_ >> 6]; \
		seen[i_ >> 6] = word_ | bit_;                             \
		keys[k] = t_;                                             \
		k += (word_ & bit_) == 0;                                 \
	} while (0)
	for (size_t p = 0; p < n; p++) {
		uint8_t byte = bytes[p];
		if (byte >= 0x80) {
			ascii = 0;
			break;
		}
		if (byte == 0x20 || (uint8_t)(byte - 0x09) <= 0x0D - 0x09) {
			pending_space = have > 0;
			continue;
		}
		if (pending_space) {
			if (have >= 2)
				ADD(0x20);
			a = b;
			b = 0x20;
			have++;
			pending_space = 0;
		}
		uint64_t c = (uint8_t)(byte - 0x41) <= 0x5A - 0x41 ? (uint64_t)(byte | 0x20) : byte;
		if (have >= 2)
			ADD(c);
		a = b;
		b = c;
		have++;
	}
#undef ADD
	for (size_t i = 0; i < k; i++)
		hashes[i] = (uint32_t)csketch_mix(keys[i]);
	*count = k;
	return ascii;
}

int csketch_shares_at_least(const uint32_t *codes, size_t count, const uint64_t *seen, size_t need)
{
	/* A code holds three 10-bit scalars; it has a bit in `seen` when all three are below 128. The
	 * read takes each scalar's low seven bits, so that it stays inside `seen` for every code; a
	 * code with a larger scalar then counts nothing. */
	const uint32_t high = 0x380u << 20 | 0x380u << 10 | 0x380u;
	size_t shared = 0, i = 0;
	while (i < count) {
		size_t end = count - i > 32 ? i + 32 : count;
		for (; i < end; i++) {
			uint32_t code = codes[i];
			uint32_t bit = ((code >> 20) & 0x7F) << 14 | ((code >> 10) & 0x7F) << 7 | (code & 0x7F);
			shared += (size_t)((seen[bit >> 6] >> (bit & 63)) & 1) & (size_t)((code & high) == 0);
		}
		if (shared >= need)
			return 1;
		if (shared + (count - i) < need)
			return 0;
	}
	return shared >= need;
}

uint32_t csketch_build(const uint32_t *hashes, size_t n, size_t dims, uint8_t *counts)
{
	for (size_t i = 0; i < n; i++) {
		size_t d = (size_t)(((uint64_t)hashes[i] * dims) >> 32);
		uint8_t c = counts[d];
		counts[d] = c + (c < 15);
	}
	uint32_t sum = 0;
	for (size_t d = 0; d < dims; d++)
		sum += counts[d];
	return sum;
}
