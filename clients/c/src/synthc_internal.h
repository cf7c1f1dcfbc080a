/* synthc's internal functions, shared by its source files and its tests. Not installed. */
#ifndef SYNTHC_INTERNAL_H
#define SYNTHC_INTERNAL_H

#include "synthc.h"

/* Writes the frame that opens a call (length prefix included) to `out` and returns its size; with
 * out == NULL only returns the size. Fields at their default value are left out and the others are
 * written in field-number order, so the bytes match the golden frames in proto/testdata. 0 on error. */
size_t synthc_encode_open(uint8_t *out, uint64_t call_id, const char *method, const char *api_key,
			  uint64_t timeout_ms, const ProtobufCMessage *request);

/* Errors on the client, for the library's other source files. */
void synthc_clear_error(synthc_client *c);
void synthc_set_error(synthc_client *c, int err, int code, const char *error_code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Parses JSON into a new message of type d (see json.c for the mapping). NULL with the reason in err,
 * and *oom set when memory ran out. */
ProtobufCMessage *synthc_message_from_json(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
					   char *err, size_t errlen, int *oom);

#endif
