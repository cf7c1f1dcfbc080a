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

static int kernel = -1;

int csketch_kernel(void)
{
	if (kernel < 0) {
#if defined(__x86_64__)
		__builtin_cpu_init();
		kernel = __builtin_cpu_supports("avx2") ? 2 : 1;
#else
		kernel = 0;
#endif
	}
	return kernel;
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
