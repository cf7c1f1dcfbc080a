/* libFuzzer target: what synthd sends, as the C client reads it. The input is a byte stream of
 * frames; each is taken off as read_frame does (length prefix, the client's default limit), decoded
 * as a Frame, and its message or status decoded as the client does for a stream (WatchJobResponse,
 * FetchSplitsResponse: events, records, batches, Job, SplitInfo) or a unary answer (every response
 * type of the service). Built by tools/fuzz with -fsanitize=fuzzer,address,undefined; built with
 * -DSYNTHC_FUZZ_REPLAY it is a program that replays files (clients/c `make fuzz-replay`). */
#include "../src/synthc.c"

static const ProtobufCMessageDescriptor *const answers[] = {
	&synthd__v1__generate_response__descriptor, &synthd__v1__plan_response__descriptor,
	&synthd__v1__get_job_response__descriptor, &synthd__v1__list_jobs_response__descriptor,
	&synthd__v1__cancel_job_response__descriptor, &synthd__v1__get_quality_report_response__descriptor,
	&synthd__v1__get_manifest_response__descriptor, &synthd__v1__get_pricing_response__descriptor,
	&synthd__v1__health_response__descriptor, &synthd__v1__create_api_key_response__descriptor,
	&synthd__v1__list_api_keys_response__descriptor, &synthd__v1__revoke_api_key_response__descriptor,
	&synthd__v1__status__descriptor,
};

static void event(const uint8_t *body, size_t len)
{
	int which;
	const uint8_t *ev = NULL;
	size_t evlen = 0;
	if (decode_event(body, len, &which, &ev, &evlen) != 0 || which == 0)
		return;
	if (which == 2) {
		uint64_t seq;
		const uint8_t *json;
		size_t jl;
		if (decode_flat(ev, evlen, &seq, 1, &json, &jl) == 0 && jl > 0)
			(void)(json[0] + json[jl - 1]); /* the view must lie inside the input */
	} else if (which == 3) {
		uint64_t b[3];
		const uint8_t *jsonl;
		size_t jl;
		if (decode_flat(ev, evlen, b, 3, &jsonl, &jl) == 0 && jl > 0)
			(void)(jsonl[0] + jsonl[jl - 1]);
	} else {
		Synthd__V1__Job *job = synthd__v1__job__unpack(NULL, evlen, ev);
		if (job)
			synthd__v1__job__free_unpacked(job, NULL);
		Synthd__V1__SplitInfo *split = synthd__v1__split_info__unpack(NULL, evlen, ev);
		if (split)
			synthd__v1__split_info__free_unpacked(split, NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t pos = 0;
	while (size - pos >= 4) {
		uint32_t n = (uint32_t)data[pos] << 24 | (uint32_t)data[pos + 1] << 16 | (uint32_t)data[pos + 2] << 8 | data[pos + 3];
		if (n == 0 || n > SYNTHC_DEFAULT_MAX_FRAME || n > size - pos - 4)
			return 0;
		struct frame f;
		if (decode_frame(data + pos + 4, n, &f) == 0) {
			if (f.kind == F_MESSAGE) {
				event(f.body, f.len);
				const ProtobufCMessageDescriptor *d = answers[f.call_id % (sizeof answers / sizeof *answers)];
				ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, f.len, f.body);
				if (m)
					protobuf_c_message_free_unpacked(m, NULL);
			} else if (f.kind == F_STATUS) {
				Synthd__V1__Status *st = synthd__v1__status__unpack(NULL, f.len, f.body);
				if (st)
					synthd__v1__status__free_unpacked(st, NULL);
			}
		}
		pos += 4 + n;
	}
	return 0;
}

#ifdef SYNTHC_FUZZ_REPLAY
#include "replay.h"
#endif
