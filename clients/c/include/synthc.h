/*
 * synthc: a small blocking C client for synthd, on libprotobuf-c.
 *
 * One synthc_client is one connection (Unix socket or TCP) carrying one call at a time. Unary calls
 * return the decoded response message, which the caller frees with synthc_free(). The two server
 * streams (WatchJob, FetchSplits) are read item by item with synthc_stream_next(); a record's JSON
 * points straight into the client's read buffer, so reading a stream allocates nothing per record.
 *
 * Errors live on the client, as in hiredis: a call that fails returns NULL (or -1) and sets
 * c->err, c->code, c->error_code and c->errstr. Nothing in the library calls exit() or prints.
 *
 *   synthc_client *c = synthc_connect(NULL, NULL);       // $SYNTH_ADDRESS, $SYNTH_API_KEY
 *   if (c == NULL || c->err) { ...; synthc_close(c); }
 *   Synthd__V1__GetJobResponse *r = synthc_get_job(c, "syn_job_...");
 *   if (r == NULL) fprintf(stderr, "%s: %s\n", synthc_code_name(c->code), c->errstr);
 *   else { printf("%s\n", r->job->status); synthc_free(r); }
 *   synthc_close(c);
 *
 * Not thread-safe: use one client per thread. See README.md for the details of each call.
 */
#ifndef SYNTHC_H
#define SYNTHC_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "synthd/v1/frame.pb-c.h"
#include "synthd/v1/request.pb-c.h"
#include "synthd/v1/service.pb-c.h"
#include "synthd/v1/status.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SYNTHC_VERSION "0.3.0"

/* The default largest frame, in either direction (the server's default too). */
#define SYNTHC_DEFAULT_MAX_FRAME (16u * 1024u * 1024u)
/* The default deadline of unary calls (CallOpen.timeout_ms); streams have none by default. */
#define SYNTHC_DEFAULT_TIMEOUT_MS 60000u

/* c->err: what kind of failure the last call had. */
enum synthc_err {
	SYNTHC_OK = 0,
	/* Could not connect, read or write; the connection closed; or an I/O timeout. The connection
	 * is closed: synthc_reconnect() opens a new one. code: UNAVAILABLE (DEADLINE_EXCEEDED for a
	 * timeout). error_code: CONNECT_FAILED, TLS_FAILED, CONNECTION_CLOSED, IO_ERROR or TIMEOUT. */
	SYNTHC_ERR_IO = 1,
	/* synthd sent bytes that break the protocol. The connection is closed. code: INTERNAL.
	 * error_code: FRAME_TOO_LARGE, EMPTY_FRAME, MALFORMED_FRAME, TRUNCATED_FRAME,
	 * MALFORMED_MESSAGE (a payload that does not decode as the method's response),
	 * UNEXPECTED_FRAME (a frame that does not fit the call) or BAD_SEQUENCE (stream records out of
	 * order, or a split with more or fewer records than it announced). */
	SYNTHC_ERR_PROTOCOL = 2,
	/* synthd answered with a non-OK status. code, error_code and errstr are the status's; the whole
	 * status (field errors, suggestions, retry-after) is synthc_status(c). A status on call 0 is a
	 * connection-level error: the connection is closed after it. Otherwise the connection stays
	 * usable. */
	SYNTHC_ERR_STATUS = 3,
	/* A bad argument or a call made in the wrong state. code: INVALID_ARGUMENT or
	 * FAILED_PRECONDITION. error_code: BAD_ADDRESS, BAD_ARGUMENT, REQUEST_TOO_LARGE, BUSY (a stream
	 * is open on this client) or NOT_CONNECTED. */
	SYNTHC_ERR_ARG = 4,
	/* Out of memory. code: RESOURCE_EXHAUSTED. */
	SYNTHC_ERR_OOM = 5,
};

/* The connection. The fields below are public and read-only; the rest is private. */
typedef struct synthc_client {
	int err;                /* enum synthc_err; 0 when the last call succeeded */
	int code;               /* a StatusCode (SYNTHD__V1__STATUS_CODE__*), gRPC's numbers */
	char error_code[64];    /* the stable error code for programs, "" when none */
	char errstr[1024];      /* a message for people */
} synthc_client;

/* ---- Connecting --------------------------------------------------------------------------------- */

/* Connects to `address`: "unix:PATH", "unix://PATH", a path starting with '/' or '.', "HOST:PORT",
 * "[IPV6]:PORT" or "tls:HOST:PORT". NULL means $SYNTH_ADDRESS, else unix:$HOME/.synthd/synthd.sock. `api_key` NULL
 * means $SYNTH_API_KEY (or none). Returns NULL only when out of memory; otherwise check c->err. */
synthc_client *synthc_connect(const char *address, const char *api_key);
/* The same, for a "tls:HOST:PORT" (or "tls://HOST:PORT") address: TLS 1.2 or newer through
 * OpenSSL. `ca_file` is the CA certificate (PEM) that signed synthd's certificate (NULL means
 * $SYNTH_TLS_CA, else the system's trust roots); `cert_file` and `key_file` a client certificate
 * and its key for mutual TLS (NULL means $SYNTH_TLS_CERT and $SYNTH_TLS_KEY, or none). The server's
 * certificate must name HOST (a DNS name, or the IP address dialled). synthc_connect takes a tls:
 * address too, with the environment's files. A certificate that does not verify, or a handshake the
 * server refuses, is SYNTHC_ERR_IO / TLS_FAILED; files that do not load, SYNTHC_ERR_ARG /
 * BAD_TLS_FILES. */
synthc_client *synthc_connect_tls(const char *address, const char *api_key, const char *ca_file, const char *cert_file,
				  const char *key_file);
synthc_client *synthc_connect_unix(const char *path, const char *api_key);
synthc_client *synthc_connect_tcp(const char *host, int port, const char *api_key);

/* Closes the connection and frees everything the client holds. An open stream is detached from it:
 * its handle then returns -1 from synthc_stream_next and still needs synthc_stream_free. NULL is
 * fine. */
void synthc_close(synthc_client *c);

/* Closes the connection and connects again to the same address. An open stream is detached, as by
 * synthc_close. 0, or -1 with c->err. */
int synthc_reconnect(synthc_client *c);

/* Whether the connection is open (it closes on I/O and protocol errors). */
int synthc_is_connected(const synthc_client *c);

/* The API key sent with every call (NULL or "" for none). 0, or -1 with c->err. */
int synthc_set_api_key(synthc_client *c, const char *api_key);

/* The deadline synthd enforces on each unary call, in ms (0: none). Default 60000. */
void synthc_set_timeout(synthc_client *c, uint64_t timeout_ms);
/* The deadline of streams opened from now on, in ms (0: none, the default). */
void synthc_set_stream_timeout(synthc_client *c, uint64_t timeout_ms);
/* A local timeout on each socket read and write, in ms (0: block for ever, the default). When it
 * passes, the call fails with SYNTHC_ERR_IO / TIMEOUT and the connection is closed. A WatchJob
 * stream is silent while its job makes no progress: keep this above the longest quiet spell. */
int synthc_set_io_timeout(synthc_client *c, int timeout_ms);
/* The largest frame accepted from synthd and sent to it. Default 16 MiB; at least 64 bytes. */
int synthc_set_max_frame_size(synthc_client *c, uint32_t bytes);

/* ---- Errors ------------------------------------------------------------------------------------- */

/* The last status synthd sent on a failed call (SYNTHC_ERR_STATUS), with its field errors,
 * suggestions and retry-after; NULL after any other outcome. Owned by the client: valid until the
 * next call on it. */
const Synthd__V1__Status *synthc_status(const synthc_client *c);

/* "OK", "NOT_FOUND", ... for a StatusCode; "UNKNOWN_CODE" for a number outside the enum. */
const char *synthc_code_name(int code);
/* "OK", "IO", "PROTOCOL", "STATUS", "ARG", "OOM". */
const char *synthc_err_name(int err);

/* Frees any message a synthc call returned (a response, or a JobRequest from JSON). NULL is fine. */
void synthc_free(void *message);

/* ---- Unary calls -------------------------------------------------------------------------------- */
/* Each returns the response, to be freed with synthc_free(), or NULL with the error on the client. */

Synthd__V1__GenerateResponse *synthc_generate(synthc_client *c, const Synthd__V1__GenerateRequest *req);
Synthd__V1__PlanResponse *synthc_plan(synthc_client *c, const Synthd__V1__PlanRequest *req);
Synthd__V1__GetJobResponse *synthc_get_job(synthc_client *c, const char *job_id);
/* status "" or NULL: every status; limit 0: 50; page_token NULL or "": the first page. */
Synthd__V1__ListJobsResponse *synthc_list_jobs(synthc_client *c, const char *status, int32_t limit,
					       const char *page_token);
Synthd__V1__CancelJobResponse *synthc_cancel_job(synthc_client *c, const char *job_id);
Synthd__V1__GetQualityReportResponse *synthc_get_quality_report(synthc_client *c, const char *job_id);
Synthd__V1__GetManifestResponse *synthc_get_manifest(synthc_client *c, const char *job_id);
Synthd__V1__GetPricingResponse *synthc_get_pricing(synthc_client *c);
Synthd__V1__HealthResponse *synthc_health(synthc_client *c);
Synthd__V1__CreateApiKeyResponse *synthc_create_api_key(synthc_client *c, const char *name);
Synthd__V1__ListApiKeysResponse *synthc_list_api_keys(synthc_client *c);
Synthd__V1__RevokeApiKeyResponse *synthc_revoke_api_key(synthc_client *c, const char *key_id);
/* An ended job and everything of it (records, events, manifest, exports). Added in 0.3.0. */
Synthd__V1__DeleteJobResponse *synthc_delete_job(synthc_client *c, const char *job_id);
/* The org's usage this month and what its plan has left. Added in 0.3.0. */
Synthd__V1__GetUsageResponse *synthc_get_usage(synthc_client *c);

/* Any unary method by name: `request` is the method's request message, `response` the descriptor of
 * its response type. Returns the decoded response (free with synthc_free) or NULL. */
ProtobufCMessage *synthc_call(synthc_client *c, const char *method, const ProtobufCMessage *request,
			      const ProtobufCMessageDescriptor *response);

/* ---- Requests from JSON ------------------------------------------------------------------------- */

/* Parses a documented JSON request body (the proto3 JSON mapping of JobRequest, original field names;
 * unknown fields are refused) into a JobRequest to free with synthc_free(). NULL on error, with the
 * reason on the client (SYNTHC_ERR_ARG / MALFORMED_REQUEST). */
Synthd__V1__JobRequest *synthc_job_request_from_json(synthc_client *c, const char *json, size_t len);

/* Generate and Plan with a JSON body, sent as it stands (request_json): the server answers with
 * every problem in it at once (MALFORMED_REQUEST with line and column for JSON syntax;
 * VALIDATION_ERROR listing unknown fields, wrong types and rule violations with their paths).
 * idempotency_key may be NULL. */
Synthd__V1__GenerateResponse *synthc_generate_json(synthc_client *c, const char *json, size_t len,
						   const char *idempotency_key, int domain_confirmed);
Synthd__V1__PlanResponse *synthc_plan_json(synthc_client *c, const char *json, size_t len,
					   int domain_confirmed);

/* ---- Streams ------------------------------------------------------------------------------------ */

typedef struct synthc_stream synthc_stream;

enum synthc_item_kind {
	SYNTHC_ITEM_RECORD = 1,   /* WatchJob and FetchSplits: seq, json, json_len */
	SYNTHC_ITEM_PROGRESS = 2, /* WatchJob: job, a snapshot of the job */
	SYNTHC_ITEM_SPLIT = 3,    /* FetchSplits: split, announcing the records that follow */
	SYNTHC_ITEM_BATCH = 4,    /* batched streams: count records as JSONL in json, json_len */
};

/* One item of a stream. What it points to stays valid until the next call on the client or the
 * stream (synthc_stream_next, any unary call, synthc_stream_free): copy what you keep. */
typedef struct synthc_item {
	int kind;                             /* enum synthc_item_kind */
	uint64_t seq;                         /* RECORD: the record's sequence number in the job */
	const char *json;                     /* RECORD: the exact JSON line, not NUL-terminated */
	size_t json_len;                      /* RECORD: its length in bytes, without a newline */
	const Synthd__V1__Job *job;           /* PROGRESS */
	const Synthd__V1__SplitInfo *split;   /* SPLIT */
	/* BATCH: json holds `count` (at least 1) consecutive records as JSON lines, each ending in
	 * "\n", ready to be written out as they are; json_len is their total length. On WatchJob, seq
	 * and last_seq are the first and the last record's sequence numbers; on FetchSplits both are 0
	 * (split order is not sequence order). Added in 0.2.0. */
	uint64_t last_seq;
	uint32_t count;
} synthc_item;

/* Opens WatchJob: the job's records with seq > after_seq in order, interleaved with progress
 * snapshots, until the job is final. progress_only leaves the records out. A client has at most one
 * open stream; unary calls fail with BUSY while it is open. NULL on error. */
synthc_stream *synthc_watch_job(synthc_client *c, const char *job_id, uint64_t after_seq, int progress_only);

/* WatchJob with the records in batches of about batch_bytes (4096 to 8388608; synthd moves other
 * values to the nearer end): BATCH items instead of RECORD items, interleaved with PROGRESS. The
 * fastest way to get a job as JSONL: a batch's bytes are written out as they arrived. NULL on error. */
synthc_stream *synthc_watch_job_batches(synthc_client *c, const char *job_id, uint64_t after_seq, uint32_t batch_bytes);

/* Opens FetchSplits on a succeeded job: for each split (or only `split` when it is not NULL or ""),
 * a SPLIT item, then its records in file order. NULL on error. */
synthc_stream *synthc_fetch_splits(synthc_client *c, const char *job_id, const char *split);

/* FetchSplits with each split's records in BATCH items of about batch_bytes (a batch never spans two
 * splits). NULL on error. */
synthc_stream *synthc_fetch_splits_batches(synthc_client *c, const char *job_id, const char *split, uint32_t batch_bytes);

/* Reads the next item: 1 with *item filled in; 0 when the stream ended with OK; -1 on error (on the
 * client; a non-OK status mid-stream is SYNTHC_ERR_STATUS). After 0 or -1 it keeps returning the
 * same. */
int synthc_stream_next(synthc_stream *s, synthc_item *item);

/* Asks synthd to stop the stream. Items already under way may still arrive; the stream then ends
 * with CANCELLED (-1, code CANCELLED). 0 or -1. */
int synthc_stream_cancel(synthc_stream *s);

/* Frees a stream. If it has not ended, it is cancelled and what synthd still sends for it is
 * skipped, so the client can make its next call at once. NULL is fine. */
void synthc_stream_free(synthc_stream *s);

#ifdef __cplusplus
}
#endif

#endif /* SYNTHC_H */
