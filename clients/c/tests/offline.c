/*
 * offline: the checks of libsynthc that need no server.
 *
 *   offline golden DIR     for every DIR/<Method>.frame (proto/testdata): the client's own encoder,
 *                          given the frame's method, key, timeout and request, writes the same bytes;
 *                          and <Method>.json parsed by the client's JSON reader packs to the same
 *                          request bytes. One line per method of service Synthd (the generated
 *                          descriptor), "ok Method" or "FAIL Method: why"; and a FAIL line for a
 *                          request type that two methods share (the library tells calls apart by it).
 *   offline json FILE...   parses each file as a JobRequest; prints "FILE HEX" (the packed message)
 *                          or "FILE ERR error_code: message".
 *
 * Exit status: the number of failures (golden), 0 (json).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synthc_internal.h"

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	size_t r;
	while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			char *b = realloc(buf, cap *= 2);
			if (b == NULL)
				free(buf);
			buf = b;
		}
	}
	fclose(f);
	*len = n;
	return buf;
}

static int golden_one(const char *dir, const char *method, const ProtobufCMessageDescriptor *desc)
{
	char path[4096];
	size_t len, jlen;
	int fail = 0;
	snprintf(path, sizeof path, "%s/%s.frame", dir, method);
	uint8_t *bytes = (uint8_t *)slurp(path, &len);
	snprintf(path, sizeof path, "%s/%s.json", dir, method);
	char *json = slurp(path, &jlen);
	if (bytes == NULL || json == NULL || len < 4) {
		printf("FAIL %s: cannot read its files\n", method);
		free(bytes);
		free(json);
		return 1;
	}
	Synthd__V1__Frame *f = synthd__v1__frame__unpack(NULL, len - 4, bytes + 4);
	ProtobufCMessage *req = NULL, *from_json = NULL;
	uint8_t *mine = NULL, *packed = NULL;
	if (f == NULL || f->kind_case != SYNTHD__V1__FRAME__KIND_OPEN || strcmp(f->open->method, method) != 0) {
		printf("FAIL %s: the frame is not an open of %s\n", method, method);
		fail = 1;
		goto out;
	}
	req = protobuf_c_message_unpack(desc, NULL, f->open->request.len, f->open->request.data);
	if (req == NULL) {
		printf("FAIL %s: the request does not decode\n", method);
		fail = 1;
		goto out;
	}
	size_t n = synthc_encode_open(NULL, f->call_id, method, f->open->api_key, f->open->timeout_ms, req);
	mine = malloc(n);
	if (mine == NULL || synthc_encode_open(mine, f->call_id, method, f->open->api_key, f->open->timeout_ms, req) != n ||
	    n != len || memcmp(mine, bytes, len) != 0) {
		size_t at = 0;
		while (mine && at < n && at < len && mine[at] == bytes[at])
			at++;
		printf("FAIL %s: encoded %zu bytes, the golden frame has %zu; first difference at byte %zu\n", method, n, len, at);
		fail = 1;
		goto out;
	}
	char err[700];
	int oom;
	from_json = synthc_message_from_json(desc, json, jlen, err, sizeof err, &oom);
	if (from_json == NULL) {
		printf("FAIL %s: the JSON reader refused %s.json: %s\n", method, method, err);
		fail = 1;
		goto out;
	}
	size_t pn = protobuf_c_message_get_packed_size(from_json);
	packed = malloc(pn ? pn : 1);
	if (packed == NULL || protobuf_c_message_pack(from_json, packed) != pn || pn != f->open->request.len ||
	    (pn > 0 && memcmp(packed, f->open->request.data, pn) != 0)) { /* an empty request has no data (NULL) */
		printf("FAIL %s: %s.json packs to %zu bytes, the golden request has %zu\n", method, method, pn,
		       f->open->request.len);
		fail = 1;
		goto out;
	}
	printf("ok %s\n", method);
out:
	free(mine);
	free(packed);
	synthc_free(req);
	synthc_free(from_json);
	if (f)
		synthd__v1__frame__free_unpacked(f, NULL);
	free(bytes);
	free(json);
	return fail;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "golden") == 0) {
		int failed = 0;
		/* Every method of service Synthd, as the library finds them (the generated descriptor). */
		const ProtobufCServiceDescriptor *sd = &synthd__v1__synthd__descriptor;
		for (unsigned i = 0; i < sd->n_methods; i++)
			failed += golden_one(argv[2], sd->methods[i].name, sd->methods[i].input);
		/* The library finds a call's method by its request's type, so no two methods may share one. */
		for (unsigned i = 0; i < sd->n_methods; i++)
			for (unsigned j = i + 1; j < sd->n_methods; j++)
				if (sd->methods[i].input == sd->methods[j].input) {
					printf("FAIL %s: its request type %s is %s's too\n", sd->methods[j].name,
					       sd->methods[j].input->name, sd->methods[i].name);
					failed++;
				}
		return failed;
	}
	if (argc >= 2 && strcmp(argv[1], "json") == 0) {
		/* Parsing needs no connection: a client that never connected carries the errors. */
		synthc_client *c = synthc_connect("unix:/nonexistent/synthc-offline.sock", "");
		if (c == NULL)
			return 100;
		for (int i = 2; i < argc; i++) {
			size_t len;
			char *json = slurp(argv[i], &len);
			if (json == NULL) {
				printf("%s ERR cannot read\n", argv[i]);
				continue;
			}
			Synthd__V1__JobRequest *jr = synthc_job_request_from_json(c, json, len);
			if (jr == NULL) {
				printf("%s ERR %s: %s\n", argv[i], c->error_code, c->errstr);
			} else {
				size_t n = protobuf_c_message_get_packed_size(&jr->base);
				uint8_t *b = malloc(n ? n : 1);
				if (b) {
					protobuf_c_message_pack(&jr->base, b);
					printf("%s ", argv[i]);
					for (size_t k = 0; k < n; k++)
						printf("%02x", b[k]);
					printf("\n");
				}
				free(b);
				synthc_free(jr);
			}
			free(json);
		}
		synthc_close(c);
		return 0;
	}
	fprintf(stderr, "usage: offline golden DIR | offline json FILE...\n");
	return 100;
}
