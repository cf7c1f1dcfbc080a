/*
 * probe: runs one libsynthc call per scenario against tests/fake_server.py and prints what the client
 * made of the answer, one line per scenario, for test_synthc.py to check:
 *
 *   probe ADDRESS SCENARIO...
 *   NAME rc=ok|err items=N records=N bytes=N fnv=HEX err=KIND code=CODE ecode=ERROR_CODE connected=0|1 after=KIND/ECODE
 *
 * Each scenario gets a new connection whose API key is the scenario's name: that is how the fake
 * server knows what to send. The call depends on the name's prefix:
 *   unary_*      GetJob
 *   maxframe_*   GetJob with a 1024-byte frame limit
 *   hang_*       GetJob with a 300 ms I/O timeout
 *   watch_*      WatchJob, read to its end
 *   splits_*     FetchSplits, read to its end
 *   abandon_*    WatchJob, one item, then synthc_stream_free
 * Then a Health call on the same client ("after"), which shows whether the connection survived.
 * "fnv" is the FNV-1a hash of every record's JSON, each followed by a newline.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synthc.h"

static void probe(const char *address, const char *name)
{
	synthc_client *c = synthc_connect(address, name);
	if (c == NULL) {
		printf("%s rc=oom\n", name);
		return;
	}
	if (c->err) {
		printf("%s rc=connect err=%s msg=%s\n", name, synthc_err_name(c->err), c->errstr);
		synthc_close(c);
		return;
	}
	synthc_set_io_timeout(c, strncmp(name, "hang_", 5) == 0 ? 300 : 10000);
	if (strncmp(name, "maxframe_", 9) == 0)
		synthc_set_max_frame_size(c, 1024);

	int ok = 0;
	long items = 0, records = 0;
	uint64_t bytes = 0, fnv = 14695981039346656037ull;
	int batched = strncmp(name, "bwatch_", 7) == 0 || strncmp(name, "bsplits_", 8) == 0;
	if (strncmp(name, "watch_", 6) == 0 || strncmp(name, "splits_", 7) == 0 || strncmp(name, "abandon_", 8) == 0 || batched) {
		const char *kind = batched ? name + 1 : name;
		synthc_stream *s = kind[0] == 's' ? (batched ? synthc_fetch_splits_batches(c, "syn_job_probe", NULL, 4096)
							     : synthc_fetch_splits(c, "syn_job_probe", NULL))
						  : (batched ? synthc_watch_job_batches(c, "syn_job_probe", 0, 4096)
							     : synthc_watch_job(c, "syn_job_probe", 0, 0));
		synthc_item it;
		int r = s ? 1 : -1;
		while (s && (r = synthc_stream_next(s, &it)) == 1) {
			items++;
			if (it.kind == SYNTHC_ITEM_RECORD) {
				records++;
				bytes += it.json_len;
				for (size_t i = 0; i <= it.json_len; i++) {
					fnv ^= i < it.json_len ? (uint8_t)it.json[i] : '\n';
					fnv *= 1099511628211ull;
				}
			} else if (it.kind == SYNTHC_ITEM_BATCH) {
				/* The lines already end in newlines: counted as the records they hold. */
				records += it.count;
				bytes += it.json_len - it.count;
				for (size_t i = 0; i < it.json_len; i++) {
					fnv ^= (uint8_t)it.json[i];
					fnv *= 1099511628211ull;
				}
			}
			if (name[0] == 'a')
				break;
		}
		ok = r == 0 || (name[0] == 'a' && r == 1);
		synthc_stream_free(s);
	} else {
		Synthd__V1__GetJobResponse *j = synthc_get_job(c, "syn_job_probe");
		ok = j != NULL;
		if (j)
			items = 1;
		synthc_free(j);
	}
	printf("%s rc=%s items=%ld records=%ld bytes=%" PRIu64 " fnv=%016" PRIx64 " err=%s code=%s ecode=%s connected=%d",
	       name, ok ? "ok" : "err", items, records, bytes, fnv, synthc_err_name(c->err), synthc_code_name(c->code),
	       c->error_code[0] ? c->error_code : "-", synthc_is_connected(c));
	const Synthd__V1__Status *st = synthc_status(c);
	if (st)
		printf(" field_errors=%zu", st->n_field_errors);
	char msg[sizeof c->errstr];
	snprintf(msg, sizeof msg, "%s", c->errstr);
	Synthd__V1__HealthResponse *h = synthc_health(c);
	printf(" after=%s/%s msg=%s\n", h ? "OK" : synthc_err_name(c->err), h ? "-" : (c->error_code[0] ? c->error_code : "-"),
	       msg);
	synthc_free(h);
	fflush(stdout);
	synthc_close(c);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: probe ADDRESS SCENARIO...\n");
		return 2;
	}
	for (int i = 2; i < argc; i++)
		probe(argv[1], argv[i]);
	return 0;
}
