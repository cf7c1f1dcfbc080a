/*
 * golden_decode: reads one golden request frame (proto/testdata/<Method>.frame) with protobuf-c and
 * prints what it decoded as JSON, so that tools/check-golden.py can compare protobuf-c's reading of
 * the bytes with the expected proto3 JSON (<Method>.json).
 *
 *   usage:  golden_decode FILE.frame
 *   stdout: {"call_id":"7","method":"Generate","api_key":"...","timeout_ms":"30000","request":{...}}
 *
 * The request is printed by a generic printer that walks protobuf-c's message and field descriptors and
 * follows the proto3 JSON mapping the way json_format.MessageToDict(preserving_proto_field_name=True)
 * applies it:
 *   - fields at their default value are left out (zero numbers, empty strings and bytes, empty repeated
 *     fields, absent messages); a member of a oneof is printed whenever it is the one set;
 *   - int64/uint64 (and their sint/fixed variants) are JSON strings, 32-bit integers JSON numbers;
 *   - float/double are numbers, except NaN/Infinity/-Infinity which are strings;
 *   - bytes are standard base64 with padding; enums are their value's name (google.protobuf.NullValue
 *     is null; a value the enum does not declare is printed as its number);
 *   - map fields are JSON objects keyed by the entry's key (see is_map_field);
 *   - google.protobuf.Value/Struct/ListValue are plain JSON and the wrappers (Int64Value, DoubleValue,
 *     ...) are their bare value.
 * The envelope's call_id and timeout_ms are uint64 and are therefore strings too.
 *
 * Errors (unreadable file, wrong length prefix, bytes that do not parse, unknown method, a value proto3
 * JSON cannot express) go to stderr with exit status 1; nothing is written to stdout then.
 */

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"
#include "synthd/v1/frame.pb-c.h"
#include "synthd/v1/service.pb-c.h"

/* Messages nest at most this deep in the output (a hostile Value can nest without end). */
#define MAX_DEPTH 100

/* ---- Output buffer ---------------------------------------------------------------------------- */

/* The JSON is built in memory and written only once it is complete, so a failure half-way leaves
 * stdout empty. The first error is kept; everything after it is a no-op. */
typedef struct {
	char *data;
	size_t len, cap;
	int depth;
	char error[256];
} Out;

static void fail(Out *o, const char *fmt, ...)
{
	va_list ap;

	if (o->error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(o->error, sizeof o->error, fmt, ap);
	va_end(ap);
}

static void put(Out *o, const char *s, size_t n)
{
	if (o->error[0])
		return;
	if (o->cap - o->len < n) {
		size_t cap = o->cap ? o->cap : 4096;
		char *data;

		while (cap - o->len < n)
			cap *= 2;
		data = realloc(o->data, cap);
		if (!data) {
			fail(o, "out of memory");
			return;
		}
		o->data = data;
		o->cap = cap;
	}
	memcpy(o->data + o->len, s, n);
	o->len += n;
}

static void puts_(Out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* Only ever used for single numbers, which fit in 64 characters. */
static void putf(Out *o, const char *fmt, ...)
{
	char buf[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof buf)
		fail(o, "internal error: number too long to format");
	else
		put(o, buf, (size_t)n);
}

/* A JSON string. Bytes >= 0x80 are copied as they are: protobuf strings are UTF-8. */
static void put_string(Out *o, const char *s, size_t n)
{
	put(o, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		switch (c) {
		case '"': puts_(o, "\\\""); break;
		case '\\': puts_(o, "\\\\"); break;
		case '\b': puts_(o, "\\b"); break;
		case '\f': puts_(o, "\\f"); break;
		case '\n': puts_(o, "\\n"); break;
		case '\r': puts_(o, "\\r"); break;
		case '\t': puts_(o, "\\t"); break;
		default:
			if (c < 0x20)
				putf(o, "\\u%04x", c);
			else
				put(o, (const char *)&s[i], 1);
		}
	}
	put(o, "\"", 1);
}

static void put_cstring(Out *o, const char *s)
{
	/* protobuf-c leaves unset strings pointing at protobuf_c_empty_string, but be safe about NULL. */
	put_string(o, s ? s : "", s ? strlen(s) : 0);
}

static void put_base64(Out *o, const uint8_t *data, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	put(o, "\"", 1);
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)data[i] << 16;
		char quad[4];

		if (i + 1 < len)
			v |= (uint32_t)data[i + 1] << 8;
		if (i + 2 < len)
			v |= data[i + 2];
		quad[0] = alphabet[(v >> 18) & 63];
		quad[1] = alphabet[(v >> 12) & 63];
		quad[2] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
		quad[3] = i + 2 < len ? alphabet[v & 63] : '=';
		put(o, quad, 4);
	}
	put(o, "\"", 1);
}

/*
 * A float or double with the fewest significant digits, from FLT_DIG (6) or DBL_DIG (15) up, that read
 * back as the same value; for float this is json_format's ToShortestFloat. "%.17g" alone would print
 * 0.1 as 0.10000000000000001 (the same double, but noisy); starting below DBL_DIG would print 40 as
 * 4e+01, because %g switches to an exponent once the precision is smaller than the exponent.
 */
static void put_floating(Out *o, double v, int is_float)
{
	char buf[40];

	if (isnan(v)) {
		puts_(o, "\"NaN\"");
		return;
	}
	if (isinf(v)) {
		puts_(o, v < 0 ? "\"-Infinity\"" : "\"Infinity\"");
		return;
	}
	if (is_float) {
		for (int prec = FLT_DIG; prec <= 9; prec++) {
			snprintf(buf, sizeof buf, "%.*g", prec, v);
			if (strtof(buf, NULL) == (float)v)
				break;
		}
	} else {
		for (int prec = DBL_DIG; prec <= 17; prec++) {
			snprintf(buf, sizeof buf, "%.*g", prec, v);
			if (strtod(buf, NULL) == v)
				break;
		}
	}
	puts_(o, buf);
}

/* ---- Descriptor helpers ----------------------------------------------------------------------- */

#define AT(msg, offset) ((const char *)(msg) + (offset))

/* Size of one element of a repeated field's array, as protobuf-c lays it out. */
static size_t element_size(ProtobufCType type)
{
	switch (type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_ENUM:
		return 4;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return 0;
}

/* Whether a field without presence holds its default (proto3 "zero") value. Floating-point zero is
 * compared bit by bit, so -0.0 counts as set, as protobuf's own encoders treat it. */
static int is_zero(const ProtobufCFieldDescriptor *f, const void *v)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_ENUM:
		return *(const uint32_t *)v == 0;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return *(const uint64_t *)v == 0;
	case PROTOBUF_C_TYPE_BOOL:
		return !*(const protobuf_c_boolean *)v;
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(const char *const *)v;
		return !s || !*s;
	}
	case PROTOBUF_C_TYPE_BYTES:
		return ((const ProtobufCBinaryData *)v)->len == 0;
	case PROTOBUF_C_TYPE_MESSAGE:
		return *(const void *const *)v == NULL;
	}
	return 1;
}

/* Whether MessageToDict would print the field. */
static int is_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
	/* A oneof member: quantifier_offset is the oneof's *_case member, which holds the set field's number. */
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		return *(const uint32_t *)AT(msg, f->quantifier_offset) == f->id;
	switch (f->label) {
	case PROTOBUF_C_LABEL_REPEATED:
		return *(const size_t *)AT(msg, f->quantifier_offset) > 0;
	case PROTOBUF_C_LABEL_REQUIRED:
		return 1;
	case PROTOBUF_C_LABEL_OPTIONAL:
		/* proto2 / proto3 `optional`: messages and strings are pointers (NULL when absent), the
		 * other types have a has_* flag at quantifier_offset. */
		if (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_STRING)
			return *(const void *const *)AT(msg, f->offset) != NULL;
		return *(const protobuf_c_boolean *)AT(msg, f->quantifier_offset);
	case PROTOBUF_C_LABEL_NONE:
		/* proto3 without presence. */
		return !is_zero(f, AT(msg, f->offset));
	}
	return 0;
}

/* Whether entry_short_name is protoc's map entry name for field_name: the field name in CamelCase
 * (underscores dropped, the letter after one upper-cased, and the first letter too) + "Entry". */
static int is_map_entry_name(const char *entry_short_name, const char *field_name)
{
	const char *e = entry_short_name;
	int cap_next = 1;

	for (const char *p = field_name; *p; p++) {
		char c = *p;

		if (c == '_') {
			cap_next = 1;
			continue;
		}
		if (cap_next && c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		cap_next = 0;
		if (*e++ != c)
			return 0;
	}
	return strcmp(e, "Entry") == 0;
}

/*
 * protobuf-c 1.4 keeps no map_entry flag in its descriptors: map<K, V> f is a plain repeated field of
 * the nested message <Parent>.<F>Entry{K key = 1; V value = 2;}. protoc rejects any other nested type
 * of that name, so matching the name and the two fields identifies a map exactly.
 */
static int is_map_field(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *entry = f->descriptor;
	size_t n = strlen(parent->name);

	return f->label == PROTOBUF_C_LABEL_REPEATED && f->type == PROTOBUF_C_TYPE_MESSAGE &&
	       entry->n_fields == 2 &&
	       entry->fields[0].id == 1 && strcmp(entry->fields[0].name, "key") == 0 &&
	       entry->fields[1].id == 2 && strcmp(entry->fields[1].name, "value") == 0 &&
	       strncmp(entry->name, parent->name, n) == 0 && entry->name[n] == '.' &&
	       strcmp(entry->name + n + 1, entry->short_name) == 0 &&
	       is_map_entry_name(entry->short_name, f->name);
}

static int is_wrapper(const ProtobufCMessageDescriptor *d)
{
	return d == &google__protobuf__double_value__descriptor ||
	       d == &google__protobuf__float_value__descriptor ||
	       d == &google__protobuf__int64_value__descriptor ||
	       d == &google__protobuf__uint64_value__descriptor ||
	       d == &google__protobuf__int32_value__descriptor ||
	       d == &google__protobuf__uint32_value__descriptor ||
	       d == &google__protobuf__bool_value__descriptor ||
	       d == &google__protobuf__string_value__descriptor ||
	       d == &google__protobuf__bytes_value__descriptor;
}

/* ---- Printer ---------------------------------------------------------------------------------- */

static void put_message(Out *o, const ProtobufCMessageDescriptor *d, const ProtobufCMessage *msg);

static void put_enum(Out *o, const ProtobufCEnumDescriptor *d, int value)
{
	const ProtobufCEnumValue *v;

	if (d == &google__protobuf__null_value__descriptor) {
		puts_(o, "null");
		return;
	}
	v = protobuf_c_enum_descriptor_get_value(d, value);
	if (v)
		put_cstring(o, v->name);
	else
		putf(o, "%d", value); /* open enum: a number this build does not know */
}

/* One value of field f stored at v (the member itself, or one element of a repeated field's array). */
static void put_field_value(Out *o, const ProtobufCFieldDescriptor *f, const void *v)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		putf(o, "%" PRId32, *(const int32_t *)v);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		putf(o, "%" PRIu32, *(const uint32_t *)v);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		putf(o, "\"%" PRId64 "\"", *(const int64_t *)v);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		putf(o, "\"%" PRIu64 "\"", *(const uint64_t *)v);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		put_floating(o, *(const float *)v, 1);
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		put_floating(o, *(const double *)v, 0);
		break;
	case PROTOBUF_C_TYPE_BOOL:
		puts_(o, *(const protobuf_c_boolean *)v ? "true" : "false");
		break;
	case PROTOBUF_C_TYPE_ENUM:
		put_enum(o, f->descriptor, *(const int *)v);
		break;
	case PROTOBUF_C_TYPE_STRING:
		put_cstring(o, *(const char *const *)v);
		break;
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = v;
		put_base64(o, b->data, b->len);
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE:
		put_message(o, f->descriptor, *(const ProtobufCMessage *const *)v);
		break;
	}
}

/* A map key as JSON object key text: strings as they are, bools and integers in decimal. */
static const char *map_key(const ProtobufCFieldDescriptor *kf, const ProtobufCMessage *entry, char buf[32])
{
	const void *v = AT(entry, kf->offset);

	switch (kf->type) {
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(const char *const *)v;
		return s ? s : "";
	}
	case PROTOBUF_C_TYPE_BOOL:
		return *(const protobuf_c_boolean *)v ? "true" : "false";
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		snprintf(buf, 32, "%" PRId32, *(const int32_t *)v);
		return buf;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		snprintf(buf, 32, "%" PRIu32, *(const uint32_t *)v);
		return buf;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(buf, 32, "%" PRId64, *(const int64_t *)v);
		return buf;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(buf, 32, "%" PRIu64, *(const uint64_t *)v);
		return buf;
	default:
		return ""; /* protoc allows no other key types */
	}
}

/* Whether a later entry has the same key. On the wire the last entry for a key wins; protobuf-c keeps
 * them all, so the earlier ones are skipped. Quadratic, which is fine for maps of a request's size. */
static int key_repeats_later(const ProtobufCFieldDescriptor *kf, ProtobufCMessage *const *entries,
			     size_t n, size_t i)
{
	char a[32], b[32];
	const char *key = map_key(kf, entries[i], a);

	for (size_t j = i + 1; j < n; j++)
		if (strcmp(map_key(kf, entries[j], b), key) == 0)
			return 1;
	return 0;
}

static void put_map(Out *o, const ProtobufCFieldDescriptor *f, ProtobufCMessage *const *entries, size_t n)
{
	const ProtobufCMessageDescriptor *entry = f->descriptor;
	const ProtobufCFieldDescriptor *kf = &entry->fields[0], *vf = &entry->fields[1];
	int first = 1;
	char buf[32];

	put(o, "{", 1);
	for (size_t i = 0; i < n; i++) {
		if (key_repeats_later(kf, entries, n, i))
			continue;
		if (!first)
			put(o, ",", 1);
		first = 0;
		put_cstring(o, map_key(kf, entries[i], buf));
		put(o, ":", 1);
		/* An entry without its value on the wire maps to the value's default; for a message value
		 * that is the NULL pointer put_message prints as the empty message. */
		put_field_value(o, vf, AT(entries[i], vf->offset));
	}
	put(o, "}", 1);
}

static void put_regular_message(Out *o, const ProtobufCMessageDescriptor *d, const ProtobufCMessage *msg)
{
	int first = 1;

	put(o, "{", 1);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];

		if (!is_present(msg, f))
			continue;
		if (!first)
			put(o, ",", 1);
		first = 0;
		put_cstring(o, f->name);
		put(o, ":", 1);
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			/* quantifier_offset holds the count (size_t n_<field>), offset the array pointer. */
			size_t n = *(const size_t *)AT(msg, f->quantifier_offset);
			const char *array = *(const char *const *)AT(msg, f->offset);

			if (is_map_field(d, f)) {
				put_map(o, f, (ProtobufCMessage *const *)array, n);
			} else {
				size_t size = element_size(f->type);

				put(o, "[", 1);
				for (size_t k = 0; k < n; k++) {
					if (k)
						put(o, ",", 1);
					put_field_value(o, f, array + k * size);
				}
				put(o, "]", 1);
			}
		} else {
			put_field_value(o, f, AT(msg, f->offset));
		}
	}
	put(o, "}", 1);
}

static void put_value(Out *o, const Google__Protobuf__Value *v);

/* google.protobuf.Struct: a JSON object. Its `fields` map gets the same last-key-wins treatment. */
static void put_struct(Out *o, const Google__Protobuf__Struct *s)
{
	int first = 1;

	put(o, "{", 1);
	for (size_t i = 0; s && i < s->n_fields; i++) {
		int later = 0;

		for (size_t j = i + 1; j < s->n_fields && !later; j++)
			later = strcmp(s->fields[j]->key, s->fields[i]->key) == 0;
		if (later)
			continue;
		if (!first)
			put(o, ",", 1);
		first = 0;
		put_cstring(o, s->fields[i]->key);
		put(o, ":", 1);
		put_value(o, s->fields[i]->value);
	}
	put(o, "}", 1);
}

/* google.protobuf.ListValue: a JSON array. */
static void put_list(Out *o, const Google__Protobuf__ListValue *l)
{
	put(o, "[", 1);
	for (size_t i = 0; l && i < l->n_values; i++) {
		if (i)
			put(o, ",", 1);
		put_value(o, l->values[i]);
	}
	put(o, "]", 1);
}

/* google.protobuf.Value: the JSON value it holds. No kind set prints as null, as MessageToDict does. */
static void put_value(Out *o, const Google__Protobuf__Value *v)
{
	if (++o->depth > MAX_DEPTH) {
		fail(o, "google.protobuf.Value nested more than %d deep", MAX_DEPTH);
		o->depth--;
		return;
	}
	switch (v ? v->kind_case : GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET) {
	case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
		/* proto3 JSON has no way to write these: as strings they would read back as string_value. */
		if (!isfinite(v->number_value))
			fail(o, "google.protobuf.Value.number_value is %g, which proto3 JSON cannot represent",
			     v->number_value);
		else
			put_floating(o, v->number_value, 0);
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
		put_cstring(o, v->string_value);
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
		puts_(o, v->bool_value ? "true" : "false");
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
		put_struct(o, v->struct_value);
		break;
	case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
		put_list(o, v->list_value);
		break;
	default: /* NOT_SET, NULL_VALUE */
		puts_(o, "null");
		break;
	}
	o->depth--;
}

/* A message of type d; msg NULL (an absent message printed anyway, e.g. a map value missing from its
 * entry) prints as the type's empty message. */
static void put_message(Out *o, const ProtobufCMessageDescriptor *d, const ProtobufCMessage *msg)
{
	if (o->error[0])
		return;
	if (++o->depth > MAX_DEPTH) {
		fail(o, "messages nested more than %d deep", MAX_DEPTH);
	} else if (d == &google__protobuf__value__descriptor) {
		put_value(o, (const Google__Protobuf__Value *)msg);
	} else if (d == &google__protobuf__struct__descriptor) {
		put_struct(o, (const Google__Protobuf__Struct *)msg);
	} else if (d == &google__protobuf__list_value__descriptor) {
		put_list(o, (const Google__Protobuf__ListValue *)msg);
	} else if (msg == NULL) {
		/* Print a freshly initialised instance: every field at its default. */
		ProtobufCMessage *empty = malloc(d->sizeof_message);

		if (!empty) {
			fail(o, "out of memory");
		} else {
			protobuf_c_message_init(d, empty);
			put_message(o, d, empty);
			free(empty);
		}
	} else if (is_wrapper(d)) {
		/* Wrappers are their `value`, printed even when it is zero: the wrapper's presence is the point. */
		put_field_value(o, &d->fields[0], AT(msg, d->fields[0].offset));
	} else {
		put_regular_message(o, d, msg);
	}
	o->depth--;
}

/* ---- Main ------------------------------------------------------------------------------------- */

static int read_file(const char *path, uint8_t **data, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0;

	if (!f) {
		fprintf(stderr, "golden_decode: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		size_t got;

		if (n == cap) {
			uint8_t *bigger = realloc(buf, cap ? cap * 2 : 65536);

			if (!bigger) {
				fprintf(stderr, "golden_decode: %s: out of memory\n", path);
				goto fail;
			}
			buf = bigger;
			cap = cap ? cap * 2 : 65536;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "golden_decode: %s: read error\n", path);
		goto fail;
	}
	fclose(f);
	*data = buf;
	*len = n;
	return 0;
fail:
	free(buf);
	fclose(f);
	return -1;
}

/* CallOpen.method -> the method's request message, from the generated descriptor of service Synthd. */
static const ProtobufCMessageDescriptor *request_type(const char *method)
{
	const ProtobufCMethodDescriptor *m =
		protobuf_c_service_descriptor_get_method_by_name(&synthd__v1__synthd__descriptor, method);

	return m ? m->input : NULL;
}

int main(int argc, char **argv)
{
	const char *path;
	uint8_t *data = NULL;
	size_t len = 0;
	uint32_t declared;
	Synthd__V1__Frame *frame = NULL;
	const Synthd__V1__CallOpen *open;
	const ProtobufCMessageDescriptor *type;
	ProtobufCMessage *request = NULL;
	Out out = {0};
	int status = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: golden_decode FILE.frame\n");
		return 1;
	}
	path = argv[1];
	if (read_file(path, &data, &len) != 0)
		return 1;

	if (len < 4) {
		fprintf(stderr, "golden_decode: %s: %zu bytes, shorter than the 4-byte length prefix\n", path, len);
		goto done;
	}
	declared = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3];
	if (declared != len - 4) {
		fprintf(stderr, "golden_decode: %s: the length prefix says %" PRIu32 " bytes, %zu follow it\n",
			path, declared, len - 4);
		goto done;
	}

	frame = synthd__v1__frame__unpack(NULL, declared, data + 4);
	if (!frame) {
		fprintf(stderr, "golden_decode: %s: not a valid synthd.v1.Frame\n", path);
		goto done;
	}
	if (frame->kind_case != SYNTHD__V1__FRAME__KIND_OPEN || !frame->open) {
		fprintf(stderr, "golden_decode: %s: the frame is not a CallOpen (kind %d)\n", path,
			(int)frame->kind_case);
		goto done;
	}
	open = frame->open;
	type = request_type(open->method);
	if (!type) {
		fprintf(stderr, "golden_decode: %s: unknown method \"%s\"\n", path, open->method);
		goto done;
	}
	/* An empty request (e.g. HealthRequest) is absent from the frame: len 0, data NULL, which
	 * protobuf-c unpacks as the empty message. */
	request = protobuf_c_message_unpack(type, NULL, open->request.len, open->request.data);
	if (!request) {
		fprintf(stderr, "golden_decode: %s: the request is not a valid %s\n", path, type->name);
		goto done;
	}

	putf(&out, "{\"call_id\":\"%" PRIu64 "\",\"method\":", frame->call_id);
	put_cstring(&out, open->method);
	puts_(&out, ",\"api_key\":");
	put_cstring(&out, open->api_key);
	putf(&out, ",\"timeout_ms\":\"%" PRIu64 "\",\"request\":", open->timeout_ms);
	put_message(&out, type, request);
	puts_(&out, "}\n");
	if (out.error[0]) {
		fprintf(stderr, "golden_decode: %s: %s\n", path, out.error);
		goto done;
	}
	if (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
		fprintf(stderr, "golden_decode: writing stdout: %s\n", strerror(errno));
		goto done;
	}
	status = 0;

done:
	if (request)
		protobuf_c_message_free_unpacked(request, NULL);
	if (frame)
		synthd__v1__frame__free_unpacked(frame, NULL);
	free(out.data);
	free(data);
	return status;
}
