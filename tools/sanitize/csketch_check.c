/* CSketch under AddressSanitizer and UBSan (tools/test-sanitize): every entry point on random
 * inputs of every size up to a few vectors, with buffers allocated exactly (so a read one byte
 * past the end is caught), and each SIMD kernel held to the portable one and to a distance
 * computed here. Exit status 0 when all agree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "csketch.h"

static uint64_t state = 0x243F6A8885A308D3ull;
static uint64_t rnd(void) { return csketch_mix(state++); }

static long distance(const uint8_t *sketch, const uint8_t *probe, size_t vectors)
{
	long d = 0;
	for (size_t v = 0; v < vectors; v++)
		for (size_t k = 0; k < 16; k++) {
			int lo = sketch[16 * v + k] & 15, hi = sketch[16 * v + k] >> 4;
			int plo = probe[32 * v + k], phi = probe[32 * v + 16 + k] / 16;
			d += labs((long)lo - plo) + labs((long)hi - phi);
		}
	return d;
}

int main(void)
{
	int failures = 0;
	long checks = 0;
	for (size_t vectors = 1; vectors <= 6; vectors++)
		for (size_t count = 0; count <= 40; count += 1 + count / 4)
			for (int round = 0; round < 40; round++) {
				uint8_t *sk = malloc(count * 16 * vectors + 1), *probe = malloc(32 * vectors);
				for (size_t i = 0; i < count * 16 * vectors; i++)
					sk[i] = (uint8_t)rnd();
				for (size_t v = 0; v < vectors; v++)
					for (size_t k = 0; k < 16; k++) {
						probe[32 * v + k] = rnd() & 15;
						probe[32 * v + 16 + k] = (uint8_t)((rnd() & 15) * 16);
					}
				long slack = (long)(rnd() % (60 * vectors + 1));
				size_t from = count ? rnd() % (count + 1) : 0;
				size_t want = count;
				for (size_t e = from; e < count; e++)
					if (distance(sk + 16 * vectors * e, probe, vectors) <= slack) {
						want = e;
						break;
					}
				for (int which = 0; which <= 2; which++) {
					size_t got = csketch_next_within_using(which, sk, probe, slack, from, count, vectors);
					checks++;
					if (got != want) {
						fprintf(stderr, "kernel %d: vectors %zu count %zu from %zu slack %ld: %zu, expected %zu\n", which,
							vectors, count, from, slack, got, want);
						failures++;
					}
				}
				free(sk);
				free(probe);
			}

	uint64_t *seen = calloc((1u << 21) / 64, sizeof(uint64_t));
	for (size_t n = 0; n <= 300; n++) {
		uint8_t *text = malloc(n ? n : 1);
		for (size_t i = 0; i < n; i++)
			text[i] = (uint8_t)(rnd() % 5 == 0 ? ' ' : (n % 7 == 6 && i == n / 2 ? 0xC3 : 'A' + rnd() % 60));
		uint64_t *keys = malloc((n ? n : 1) * sizeof *keys);
		uint32_t *hashes = malloc((n ? n : 1) * sizeof *hashes);
		size_t got = 0;
		csketch_ascii_trigrams(text, n, seen, keys, hashes, &got);
		checks++;
		if (got > n) {
			fprintf(stderr, "trigrams: %zu of a %zu-byte text\n", got, n);
			failures++;
		}
		uint32_t *codes = malloc((n ? n : 1) * sizeof *codes);
		for (size_t i = 0; i < n; i++)
			codes[i] = (uint32_t)(rnd() & 0x3FFFFFFF);
		csketch_shares_at_least(codes, n, seen, n / 2);
		for (size_t dims = 32; dims <= 192; dims += 32) {
			uint8_t *counts = calloc(dims, 1);
			uint32_t sum = csketch_build(hashes, got, dims, counts);
			uint32_t again = 0;
			for (size_t d = 0; d < dims; d++) {
				again += counts[d];
				if (counts[d] > 15)
					failures++;
			}
			checks++;
			if (sum != again) {
				fprintf(stderr, "build: sum %u, counts add to %u\n", sum, again);
				failures++;
			}
			free(counts);
		}
		memset(seen, 0, (1u << 21) / 8);
		free(text);
		free(keys);
		free(hashes);
		free(codes);
	}
	free(seen);
	printf("csketch_check: kernel %d in use; %ld checks, %d failures\n", csketch_kernel(), checks, failures);
	return failures ? 1 : 0;
}
