/*
 * synth-c-watch: writes a job's records to stdout as JSONL, with libsynthc.
 *
 *   synth-c-watch [options] JOB_ID             follow the job live (WatchJob) until it ends
 *   synth-c-watch --splits [options] JOB_ID    read a succeeded job's splits (FetchSplits)
 *
 * Options:
 *   --address ADDR     unix:PATH, HOST:PORT or tls:HOST:PORT (default $SYNTH_ADDRESS, else unix:~/.synthd/synthd.sock)
 *   --api-key KEY      the API key (default $SYNTH_API_KEY)
 *   --tls-ca FILE      TLS: the CA certificate (PEM) that signed synthd's (default $SYNTH_TLS_CA, else the system's roots)
 *   --tls-cert FILE    mutual TLS: this client's certificate (default $SYNTH_TLS_CERT)
 *   --tls-key FILE     mutual TLS: its private key (default $SYNTH_TLS_KEY)
 *   --after-seq N      watch: start after record N
 *   --progress         watch: print each progress snapshot to stderr
 *   --retry-for SECS   watch: on a dropped connection or UNAVAILABLE, reconnect and resume for up to SECS (default 10; 0: never)
 *   --split NAME       splits: only this split
 *   --dir DIR          splits: write NAME.jsonl per split into DIR instead of stdout
 *   --batch-bytes N    ask for the records in batches of about N bytes (default 1048576), written
 *                      out as they arrive; 0: one message per record
 *
 * Each split's SHA-256 is checked against the one synthd announces.
 *
 * Exit status: 0 when the job succeeded (watch) or every split was read (splits); 1 when the job
 * ended failed or cancelled, or on a protocol or output error; 6 when synthd cannot be reached; for a
 * status from synthd, the synth CLI's codes: 2 invalid argument or failed precondition,
 * 3 unauthenticated, 4 not found, 5 resource exhausted, 6 unavailable or deadline exceeded; 64 for
 * bad usage (a bad address included).
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <synthc.h>

#ifdef __GLIBC__
#define FWRITE fwrite_unlocked
#define PUTC putc_unlocked
#else
#define FWRITE fwrite
#define PUTC putc
#endif

#define OUT_BUFFER (1u << 20)

static const char *prog = "synth-c-watch";

static void usage(void)
{
	fprintf(stderr,
		"usage: %s [--address ADDR] [--api-key KEY] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [--after-seq N] [--progress]\n"
		"          [--retry-for SECS] [--batch-bytes N] JOB_ID\n"
		"       %s --splits [--split NAME] [--dir DIR] [--address ADDR] [--api-key KEY] [--tls-ca FILE] [--batch-bytes N] JOB_ID\n"
		"       %s --version\n",
		prog, prog, prog);
}

static int exit_code_for(const synthc_client *c)
{
	if (c->err == SYNTHC_ERR_IO)
		return 6;
	if (c->err == SYNTHC_ERR_ARG)
		return 64;
	if (c->err != SYNTHC_ERR_STATUS)
		return 1;
	switch (c->code) {
	case SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT:
	case SYNTHD__V1__STATUS_CODE__FAILED_PRECONDITION:
	case SYNTHD__V1__STATUS_CODE__OUT_OF_RANGE:
		return 2;
	case SYNTHD__V1__STATUS_CODE__UNAUTHENTICATED:
	case SYNTHD__V1__STATUS_CODE__PERMISSION_DENIED:
		return 3;
	case SYNTHD__V1__STATUS_CODE__NOT_FOUND:
		return 4;
	case SYNTHD__V1__STATUS_CODE__RESOURCE_EXHAUSTED:
		return 5;
	case SYNTHD__V1__STATUS_CODE__UNAVAILABLE:
	case SYNTHD__V1__STATUS_CODE__DEADLINE_EXCEEDED:
		return 6;
	}
	return 1;
}

static int report(const synthc_client *c)
{
	fprintf(stderr, "%s: %s%s%s: %s\n", prog, synthc_code_name(c->code), c->error_code[0] ? " " : "", c->error_code,
		c->errstr);
	return exit_code_for(c);
}

/* ---- SHA-256 (FIPS 180-4), to check each split against the hash synthd announces ---------------- */

typedef struct {
	uint32_t h[8];
	uint64_t n;
	uint8_t buf[64];
	size_t fill;
} sha256;

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) ((x) >> (n) | (x) << (32 - (n)))

static void sha256_block(sha256 *s, const uint8_t *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, h;
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
		uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
	}
	s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d, s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void sha256_init(sha256 *s)
{
	static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
				       0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	memcpy(s->h, iv, sizeof iv);
	s->n = 0;
	s->fill = 0;
}

static void sha256_update(sha256 *s, const void *data, size_t len)
{
	const uint8_t *p = data;
	s->n += len;
	if (s->fill) {
		size_t take = 64 - s->fill < len ? 64 - s->fill : len;
		memcpy(s->buf + s->fill, p, take);
		s->fill += take, p += take, len -= take;
		if (s->fill < 64)
			return;
		sha256_block(s, s->buf);
		s->fill = 0;
	}
	for (; len >= 64; p += 64, len -= 64)
		sha256_block(s, p);
	memcpy(s->buf, p, len);
	s->fill = len;
}

static void sha256_hex(sha256 *s, char out[65])
{
	uint64_t bits = s->n * 8;
	uint8_t pad = 0x80, zero = 0, len[8];
	sha256_update(s, &pad, 1);
	while (s->fill != 56)
		sha256_update(s, &zero, 1);
	for (int i = 0; i < 8; i++)
		len[i] = (uint8_t)(bits >> (56 - 8 * i));
	sha256_update(s, len, 8);
	for (int i = 0; i < 8; i++)
		snprintf(out + 8 * i, 9, "%08x", s->h[i]);
}

/* ---- Modes -------------------------------------------------------------------------------------- */

/* A RECORD item's line, or a BATCH item's lines as they are. */
static int write_record(FILE *out, const synthc_item *it)
{
	if (FWRITE(it->json, 1, it->json_len, out) != it->json_len)
		return -1;
	if (it->kind == SYNTHC_ITEM_RECORD && PUTC('\n', out) == EOF)
		return -1;
	return 0;
}

static uint32_t batch_bytes = 1u << 20;

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int watch(synthc_client *c, const char *job_id, uint64_t after_seq, int progress, double retry_for)
{
	char status[32] = "", error[512] = "";
	uint64_t last = after_seq;
	double retry_until = 0;
	for (;;) {
		synthc_stream *s = !synthc_is_connected(c) ? NULL
				   : batch_bytes ? synthc_watch_job_batches(c, job_id, last, batch_bytes)
						 : synthc_watch_job(c, job_id, last, 0);
		synthc_item it;
		int r = -1;
		while (s && (r = synthc_stream_next(s, &it)) == 1) {
			retry_until = 0;
			if (it.kind == SYNTHC_ITEM_RECORD || it.kind == SYNTHC_ITEM_BATCH) {
				if (write_record(stdout, &it) != 0)
					break;
				last = it.kind == SYNTHC_ITEM_BATCH ? it.last_seq : it.seq;
			} else if (it.kind == SYNTHC_ITEM_PROGRESS) {
				/* Hand what has arrived to the reader at each snapshot: live, yet buffered. */
				if (fflush(stdout) != 0)
					break;
				snprintf(status, sizeof status, "%s", it.job->status);
				snprintf(error, sizeof error, "%s", it.job->error);
				if (progress)
					fprintf(stderr, "%s %s %" PRId64 "/%" PRId64 " accepted, %" PRId64 " rejected, last seq %" PRIu64 "\n",
						it.job->job_id, it.job->status, it.job->accepted, it.job->count, it.job->rejected,
						it.job->last_seq);
			}
		}
		synthc_stream_free(s);
		if (r == 1 || fflush(stdout) != 0) {
			fprintf(stderr, "%s: writing the records failed: %s\n", prog, strerror(errno));
			return 1;
		}
		if (r == 0)
			break;
		/* A dropped connection, or a server that ended the call UNAVAILABLE as it stopped:
		 * resume after the last record written, for a while. */
		int retryable = c->err == SYNTHC_ERR_IO ||
				(c->err == SYNTHC_ERR_STATUS && c->code == SYNTHD__V1__STATUS_CODE__UNAVAILABLE);
		if (!retryable || retry_for <= 0)
			return report(c);
		if (retry_until == 0) {
			retry_until = now_s() + retry_for;
			fprintf(stderr, "%s: %s; reconnecting to resume after record %" PRIu64 "\n", prog, c->errstr, last);
		}
		if (now_s() >= retry_until)
			return report(c);
		sleep_ms(250);
		synthc_reconnect(c);
	}
	if (strcmp(status, "succeeded") != 0) {
		fprintf(stderr, "%s: job %s is %s%s%s\n", prog, job_id, status, error[0] ? ": " : "", error);
		return 1;
	}
	return 0;
}

static int safe_name(const char *n)
{
	return n[0] && strcmp(n, ".") != 0 && strcmp(n, "..") != 0 && strchr(n, '/') == NULL;
}

static int close_split(FILE **out, sha256 *h, const Synthd__V1__SplitInfo *info, const char *path)
{
	char hex[65];
	int rc = 0;
	if (*out == NULL)
		return 0;
	if (*out != stdout) {
		if (fclose(*out) != 0) {
			fprintf(stderr, "%s: writing %s failed: %s\n", prog, path, strerror(errno));
			rc = 1;
		}
	} else if (fflush(stdout) != 0) {
		fprintf(stderr, "%s: writing the records failed: %s\n", prog, strerror(errno));
		rc = 1;
	}
	*out = NULL;
	sha256_hex(h, hex);
	if (rc == 0 && info->sha256[0] && strcmp(hex, info->sha256) != 0) {
		fprintf(stderr, "%s: split %s has SHA-256 %s, synthd announced %s\n", prog, info->name, hex, info->sha256);
		rc = 1;
	}
	return rc;
}

static int splits(synthc_client *c, const char *job_id, const char *split, const char *dir)
{
	if (dir && mkdir(dir, 0777) != 0 && errno != EEXIST) {
		fprintf(stderr, "%s: cannot create %s: %s\n", prog, dir, strerror(errno));
		return 1;
	}
	synthc_stream *s = batch_bytes ? synthc_fetch_splits_batches(c, job_id, split, batch_bytes)
				       : synthc_fetch_splits(c, job_id, split);
	if (s == NULL)
		return report(c);
	synthc_item it;
	FILE *out = NULL;
	sha256 h;
	Synthd__V1__SplitInfo info = SYNTHD__V1__SPLIT_INFO__INIT;
	char name[256] = "", hash[65] = "", path[4096] = "";
	int r, rc = 0;
	info.name = name;
	info.sha256 = hash;
	while ((r = synthc_stream_next(s, &it)) == 1) {
		if (it.kind == SYNTHC_ITEM_SPLIT) {
			if ((rc = close_split(&out, &h, &info, path)) != 0)
				break;
			snprintf(name, sizeof name, "%s", it.split->name);
			snprintf(hash, sizeof hash, "%s", it.split->sha256);
			sha256_init(&h);
			if (dir) {
				if (!safe_name(it.split->name)) {
					fprintf(stderr, "%s: refusing split name \"%s\" as a file name\n", prog, it.split->name);
					rc = 1;
					break;
				}
				snprintf(path, sizeof path, "%s/%s.jsonl", dir, it.split->name);
				if ((out = fopen(path, "w")) == NULL) {
					fprintf(stderr, "%s: cannot write %s: %s\n", prog, path, strerror(errno));
					rc = 1;
					break;
				}
				setvbuf(out, NULL, _IOFBF, OUT_BUFFER);
			} else {
				out = stdout;
			}
		} else if (it.kind == SYNTHC_ITEM_RECORD || it.kind == SYNTHC_ITEM_BATCH) {
			sha256_update(&h, it.json, it.json_len);
			if (it.kind == SYNTHC_ITEM_RECORD)
				sha256_update(&h, "\n", 1);
			if (write_record(out, &it) != 0) {
				fprintf(stderr, "%s: writing the records failed: %s\n", prog, strerror(errno));
				rc = 1;
				break;
			}
		}
	}
	if (rc == 0 && r < 0)
		rc = report(c);
	if (rc == 0)
		rc = close_split(&out, &h, &info, path);
	else if (out && out != stdout)
		fclose(out);
	synthc_stream_free(s);
	return rc;
}

int main(int argc, char **argv)
{
	const char *address = NULL, *api_key = NULL, *job_id = NULL, *split = NULL, *dir = NULL;
	const char *tls_ca = NULL, *tls_cert = NULL, *tls_key = NULL;
	uint64_t after_seq = 0;
	int progress = 0, splits_mode = 0;
	double retry_for = 10;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int has_value = i + 1 < argc;
		if (strcmp(a, "--address") == 0 && has_value) {
			address = argv[++i];
		} else if (strcmp(a, "--api-key") == 0 && has_value) {
			api_key = argv[++i];
		} else if (strcmp(a, "--tls-ca") == 0 && has_value) {
			tls_ca = argv[++i];
		} else if (strcmp(a, "--tls-cert") == 0 && has_value) {
			tls_cert = argv[++i];
		} else if (strcmp(a, "--tls-key") == 0 && has_value) {
			tls_key = argv[++i];
		} else if (strcmp(a, "--after-seq") == 0 && has_value) {
			char *end;
			errno = 0;
			after_seq = strtoull(argv[++i], &end, 10);
			if (errno || *end || argv[i][0] == '-' || argv[i][0] == '\0') {
				fprintf(stderr, "%s: --after-seq needs a number\n", prog);
				return 64;
			}
		} else if (strcmp(a, "--retry-for") == 0 && has_value) {
			char *end;
			retry_for = strtod(argv[++i], &end);
			if (*end || retry_for < 0) {
				fprintf(stderr, "%s: --retry-for needs a number of seconds\n", prog);
				return 64;
			}
		} else if (strcmp(a, "--batch-bytes") == 0 && has_value) {
			char *end;
			errno = 0;
			unsigned long long n = strtoull(argv[++i], &end, 10);
			if (errno || *end || argv[i][0] == '-' || argv[i][0] == '\0' || n > UINT32_MAX) {
				fprintf(stderr, "%s: --batch-bytes needs a number of bytes\n", prog);
				return 64;
			}
			batch_bytes = (uint32_t)n;
		} else if (strcmp(a, "--split") == 0 && has_value) {
			split = argv[++i];
			splits_mode = 1;
		} else if (strcmp(a, "--dir") == 0 && has_value) {
			dir = argv[++i];
			splits_mode = 1;
		} else if (strcmp(a, "--splits") == 0) {
			splits_mode = 1;
		} else if (strcmp(a, "--progress") == 0) {
			progress = 1;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage();
			return 0;
		} else if (strcmp(a, "--version") == 0) {
			printf("synth-c-watch %s\n", SYNTHC_VERSION);
			return 0;
		} else if (a[0] == '-' || job_id) {
			usage();
			return 64;
		} else {
			job_id = a;
		}
	}
	if (job_id == NULL) {
		usage();
		return 64;
	}
	setvbuf(stdout, NULL, _IOFBF, OUT_BUFFER);
	synthc_client *c = synthc_connect_tls(address, api_key, tls_ca, tls_cert, tls_key);
	if (c == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return 1;
	}
	int rc;
	if (c->err)
		rc = report(c);
	else if (splits_mode)
		rc = splits(c, job_id, split, dir);
	else
		rc = watch(c, job_id, after_seq, progress, retry_for);
	synthc_close(c);
	return rc;
}
