/*
 * test_client: every call of libsynthc against a real synthd (started by test_synthc.py with the fake
 * provider). Each test is named on the command line and prints "ok NAME" or "FAIL NAME" with the
 * failed checks; the exit status is the number of failed tests (capped at 100).
 *
 *   test_client health pricing auth ...
 *
 * Environment:
 *   SYNTH_ADDRESS         unix:PATH of the server
 *   SYNTHC_TCP_ADDRESS    HOST:PORT of the same server
 *   SYNTH_API_KEY         a key of org A
 *   SYNTHC_OTHER_KEY      a key of org B (isolation)
 *   SYNTHC_KEYS_KEY       the only key of org C (key management and the key limit)
 *   SYNTHC_MISSING_SOCKET a Unix path where nothing listens
 *   SYNTHC_CLOSED_PORT    a TCP port on 127.0.0.1 where nothing listens
 *
 * The "slow" tests (cancel, stream_cancel, stream_deadline, revoke_during_watch, live_watch) expect the
 * fake provider to answer slowly, so that a job runs for a few seconds.
 */
#define _GNU_SOURCE 1
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "synthc.h"

static int failed_checks;

#define CHECK(cond, ...)                                                                       \
	do {                                                                                   \
		if (!(cond)) {                                                                 \
			failed_checks++;                                                       \
			fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                          \
			fputc('\n', stderr);                                                   \
		}                                                                              \
	} while (0)

/* Checks that the last call failed with this kind and code (and error_code, when not NULL). */
#define CHECK_ERR(c, kind, status_code, ecode)                                                               \
	CHECK((c)->err == (kind) && (c)->code == (status_code) &&                                            \
		      ((ecode) == NULL || strcmp((c)->error_code, (ecode) ? (ecode) : "") == 0),             \
	      "want %s %s %s, got %s %s %s: %s", synthc_err_name(kind), synthc_code_name(status_code),       \
	      (ecode) ? (ecode) : "*", synthc_err_name((c)->err), synthc_code_name((c)->code), (c)->error_code, \
	      (c)->errstr)

#define CHECK_OK(c, ptr)                                                                           \
	CHECK((ptr) != NULL && (c)->err == SYNTHC_OK, "call failed: %s %s %s: %s", synthc_err_name((c)->err), \
	      synthc_code_name((c)->code), (c)->error_code, (c)->errstr)

static const char *env(const char *name)
{
	const char *v = getenv(name);
	if (v == NULL) {
		fprintf(stderr, "test_client: %s is not set\n", name);
		exit(100);
	}
	return v;
}

static synthc_client *client_with(const char *address, const char *key)
{
	synthc_client *c = synthc_connect(address, key);
	if (c == NULL) {
		fprintf(stderr, "out of memory\n");
		exit(100);
	}
	CHECK(c->err == SYNTHC_OK, "connect %s: %s", address, c->errstr);
	/* A hung server must fail the test, not hang it. */
	synthc_set_io_timeout(c, 60000);
	return c;
}

static synthc_client *client(void)
{
	return client_with(env("SYNTH_ADDRESS"), env("SYNTH_API_KEY"));
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- Requests ----------------------------------------------------------------------------------- */

/* instruction_v1, `count` records, split 75/25, built as protobuf-c structs. */
static Synthd__V1__GenerateResponse *generate(synthc_client *c, int64_t count, const char *idem)
{
	Synthd__V1__JobRequest jr = SYNTHD__V1__JOB_REQUEST__INIT;
	Synthd__V1__Advanced adv = SYNTHD__V1__ADVANCED__INIT;
	Synthd__V1__Advanced__OutputSplitEntry train = SYNTHD__V1__ADVANCED__OUTPUT_SPLIT_ENTRY__INIT;
	Synthd__V1__Advanced__OutputSplitEntry val = SYNTHD__V1__ADVANCED__OUTPUT_SPLIT_ENTRY__INIT;
	Synthd__V1__Advanced__OutputSplitEntry *split[2] = {&train, &val};
	train.key = "train";
	train.value = 75;
	val.key = "validation";
	val.value = 25;
	adv.n_output_split = 2;
	adv.output_split = split;
	jr.schema = "instruction_v1";
	jr.domain = "customer support for a SaaS product";
	jr.count = count;
	jr.model = "fast";
	jr.advanced = &adv;
	Synthd__V1__GenerateRequest req = SYNTHD__V1__GENERATE_REQUEST__INIT;
	req.request = &jr;
	req.idempotency_key = (char *)(idem ? idem : "");
	return synthc_generate(c, &req);
}

/* Generates a job and returns its id (malloc'd), or NULL. */
static char *new_job(synthc_client *c, int64_t count)
{
	Synthd__V1__GenerateResponse *g = generate(c, count, NULL);
	CHECK_OK(c, g);
	if (g == NULL)
		return NULL;
	char *id = strdup(g->job->job_id);
	synthc_free(g);
	return id;
}

/* Watches a job to its end; returns the number of records and checks the stream's invariants. */
static int64_t watch_all(synthc_client *c, const char *id, uint64_t after, char *final_status, size_t fs_len,
			 int *snapshots)
{
	synthc_stream *s = synthc_watch_job(c, id, after, 0);
	CHECK_OK(c, s);
	if (s == NULL)
		return -1;
	synthc_item it;
	int r;
	int64_t n = 0;
	uint64_t expect = after + 1;
	*snapshots = 0;
	final_status[0] = '\0';
	while ((r = synthc_stream_next(s, &it)) == 1) {
		if (it.kind == SYNTHC_ITEM_RECORD) {
			CHECK(it.seq == expect, "record seq %" PRIu64 ", want %" PRIu64, it.seq, expect);
			CHECK(it.json_len > 2 && it.json[0] == '{' && it.json[it.json_len - 1] == '}',
			      "record %" PRIu64 " is not a JSON object", it.seq);
			CHECK(memmem(it.json, it.json_len, id, strlen(id)) != NULL, "record %" PRIu64 " lacks its job id",
			      it.seq);
			expect = it.seq + 1;
			n++;
		} else {
			CHECK(it.kind == SYNTHC_ITEM_PROGRESS, "unexpected item kind %d", it.kind);
			CHECK(strcmp(it.job->job_id, id) == 0, "snapshot of %s", it.job->job_id);
			snprintf(final_status, fs_len, "%s", it.job->status);
			(*snapshots)++;
		}
	}
	CHECK(r == 0, "stream ended with %d: %s", r, c->errstr);
	CHECK(synthc_stream_next(s, &it) == r, "a finished stream does not repeat its end");
	synthc_stream_free(s);
	return n;
}

static void wait_final(synthc_client *c, const char *id)
{
	synthc_stream *s = synthc_watch_job(c, id, 0, 1);
	CHECK_OK(c, s);
	synthc_item it;
	while (s && synthc_stream_next(s, &it) == 1)
		;
	synthc_stream_free(s);
}

/* ---- Tests -------------------------------------------------------------------------------------- */

static void t_health(void)
{
	/* Public: no key needed. */
	synthc_client *c = client_with(env("SYNTH_ADDRESS"), "");
	Synthd__V1__HealthResponse *h = synthc_health(c);
	CHECK_OK(c, h);
	if (h) {
		CHECK(strcmp(h->status, "ok") == 0 || strcmp(h->status, "degraded") == 0, "status %s", h->status);
		CHECK(h->version[0] != '\0', "empty version");
		int store = 0;
		for (size_t i = 0; i < h->n_components; i++)
			store |= strcmp(h->components[i]->name, "store") == 0;
		CHECK(store, "no store component among %zu", h->n_components);
	}
	synthc_free(h);
	/* Several calls on one connection. */
	for (int i = 0; i < 50; i++) {
		h = synthc_health(c);
		CHECK_OK(c, h);
		synthc_free(h);
	}
	synthc_close(c);
}

static void t_tcp(void)
{
	synthc_client *c = client_with(env("SYNTHC_TCP_ADDRESS"), env("SYNTH_API_KEY"));
	Synthd__V1__HealthResponse *h = synthc_health(c);
	CHECK_OK(c, h);
	synthc_free(h);
	Synthd__V1__ListJobsResponse *l = synthc_list_jobs(c, NULL, 5, NULL);
	CHECK_OK(c, l);
	synthc_free(l);
	synthc_close(c);

	/* synthc_connect_tcp with host and port apart. */
	const char *addr = env("SYNTHC_TCP_ADDRESS");
	const char *colon = strrchr(addr, ':');
	char host[256];
	snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
	c = synthc_connect_tcp(host, atoi(colon + 1), NULL);
	CHECK(c && c->err == 0, "connect_tcp: %s", c ? c->errstr : "oom");
	h = synthc_health(c);
	CHECK_OK(c, h);
	synthc_free(h);
	synthc_close(c);

	/* synthc_connect_unix with a bare path. */
	c = synthc_connect_unix(env("SYNTH_ADDRESS") + 5, NULL);
	CHECK(c && c->err == 0, "connect_unix: %s", c ? c->errstr : "oom");
	h = synthc_health(c);
	CHECK_OK(c, h);
	synthc_free(h);
	synthc_close(c);
}

static void t_pricing(void)
{
	synthc_client *c = client_with(env("SYNTH_ADDRESS"), "");
	Synthd__V1__GetPricingResponse *p = synthc_get_pricing(c);
	CHECK_OK(c, p);
	if (p) {
		const char *want[] = {"fast", "balanced", "diverse", "deep"};
		for (size_t w = 0; w < 4; w++) {
			int found = 0;
			for (size_t i = 0; i < p->n_tiers; i++)
				if (strcmp(p->tiers[i]->tier, want[w]) == 0) {
					found = 1;
					CHECK(p->tiers[i]->instruction_per_1k_usd > 0, "tier %s has no instruction price", want[w]);
				}
			CHECK(found, "tier %s missing", want[w]);
		}
		CHECK(p->verified_per_1k_usd > 0, "verified price %f", p->verified_per_1k_usd);
	}
	synthc_free(p);
	synthc_close(c);
}

static void t_auth(void)
{
	synthc_client *c = client_with(env("SYNTH_ADDRESS"), "sk_live_thisisnotakey000000000000000000000");
	Synthd__V1__ListJobsResponse *l = synthc_list_jobs(c, NULL, 0, NULL);
	CHECK(l == NULL, "ListJobs with a bad key succeeded");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__UNAUTHENTICATED, NULL);
	CHECK(synthc_status(c) != NULL && synthc_status(c)->code == SYNTHD__V1__STATUS_CODE__UNAUTHENTICATED,
	      "synthc_status does not hold the status");
	/* The connection stays usable after a status error. */
	CHECK(synthc_is_connected(c), "a status error closed the connection");
	Synthd__V1__HealthResponse *h = synthc_health(c);
	CHECK_OK(c, h);
	CHECK(synthc_status(c) == NULL, "the status outlived the next call");
	synthc_free(h);
	/* Every method that needs a key. */
	Synthd__V1__GetJobResponse *g = synthc_get_job(c, "syn_job_x");
	CHECK(g == NULL, "GetJob");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__UNAUTHENTICATED, NULL);
	Synthd__V1__CreateApiKeyResponse *k = synthc_create_api_key(c, "nope");
	CHECK(k == NULL, "CreateApiKey");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__UNAUTHENTICATED, NULL);
	synthc_stream *s = synthc_watch_job(c, "syn_job_x", 0, 0);
	CHECK(s == NULL, "WatchJob opened");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__UNAUTHENTICATED, NULL);
	/* No key at all. */
	CHECK(synthc_set_api_key(c, NULL) == 0, "set_api_key");
	l = synthc_list_jobs(c, NULL, 0, NULL);
	CHECK(l == NULL, "ListJobs without a key succeeded");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__UNAUTHENTICATED, NULL);
	/* The right key on the same connection. */
	synthc_set_api_key(c, env("SYNTH_API_KEY"));
	l = synthc_list_jobs(c, NULL, 0, NULL);
	CHECK_OK(c, l);
	synthc_free(l);
	synthc_close(c);
}

static int has_field_error(const synthc_client *c, const char *field)
{
	const Synthd__V1__Status *st = synthc_status(c);
	if (st == NULL)
		return 0;
	for (size_t i = 0; i < st->n_field_errors; i++)
		if (strcmp(st->field_errors[i]->field, field) == 0)
			return st->field_errors[i]->rule[0] != '\0';
	return 0;
}

static void t_validation(void)
{
	synthc_client *c = client();
	Synthd__V1__JobRequest jr = SYNTHD__V1__JOB_REQUEST__INIT;
	jr.schema = "bogus_v9";
	jr.domain = "x";
	jr.count = 0;
	Synthd__V1__GenerateRequest req = SYNTHD__V1__GENERATE_REQUEST__INIT;
	req.request = &jr;
	Synthd__V1__GenerateResponse *g = synthc_generate(c, &req);
	CHECK(g == NULL, "an invalid request was accepted");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "VALIDATION_ERROR");
	CHECK(has_field_error(c, "schema"), "no field error for schema");
	CHECK(has_field_error(c, "count"), "no field error for count");

	Synthd__V1__PlanRequest preq = SYNTHD__V1__PLAN_REQUEST__INIT;
	preq.request = &jr;
	Synthd__V1__PlanResponse *p = synthc_plan(c, &preq);
	CHECK(p == NULL, "Plan accepted an invalid request");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "VALIDATION_ERROR");
	CHECK(has_field_error(c, "count"), "no field error for count");

	/* The same through JSON, and a nested path. */
	const char *bad = "{\"schema\":\"instruction_v1\",\"domain\":\"support\",\"count\":100,"
			  "\"advanced\":{\"output_split\":{\"train\":70,\"test\":10}}}";
	p = synthc_plan_json(c, bad, strlen(bad), 0);
	CHECK(p == NULL, "Plan accepted splits that do not add up");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "VALIDATION_ERROR");
	const Synthd__V1__Status *st = synthc_status(c);
	int nested = 0;
	for (size_t i = 0; st && i < st->n_field_errors; i++)
		nested |= strncmp(st->field_errors[i]->field, "advanced.output_split", 21) == 0;
	CHECK(nested, "no field error under advanced.output_split");

	/* categories and coverage together. */
	const char *both = "{\"schema\":\"instruction_v1\",\"domain\":\"support\",\"count\":100,\"advanced\":{"
			   "\"categories\":{\"a\":{\"percentage\":100}},"
			   "\"coverage\":{\"dimensions\":[{\"name\":\"d\",\"values\":[\"x\",\"y\"]}]}}}";
	g = synthc_generate_json(c, both, strlen(both), NULL, 0);
	CHECK(g == NULL, "categories with coverage accepted");
	CHECK(c->err == SYNTHC_ERR_STATUS && c->code == SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT,
	      "want INVALID_ARGUMENT, got %s %s", synthc_code_name(c->code), c->errstr);

	/* JSON the server refuses, every problem at once, each field named. */
	const char *unknown = "{\"schema\":\"instruction_v1\",\"domian\":\"support\",\"count\":\"ten\",\"model\":\"fast\"}";
	g = synthc_generate_json(c, unknown, strlen(unknown), NULL, 0);
	CHECK(g == NULL, "an unknown field was accepted");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "VALIDATION_ERROR");
	st = synthc_status(c);
	CHECK(st != NULL && st->n_field_errors == 3, "want 3 field errors (domian, count, domain), got %zu", st ? st->n_field_errors : 0);
	int saw_domian = 0, saw_count = 0;
	for (size_t i = 0; st && i < st->n_field_errors; i++) {
		saw_domian |= strcmp(st->field_errors[i]->field, "domian") == 0;
		saw_count |= strcmp(st->field_errors[i]->field, "count") == 0;
	}
	CHECK(saw_domian && saw_count, "the field errors do not name domian and count");
	const char *broken = "{\"schema\":\"instruction_v1\",\n \"count\": 10,,\n}";
	g = synthc_generate_json(c, broken, strlen(broken), NULL, 0);
	CHECK(g == NULL, "broken JSON accepted");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "MALFORMED_REQUEST");
	CHECK(strstr(c->errstr, "line 2, column 14") != NULL, "the message does not say where: %s", c->errstr);
	/* The connection is still fine. */
	Synthd__V1__HealthResponse *h = synthc_health(c);
	CHECK_OK(c, h);
	synthc_free(h);
	synthc_close(c);
}

static void t_plan(void)
{
	synthc_client *c = client();
	const char *json = "{\"schema\":\"instruction_v1\",\"domain\":\"customer support\",\"count\":\"200\","
			   "\"model\":\"balanced\",\"advanced\":{\"categories\":{\"billing\":{\"percentage\":60},"
			   "\"outage\":{\"percentage\":40,\"description\":\"service down\"}},"
			   "\"output_split\":{\"train\":80,\"validation\":20},"
			   "\"hard_negatives\":{\"enabled\":true,\"percentage\":10,\"techniques\":[\"edge_cases\",{\"name\":\"typos\",\"description\":\"misspelt words\"}]},"
			   "\"metadata_fields\":[{\"name\":\"src\",\"type\":\"constant\",\"value\":\"c-client\"}]},"
			   "\"constraints\":{\"min_tokens\":20,\"max_tokens\":400}}";
	Synthd__V1__PlanResponse *p = synthc_plan_json(c, json, strlen(json), 0);
	CHECK_OK(c, p);
	if (p) {
		CHECK(p->plan && p->plan->count == 200, "plan count %" PRId64, p->plan ? p->plan->count : -1);
		CHECK(p->plan && strcmp(p->plan->tier, "balanced") == 0, "tier %s", p->plan ? p->plan->tier : "");
		int64_t sum = 0, billing = 0;
		for (size_t i = 0; p->plan && i < p->plan->n_cells; i++) {
			sum += p->plan->cells[i]->count;
			if (strcmp(p->plan->cells[i]->category, "billing") == 0)
				billing = p->plan->cells[i]->count;
		}
		CHECK(sum == 200, "cells sum to %" PRId64, sum);
		CHECK(billing == 120, "billing cell %" PRId64 ", want 120", billing);
		CHECK(p->plan && p->plan->n_splits == 2, "%zu splits", p->plan ? p->plan->n_splits : 0);
		int64_t ssum = 0;
		for (size_t i = 0; p->plan && i < p->plan->n_splits; i++)
			ssum += p->plan->splits[i]->count;
		CHECK(ssum == 200, "splits sum to %" PRId64, ssum);
		CHECK(p->plan && p->plan->hard_negatives == 20, "hard negatives %" PRId64, p->plan ? p->plan->hard_negatives : -1);
		CHECK(p->cost && p->cost->total_usd > 0, "no cost");
		CHECK(p->effective_request && p->effective_request->count == 200, "effective request");
		CHECK(p->effective_request && p->effective_request->constraints &&
			      p->effective_request->constraints->max_tokens &&
			      p->effective_request->constraints->max_tokens->value == 400,
		      "constraints.max_tokens lost on the way");
	}
	synthc_free(p);

	/* The struct path gives the same plan as JSON would. */
	Synthd__V1__JobRequest jr = SYNTHD__V1__JOB_REQUEST__INIT;
	jr.schema = "preference_v1";
	jr.domain = "writing assistance";
	jr.count = 30;
	jr.model = "deep";
	Synthd__V1__PlanRequest preq = SYNTHD__V1__PLAN_REQUEST__INIT;
	preq.request = &jr;
	p = synthc_plan(c, &preq);
	CHECK_OK(c, p);
	if (p) {
		CHECK(p->plan->count == 30, "count");
		CHECK(p->plan->generator && p->plan->generator->model[0], "no generator model");
	}
	synthc_free(p);
	synthc_close(c);
}

static void t_jobs(void)
{
	synthc_client *c = client();
	char idem[64];
	snprintf(idem, sizeof idem, "c-test-%ld-%d", (long)time(NULL), rand());
	Synthd__V1__GenerateResponse *g = generate(c, 120, idem);
	CHECK_OK(c, g);
	if (g == NULL) {
		synthc_close(c);
		return;
	}
	char id[128];
	snprintf(id, sizeof id, "%s", g->job->job_id);
	CHECK(strncmp(id, "syn_job_", 8) == 0, "job id %s", id);
	CHECK(strcmp(g->job->status, "queued") == 0, "a new job is %s", g->job->status);
	CHECK(g->job->count == 120, "count %" PRId64, g->job->count);
	synthc_free(g);

	/* Idempotency: the same key and body give the same job; another body conflicts. */
	g = generate(c, 120, idem);
	CHECK_OK(c, g);
	CHECK(g && strcmp(g->job->job_id, id) == 0, "a repeat made %s", g ? g->job->job_id : "");
	synthc_free(g);
	g = generate(c, 121, idem);
	CHECK(g == NULL, "a conflicting repeat was accepted");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__FAILED_PRECONDITION, "IDEMPOTENCY_CONFLICT");

	/* The whole job, live or stored. */
	char final[32];
	int snaps;
	int64_t n = watch_all(c, id, 0, final, sizeof final, &snaps);
	CHECK(n == 120, "watched %" PRId64 " records", n);
	CHECK(snaps >= 1, "no snapshot");
	CHECK(strcmp(final, "succeeded") == 0, "the last snapshot says %s", final);
	/* Resume after a sequence number, and progress only. */
	n = watch_all(c, id, 100, final, sizeof final, &snaps);
	CHECK(n == 20, "after_seq 100 gave %" PRId64 " records", n);
	synthc_stream *s = synthc_watch_job(c, id, 0, 1);
	CHECK_OK(c, s);
	synthc_item it;
	int r, progress = 0;
	while (s && (r = synthc_stream_next(s, &it)) == 1) {
		CHECK(it.kind == SYNTHC_ITEM_PROGRESS, "progress_only sent kind %d", it.kind);
		progress++;
	}
	CHECK(progress >= 1, "no progress");
	synthc_stream_free(s);

	Synthd__V1__GetJobResponse *j = synthc_get_job(c, id);
	CHECK_OK(c, j);
	if (j) {
		CHECK(strcmp(j->job->status, "succeeded") == 0, "status %s", j->job->status);
		CHECK(j->job->accepted == 120 && j->job->last_seq == 120, "accepted %" PRId64 " last_seq %" PRIu64,
		      j->job->accepted, j->job->last_seq);
		CHECK(j->job->created_at[0] && j->job->finished_at[0], "timestamps");
		CHECK(j->job->usage && j->job->usage->requests > 0, "no usage");
	}
	synthc_free(j);

	/* ListJobs: newest first, limit, page token, status filter. */
	Synthd__V1__ListJobsResponse *l = synthc_list_jobs(c, NULL, 0, NULL);
	CHECK_OK(c, l);
	CHECK(l && l->n_jobs >= 1 && strcmp(l->jobs[0]->job_id, id) == 0, "the newest job is not first");
	synthc_free(l);
	char id2[128] = "";
	char *other = new_job(c, 10);
	if (other) {
		snprintf(id2, sizeof id2, "%s", other);
		free(other);
	}
	l = synthc_list_jobs(c, "", 1, "");
	CHECK_OK(c, l);
	CHECK(l && l->n_jobs == 1 && strcmp(l->jobs[0]->job_id, id2) == 0, "limit 1");
	CHECK(l && l->next_page_token[0], "no next page token");
	if (l && l->next_page_token[0]) {
		Synthd__V1__ListJobsResponse *l2 = synthc_list_jobs(c, NULL, 1, l->next_page_token);
		CHECK_OK(c, l2);
		CHECK(l2 && l2->n_jobs == 1 && strcmp(l2->jobs[0]->job_id, id) == 0, "page 2 is not the older job");
		synthc_free(l2);
	}
	synthc_free(l);
	l = synthc_list_jobs(c, "succeeded", 500, NULL);
	CHECK_OK(c, l);
	for (size_t i = 0; l && i < l->n_jobs; i++)
		CHECK(strcmp(l->jobs[i]->status, "succeeded") == 0, "filter let %s through", l->jobs[i]->status);
	synthc_free(l);
	l = synthc_list_jobs(c, "bogus", 0, NULL);
	CHECK(l == NULL, "status bogus accepted");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, NULL);
	l = synthc_list_jobs(c, NULL, 501, NULL);
	CHECK(l == NULL, "limit 501 accepted");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, NULL);

	/* Quality report and manifest. */
	Synthd__V1__GetQualityReportResponse *q = synthc_get_quality_report(c, id);
	CHECK_OK(c, q);
	if (q) {
		CHECK(q->report && q->report->total_accepted == 120, "report accepted %" PRId64,
		      q->report ? q->report->total_accepted : -1);
		CHECK(q->report && q->report->total_generated >= 120 && q->report->pass_rate > 0 && q->report->pass_rate <= 1,
		      "report totals");
		CHECK(q->json.len > 2 && q->json.data[0] == '{', "report json");
	}
	synthc_free(q);
	Synthd__V1__GetManifestResponse *m = synthc_get_manifest(c, id);
	CHECK_OK(c, m);
	CHECK(m && m->json.len > 2 && m->json.data[0] == '{' && memmem(m->json.data, m->json.len, id, strlen(id)),
	      "manifest json");
	synthc_free(m);

	/* FetchSplits: every split, then one. */
	s = synthc_fetch_splits(c, id, NULL);
	CHECK_OK(c, s);
	int64_t total = 0, announced = 0, nsplits = 0, train = -1;
	char cur[64] = "";
	while (s && (r = synthc_stream_next(s, &it)) == 1) {
		if (it.kind == SYNTHC_ITEM_SPLIT) {
			nsplits++;
			announced += it.split->count;
			snprintf(cur, sizeof cur, "%s", it.split->name);
			if (strcmp(cur, "train") == 0)
				train = it.split->count;
			CHECK(strlen(it.split->sha256) == 64, "split %s sha256 '%s'", cur, it.split->sha256);
		} else {
			CHECK(it.kind == SYNTHC_ITEM_RECORD && it.seq >= 1 && it.seq <= 120, "bad item");
			total++;
		}
	}
	CHECK(s && r == 0, "FetchSplits ended with %d: %s", r, c->errstr);
	synthc_stream_free(s);
	CHECK(nsplits == 2 && total == 120 && announced == 120, "%" PRId64 " splits, %" PRId64 " records", nsplits, total);
	CHECK(train == 90, "train has %" PRId64 ", want 90", train);
	s = synthc_fetch_splits(c, id, "validation");
	CHECK_OK(c, s);
	total = 0;
	nsplits = 0;
	while (s && (r = synthc_stream_next(s, &it)) == 1) {
		if (it.kind == SYNTHC_ITEM_SPLIT) {
			nsplits++;
			CHECK(strcmp(it.split->name, "validation") == 0, "split %s", it.split->name);
		} else {
			total++;
		}
	}
	synthc_stream_free(s);
	CHECK(nsplits == 1 && total == 30, "validation: %" PRId64 " splits %" PRId64 " records", nsplits, total);
	s = synthc_fetch_splits(c, id, "nope");
	CHECK(s == NULL, "unknown split opened");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__NOT_FOUND, NULL);

	/* Unknown jobs, and another org's job, are NOT_FOUND. */
	j = synthc_get_job(c, "syn_job_doesnotexist00000000");
	CHECK(j == NULL, "unknown job found");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__NOT_FOUND, NULL);
	s = synthc_watch_job(c, "syn_job_doesnotexist00000000", 0, 0);
	CHECK(s == NULL, "watch of an unknown job opened");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__NOT_FOUND, NULL);
	synthc_client *b = client_with(env("SYNTH_ADDRESS"), env("SYNTHC_OTHER_KEY"));
	j = synthc_get_job(b, id);
	CHECK(j == NULL, "org B sees org A's job");
	CHECK_ERR(b, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__NOT_FOUND, NULL);
	Synthd__V1__CancelJobResponse *cj = synthc_cancel_job(b, id);
	CHECK(cj == NULL, "org B cancels org A's job");
	CHECK_ERR(b, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__NOT_FOUND, NULL);
	q = synthc_get_quality_report(b, id);
	CHECK(q == NULL, "org B reads org A's report");
	CHECK_ERR(b, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__NOT_FOUND, NULL);
	m = synthc_get_manifest(b, id);
	CHECK(m == NULL, "org B reads org A's manifest");
	CHECK_ERR(b, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__NOT_FOUND, NULL);
	s = synthc_fetch_splits(b, id, NULL);
	CHECK(s == NULL, "org B reads org A's splits");
	CHECK_ERR(b, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__NOT_FOUND, NULL);
	l = synthc_list_jobs(b, NULL, 0, NULL);
	CHECK_OK(b, l);
	for (size_t i = 0; l && i < l->n_jobs; i++)
		CHECK(strcmp(l->jobs[i]->job_id, id) != 0, "org B lists org A's job");
	synthc_free(l);
	synthc_close(b);

	/* A finished job cannot be cancelled. */
	cj = synthc_cancel_job(c, id);
	CHECK(cj == NULL, "cancelled a finished job");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__FAILED_PRECONDITION, NULL);
	synthc_close(c);
}

/* Streams abandoned half-way, unary calls while a stream is open, and a JSON Generate. */
static void t_streams(void)
{
	synthc_client *c = client();
	const char *json = "{\"schema\":\"instruction_v1\",\"domain\":\"internal IT helpdesk\",\"count\":300,\"model\":\"fast\"}";
	Synthd__V1__GenerateResponse *g = synthc_generate_json(c, json, strlen(json), NULL, 0);
	CHECK_OK(c, g);
	if (g == NULL) {
		synthc_close(c);
		return;
	}
	char id[128];
	snprintf(id, sizeof id, "%s", g->job->job_id);
	synthc_free(g);
	wait_final(c, id);

	for (int round = 0; round < 3; round++) {
		synthc_stream *s = round == 1 ? synthc_fetch_splits(c, id, NULL) : synthc_watch_job(c, id, 0, 0);
		CHECK_OK(c, s);
		synthc_item it;
		for (int i = 0; s && i < 5; i++)
			CHECK(synthc_stream_next(s, &it) == 1, "item %d: %s", i, c->errstr);
		/* While it is open, unary calls and other streams are refused without touching it. */
		Synthd__V1__GetJobResponse *j = synthc_get_job(c, id);
		CHECK(j == NULL, "a unary call ran while a stream was open");
		CHECK_ERR(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__FAILED_PRECONDITION, "BUSY");
		synthc_stream *s2 = synthc_watch_job(c, id, 0, 0);
		CHECK(s2 == NULL, "a second stream opened");
		CHECK_ERR(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__FAILED_PRECONDITION, "BUSY");
		CHECK(s && synthc_stream_next(s, &it) == 1, "the stream broke: %s", c->errstr);
		/* Abandon it (round 2: after asking for a cancel first): the next calls skip what is left. */
		if (round == 2)
			CHECK(synthc_stream_cancel(s) == 0, "cancel: %s", c->errstr);
		synthc_stream_free(s);
		j = synthc_get_job(c, id);
		CHECK_OK(c, j);
		CHECK(j && j->job->accepted == 300, "GetJob after an abandoned stream");
		synthc_free(j);
		char final[32];
		int snaps;
		CHECK(watch_all(c, id, 250, final, sizeof final, &snaps) == 50, "watch after an abandoned stream");
	}
	synthc_close(c);
}

static void t_keys(void)
{
	synthc_client *c = client_with(env("SYNTH_ADDRESS"), env("SYNTHC_KEYS_KEY"));
	Synthd__V1__CreateApiKeyResponse *k = synthc_create_api_key(c, "c-client-test");
	CHECK_OK(c, k);
	if (k == NULL) {
		synthc_close(c);
		return;
	}
	CHECK(strncmp(k->key, "sk_live_", 8) == 0, "key %s", k->key);
	CHECK(k->info && strcmp(k->info->name, "c-client-test") == 0 && !k->info->revoked, "info");
	char key[256], key_id[128];
	snprintf(key, sizeof key, "%s", k->key);
	snprintf(key_id, sizeof key_id, "%s", k->info->key_id);
	CHECK(strncmp(key, k->info->prefix, strlen(k->info->prefix)) == 0, "prefix %s", k->info->prefix);
	synthc_free(k);

	Synthd__V1__ListApiKeysResponse *l = synthc_list_api_keys(c);
	CHECK_OK(c, l);
	int found = 0;
	for (size_t i = 0; l && i < l->n_keys; i++)
		if (strcmp(l->keys[i]->key_id, key_id) == 0)
			found = 1;
	CHECK(found, "the new key is not listed");
	synthc_free(l);

	/* The new key works, until it is revoked. */
	synthc_client *n = client_with(env("SYNTH_ADDRESS"), key);
	Synthd__V1__ListJobsResponse *lj = synthc_list_jobs(n, NULL, 0, NULL);
	CHECK_OK(n, lj);
	synthc_free(lj);
	Synthd__V1__RevokeApiKeyResponse *rv = synthc_revoke_api_key(c, key_id);
	CHECK_OK(c, rv);
	CHECK(rv && rv->key && rv->key->revoked && rv->key->revoked_at[0], "not revoked");
	synthc_free(rv);
	lj = synthc_list_jobs(n, NULL, 0, NULL);
	CHECK(lj == NULL, "a revoked key still works");
	CHECK_ERR(n, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__UNAUTHENTICATED, NULL);
	synthc_close(n);
	rv = synthc_revoke_api_key(c, "key_doesnotexist");
	CHECK(rv == NULL, "revoked an unknown key");
	CHECK(c->err == SYNTHC_ERR_STATUS && c->code != 0, "revoke unknown: %s", c->errstr);

	/* The org's limit on active keys. */
	char made[16][128];
	int nmade = 0, limited = 0;
	for (int i = 0; i < 15 && !limited; i++) {
		k = synthc_create_api_key(c, "filler");
		if (k == NULL) {
			CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__RESOURCE_EXHAUSTED, "KEY_LIMIT");
			limited = 1;
			break;
		}
		snprintf(made[nmade++], sizeof made[0], "%s", k->info->key_id);
		synthc_free(k);
	}
	CHECK(limited, "no key limit after %d keys", nmade);
	for (int i = 0; i < nmade; i++) {
		rv = synthc_revoke_api_key(c, made[i]);
		CHECK_OK(c, rv);
		synthc_free(rv);
	}
	synthc_close(c);
}

static void t_connect_errors(void)
{
	char addr[512];
	snprintf(addr, sizeof addr, "unix:%s", env("SYNTHC_MISSING_SOCKET"));
	synthc_client *c = synthc_connect(addr, "k");
	CHECK(c != NULL, "oom");
	CHECK_ERR(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__UNAVAILABLE, "CONNECT_FAILED");
	CHECK(!synthc_is_connected(c), "connected to nothing");
	Synthd__V1__HealthResponse *h = synthc_health(c);
	CHECK(h == NULL, "a call without a connection succeeded");
	CHECK_ERR(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__FAILED_PRECONDITION, "NOT_CONNECTED");
	synthc_close(c);

	snprintf(addr, sizeof addr, "127.0.0.1:%s", env("SYNTHC_CLOSED_PORT"));
	c = synthc_connect(addr, NULL);
	CHECK_ERR(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__UNAVAILABLE, "CONNECT_FAILED");
	synthc_close(c);

	const char *bad[] = {"", "unix:", "nohost", "host:", ":80", "host:99999", "host:8x", "[::1]", "[]:80"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		c = synthc_connect(bad[i], NULL);
		/* "" means the default address, which is not running here: a connect failure, not a bad address. */
		if (bad[i][0] == '\0')
			CHECK(c->err == SYNTHC_ERR_IO || c->err == SYNTHC_OK, "'' gave %s", c->errstr);
		else
			CHECK_ERR(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "BAD_ADDRESS");
		synthc_close(c);
	}
	char longpath[300];
	memset(longpath, 'a', sizeof longpath - 1);
	longpath[0] = '/';
	longpath[sizeof longpath - 1] = '\0';
	c = synthc_connect(longpath, NULL);
	CHECK_ERR(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "BAD_ADDRESS");
	synthc_close(c);
	c = synthc_connect("no.such.host.invalid:80", NULL);
	CHECK_ERR(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__UNAVAILABLE, "CONNECT_FAILED");
	synthc_close(c);

	/* Reconnect after a failure, to a server that is there. */
	c = synthc_connect(env("SYNTH_ADDRESS"), NULL);
	CHECK(c->err == 0, "%s", c->errstr);
	CHECK(synthc_reconnect(c) == 0 && synthc_is_connected(c), "reconnect: %s", c->errstr);
	h = synthc_health(c);
	CHECK_OK(c, h);
	synthc_free(h);
	/* The environment's address. */
	synthc_close(c);
	c = synthc_connect(NULL, NULL);
	CHECK(c->err == 0, "SYNTH_ADDRESS: %s", c->errstr);
	Synthd__V1__ListJobsResponse *l = synthc_list_jobs(c, NULL, 1, NULL);
	CHECK_OK(c, l); /* and SYNTH_API_KEY */
	synthc_free(l);
	/* Arguments the library refuses. */
	CHECK(synthc_set_max_frame_size(c, 10) == -1 && c->err == SYNTHC_ERR_ARG, "max frame 10 accepted");
	CHECK(synthc_set_io_timeout(c, -1) == -1 && c->err == SYNTHC_ERR_ARG, "io timeout -1 accepted");
	CHECK(synthc_generate(c, NULL) == NULL && c->err == SYNTHC_ERR_ARG, "NULL request accepted");
	CHECK(synthc_call(c, "", NULL, &synthd__v1__health_response__descriptor) == NULL && c->err == SYNTHC_ERR_ARG,
	      "an empty method accepted");
	/* An unknown method: the server says UNIMPLEMENTED. */
	Synthd__V1__HealthRequest hr = SYNTHD__V1__HEALTH_REQUEST__INIT;
	CHECK(synthc_call(c, "NoSuchMethod", &hr.base, &synthd__v1__health_response__descriptor) == NULL,
	      "NoSuchMethod succeeded");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__UNIMPLEMENTED, NULL);
	/* A request bigger than the frame limit is refused before it is sent. */
	synthc_set_max_frame_size(c, 64);
	Synthd__V1__GetJobResponse *j = synthc_get_job(c, "syn_job_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	CHECK(j == NULL, "an oversized request was sent");
	CHECK_ERR(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "REQUEST_TOO_LARGE");
	CHECK(synthc_is_connected(c), "a refused request closed the connection");
	synthc_set_max_frame_size(c, SYNTHC_DEFAULT_MAX_FRAME);
	h = synthc_health(c);
	CHECK_OK(c, h);
	synthc_free(h);
	synthc_close(c);
	synthc_close(NULL);
}

/* ---- Slow tests: the provider answers slowly, so a job runs for seconds ------------------------ */

static void t_live_watch(void)
{
	synthc_client *c = client();
	char *id = new_job(c, 200);
	if (id == NULL) {
		synthc_close(c);
		return;
	}
	synthc_stream *s = synthc_watch_job(c, id, 0, 0);
	CHECK_OK(c, s);
	synthc_item it;
	int r, snaps = 0, running = 0;
	uint64_t expect = 1, last_seq = 0;
	char final[32] = "";
	while (s && (r = synthc_stream_next(s, &it)) == 1) {
		if (it.kind == SYNTHC_ITEM_RECORD) {
			CHECK(it.seq == expect, "seq %" PRIu64 " want %" PRIu64, it.seq, expect);
			expect++;
		} else {
			snaps++;
			running |= strcmp(it.job->status, "running") == 0 || strcmp(it.job->status, "queued") == 0;
			snprintf(final, sizeof final, "%s", it.job->status);
			/* A snapshot follows every record stored when it was taken (synthd may send a few
			 * newer records before it too). */
			CHECK(it.job->last_seq <= expect - 1, "snapshot last_seq %" PRIu64 " after %" PRIu64 " records",
			      it.job->last_seq, expect - 1);
			last_seq = it.job->last_seq;
		}
	}
	synthc_stream_free(s);
	CHECK(expect == 201, "got %" PRIu64 " records", expect - 1);
	CHECK(running, "never saw the job unfinished: not a live watch");
	CHECK(snaps >= 3, "only %d snapshots of a live job", snaps);
	CHECK(strcmp(final, "succeeded") == 0, "final %s", final);
	CHECK(last_seq == 200, "the last snapshot's last_seq is %" PRIu64, last_seq);
	free(id);
	synthc_close(c);
}

static void t_cancel(void)
{
	synthc_client *c = client();
	char *id = new_job(c, 5000);
	if (id == NULL) {
		synthc_close(c);
		return;
	}
	Synthd__V1__CancelJobResponse *cj = synthc_cancel_job(c, id);
	CHECK_OK(c, cj);
	CHECK(cj && strcmp(cj->job->status, "cancelled") == 0, "status after cancel: %s", cj ? cj->job->status : "");
	synthc_free(cj);
	cj = synthc_cancel_job(c, id);
	CHECK(cj == NULL, "cancelled twice");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__FAILED_PRECONDITION, NULL);
	Synthd__V1__GetManifestResponse *m = synthc_get_manifest(c, id);
	CHECK(m == NULL, "manifest of a cancelled job");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__FAILED_PRECONDITION, NULL);
	synthc_stream *s = synthc_fetch_splits(c, id, NULL);
	CHECK(s == NULL, "splits of a cancelled job");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__FAILED_PRECONDITION, NULL);
	/* Watching a cancelled job ends OK; its last snapshot says cancelled. */
	char final[32];
	int snaps;
	int64_t n = watch_all(c, id, 0, final, sizeof final, &snaps);
	CHECK(n >= 0 && n < 5000, "%" PRId64 " records", n);
	CHECK(strcmp(final, "cancelled") == 0, "final %s", final);
	free(id);
	synthc_close(c);
}

static void t_stream_cancel(void)
{
	synthc_client *c = client();
	char *id = new_job(c, 5000);
	if (id == NULL) {
		synthc_close(c);
		return;
	}
	synthc_stream *s = synthc_watch_job(c, id, 0, 0);
	CHECK_OK(c, s);
	synthc_item it;
	int r = 1, items = 0;
	CHECK(s && synthc_stream_next(s, &it) == 1, "first item");
	CHECK(synthc_stream_cancel(s) == 0, "cancel: %s", c->errstr);
	CHECK(synthc_stream_cancel(s) == 0, "a second cancel");
	while (s && (r = synthc_stream_next(s, &it)) == 1)
		items++;
	CHECK(r == -1 && items < 5000, "the cancelled stream ended with %d after %d more items", r, items);
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__CANCELLED, NULL);
	CHECK(synthc_stream_next(s, &it) == -1, "a failed stream does not repeat its end");
	synthc_stream_free(s);
	/* The connection goes on; the job itself was not cancelled. */
	Synthd__V1__GetJobResponse *j = synthc_get_job(c, id);
	CHECK_OK(c, j);
	CHECK(j && strcmp(j->job->status, "cancelled") != 0, "cancelling the stream cancelled the job");
	synthc_free(j);
	Synthd__V1__CancelJobResponse *cj = synthc_cancel_job(c, id);
	CHECK_OK(c, cj);
	synthc_free(cj);
	free(id);
	synthc_close(c);
}

static void t_stream_deadline(void)
{
	synthc_client *c = client();
	char *id = new_job(c, 5000);
	if (id == NULL) {
		synthc_close(c);
		return;
	}
	synthc_set_stream_timeout(c, 400);
	double t0 = now_s();
	synthc_stream *s = synthc_watch_job(c, id, 0, 1);
	CHECK_OK(c, s);
	synthc_item it;
	int r;
	while (s && (r = synthc_stream_next(s, &it)) == 1)
		;
	double took = now_s() - t0;
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__DEADLINE_EXCEEDED, NULL);
	CHECK(took >= 0.35 && took < 10, "the deadline came after %.2f s", took);
	synthc_stream_free(s);
	synthc_set_stream_timeout(c, 0);
	Synthd__V1__CancelJobResponse *cj = synthc_cancel_job(c, id);
	CHECK_OK(c, cj);
	synthc_free(cj);
	free(id);
	synthc_close(c);
}

static void t_revoke_during_watch(void)
{
	synthc_client *admin = client();
	Synthd__V1__CreateApiKeyResponse *k = synthc_create_api_key(admin, "watch-then-revoke");
	CHECK_OK(admin, k);
	if (k == NULL) {
		synthc_close(admin);
		return;
	}
	synthc_client *c = client_with(env("SYNTH_ADDRESS"), k->key);
	char *id = new_job(c, 5000);
	synthc_stream *s = id ? synthc_watch_job(c, id, 0, 0) : NULL;
	CHECK_OK(c, s);
	synthc_item it;
	CHECK(s && synthc_stream_next(s, &it) == 1, "first item");
	Synthd__V1__RevokeApiKeyResponse *rv = synthc_revoke_api_key(admin, k->info->key_id);
	CHECK_OK(admin, rv);
	synthc_free(rv);
	double t0 = now_s();
	int r;
	while (s && (r = synthc_stream_next(s, &it)) == 1)
		;
	double took = now_s() - t0;
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__UNAUTHENTICATED, NULL);
	CHECK(took < 8, "the stream outlived its key by %.1f s", took);
	synthc_stream_free(s);
	if (id) {
		Synthd__V1__CancelJobResponse *cj = synthc_cancel_job(admin, id);
		CHECK_OK(admin, cj);
		synthc_free(cj);
	}
	free(id);
	synthc_free(k);
	synthc_close(c);
	synthc_close(admin);
}

/* DeleteJob and GetUsage: an ended job goes whole; what it was billed stays in the month. */
static void t_lifecycle(void)
{
	synthc_client *c = client();
	Synthd__V1__GenerateResponse *g = generate(c, 10, NULL);
	CHECK_OK(c, g);
	if (g == NULL) {
		synthc_close(c);
		return;
	}
	char id[128];
	snprintf(id, sizeof id, "%s", g->job->job_id);
	synthc_free(g);
	char final[32];
	int snaps;
	CHECK(watch_all(c, id, 0, final, sizeof final, &snaps) == 10, "watched");
	Synthd__V1__GetUsageResponse *u = synthc_get_usage(c);
	CHECK_OK(c, u);
	int64_t billed = u ? u->records : -1;
	CHECK(u && u->org[0] && strcmp(u->plan, "payg") == 0 && u->records >= 10 && u->balance_usd > 0, "usage");
	synthc_free(u);

	Synthd__V1__DeleteJobResponse *d = synthc_delete_job(c, id);
	CHECK_OK(c, d);
	CHECK(d && strcmp(d->job_id, id) == 0 && d->records_deleted == 10, "deleted %" PRId64, d ? d->records_deleted : -1);
	synthc_free(d);
	Synthd__V1__GetJobResponse *j = synthc_get_job(c, id);
	CHECK(j == NULL, "a deleted job is still there");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__NOT_FOUND, NULL);
	d = synthc_delete_job(c, id);
	CHECK(d == NULL, "deleted twice");
	CHECK_ERR(c, SYNTHC_ERR_STATUS, SYNTHD__V1__STATUS_CODE__NOT_FOUND, NULL);
	u = synthc_get_usage(c);
	CHECK_OK(c, u);
	CHECK(u && u->records == billed, "the month's records changed with a delete");
	synthc_free(u);
	synthc_close(c);
}

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{"health", t_health},
	{"tcp", t_tcp},
	{"pricing", t_pricing},
	{"auth", t_auth},
	{"validation", t_validation},
	{"plan", t_plan},
	{"jobs", t_jobs},
	{"streams", t_streams},
	{"keys", t_keys},
	{"connect_errors", t_connect_errors},
	{"lifecycle", t_lifecycle},
	{"live_watch", t_live_watch},
	{"cancel", t_cancel},
	{"stream_cancel", t_stream_cancel},
	{"stream_deadline", t_stream_deadline},
	{"revoke_during_watch", t_revoke_during_watch},
};

int main(int argc, char **argv)
{
	int failed = 0;
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	for (int i = 1; i < argc; i++) {
		size_t t;
		for (t = 0; t < sizeof tests / sizeof tests[0]; t++)
			if (strcmp(tests[t].name, argv[i]) == 0)
				break;
		if (t == sizeof tests / sizeof tests[0]) {
			fprintf(stderr, "unknown test %s\n", argv[i]);
			return 100;
		}
		int before = failed_checks;
		double t0 = now_s();
		tests[t].fn();
		int ok = failed_checks == before;
		printf("%s %s (%.2f s)\n", ok ? "ok" : "FAIL", argv[i], now_s() - t0);
		fflush(stdout);
		failed += !ok;
	}
	return failed > 100 ? 100 : failed;
}
