/* libFuzzer target: the C client's JSON reader (json.c), which turns a request body into a
 * JobRequest for synthc_generate_json. Built as fuzz_frames.c is. */
#include "../src/synthc.c" /* json.c calls into the client; built as one, as fuzz_frames is */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	int oom = 0;
	ProtobufCMessage *m = synthc_message_from_json(&synthd__v1__job_request__descriptor, (const char *)data, size, err,
						      sizeof err, &oom);
	if (m) {
		/* What reads packs, and the packed bytes read back. */
		size_t n = protobuf_c_message_get_packed_size(m);
		uint8_t *buf = malloc(n ? n : 1);
		if (buf) {
			protobuf_c_message_pack(m, buf);
			ProtobufCMessage *again = protobuf_c_message_unpack(&synthd__v1__job_request__descriptor, NULL, n, buf);
			if (again == NULL)
				abort();
			protobuf_c_message_free_unpacked(again, NULL);
			free(buf);
		}
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return 0;
}

#ifdef SYNTHC_FUZZ_REPLAY
#include "replay.h"
#endif
