/*
 * Requests from JSON: the documented JSON request body parsed into a JobRequest, following the proto3
 * JSON mapping the way the synth CLI reads a --request file:
 *   - keys are the proto field names (lowerCamelCase names are accepted too); an unknown key, or the
 *     same key twice, is an error; null leaves a field at its default;
 *   - 64-bit and 32-bit integers are JSON numbers or decimal strings ("1200"); a number with a
 *     fraction or exponent is accepted when its value is a whole number in range;
 *   - doubles are numbers, or the strings "NaN", "Infinity", "-Infinity" or a number in a string;
 *   - map fields are JSON objects; repeated fields are arrays;
 *   - the wrappers (Int64Value, DoubleValue, ...) are their bare value, and google.protobuf.Value,
 *     Struct and ListValue are any JSON value, object and array.
 *
 * The parser walks protobuf-c's descriptors and builds the message with malloc, keeping the tree
 * complete at every step, so that one protobuf_c_message_free_unpacked() frees it whether parsing
 * finished or failed half-way.
 */
#define _GNU_SOURCE 1 /* newlocale, uselocale */
#include "synthc_internal.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/wrappers.pb-c.h"

#define MAX_DEPTH 64

struct jp {
	const char *start, *p, *end;
	int depth;
	char path[256]; /* the field being parsed, e.g. "advanced.output_split.train" */
	size_t pathlen;
	char err[700];
	int failed;
	int oom;
	locale_t c_locale; /* JSON numbers use '.', whatever the program's locale says */
};

/* strtod in the C locale. */
static double jstrtod(struct jp *j, const char *t, char **endp)
{
	locale_t saved = j->c_locale ? uselocale(j->c_locale) : (locale_t)0;
	double d = strtod(t, endp);
	if (saved)
		uselocale(saved);
	return d;
}

static int jfail(struct jp *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int jfail(struct jp *j, const char *fmt, ...)
{
	if (j->failed)
		return -1;
	j->failed = 1;
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (j->pathlen)
		snprintf(j->err, sizeof j->err, "%s: %s", j->path, msg);
	else
		snprintf(j->err, sizeof j->err, "%s", msg);
	return -1;
}

static int joom(struct jp *j)
{
	j->oom = 1;
	return jfail(j, "out of memory");
}

static size_t path_push(struct jp *j, const char *name, size_t n)
{
	size_t old = j->pathlen;
	size_t room = sizeof j->path - 1 - j->pathlen;
	size_t add = (old ? 1 : 0) + n;
	if (add <= room) {
		if (old)
			j->path[j->pathlen++] = '.';
		memcpy(j->path + j->pathlen, name, n);
		j->pathlen += n;
	}
	j->path[j->pathlen] = '\0';
	return old;
}

static void path_pop(struct jp *j, size_t old)
{
	j->pathlen = old;
	j->path[old] = '\0';
}

/* ---- Lexing ------------------------------------------------------------------------------------- */

static void ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int peek(struct jp *j)
{
	ws(j);
	return j->p < j->end ? (unsigned char)*j->p : -1;
}

static int expect(struct jp *j, char c)
{
	if (peek(j) != (unsigned char)c)
		return jfail(j, "expected '%c' at offset %td", c, j->p - j->start);
	j->p++;
	return 0;
}

static int literal(struct jp *j, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(j->end - j->p) >= n && memcmp(j->p, word, n) == 0) {
		j->p += n;
		return 1;
	}
	return 0;
}

static int hex4(const char *p, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		*v <<= 4;
		if (c >= '0' && c <= '9')
			*v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			*v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	return 0;
}

/* Length of a valid UTF-8 sequence at p (before end), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned char c = p[0];
	size_t n;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

static char *put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		*o++ = (char)cp;
	} else if (cp < 0x800) {
		*o++ = (char)(0xc0 | cp >> 6);
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*o++ = (char)(0xe0 | cp >> 12);
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*o++ = (char)(0xf0 | cp >> 18);
		*o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	}
	return o;
}

/* A JSON string, decoded into a new NUL-terminated UTF-8 string. */
static int jstring(struct jp *j, char **out)
{
	*out = NULL;
	if (peek(j) != '"')
		return jfail(j, "expected a string");
	j->p++;
	const char *s = j->p;
	while (j->p < j->end && *j->p != '"') {
		if (*j->p == '\\')
			j->p++;
		j->p++;
	}
	if (j->p >= j->end)
		return jfail(j, "unterminated string");
	/* The decoded text is never longer than the source. */
	size_t n = (size_t)(j->p - s);
	char *buf = malloc(n + 1), *o = buf;
	if (buf == NULL)
		return joom(j);
	const char *q = s, *e = j->p;
	while (q < e) {
		unsigned char c = (unsigned char)*q;
		if (c < 0x20) {
			free(buf);
			return jfail(j, "control character in a string");
		}
		if (c != '\\') {
			size_t l = utf8_len((const unsigned char *)q, (const unsigned char *)e);
			if (l == 0) {
				free(buf);
				return jfail(j, "a string is not valid UTF-8");
			}
			memcpy(o, q, l);
			o += l;
			q += l;
			continue;
		}
		q++;
		switch (*q) {
		case '"': *o++ = '"'; q++; break;
		case '\\': *o++ = '\\'; q++; break;
		case '/': *o++ = '/'; q++; break;
		case 'b': *o++ = '\b'; q++; break;
		case 'f': *o++ = '\f'; q++; break;
		case 'n': *o++ = '\n'; q++; break;
		case 'r': *o++ = '\r'; q++; break;
		case 't': *o++ = '\t'; q++; break;
		case 'u': {
			unsigned u, lo;
			if (e - q < 5 || hex4(q + 1, &u) != 0)
				goto bad_escape;
			q += 5;
			uint32_t cp = u;
			if (u >= 0xd800 && u <= 0xdbff) {
				if (e - q < 6 || q[0] != '\\' || q[1] != 'u' || hex4(q + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
					goto bad_escape;
				q += 6;
				cp = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
			} else if (u >= 0xdc00 && u <= 0xdfff) {
				goto bad_escape;
			}
			o = put_utf8(o, cp);
			break;
		}
		default:
			goto bad_escape;
		}
	}
	*o = '\0';
	j->p++;
	*out = buf;
	return 0;
bad_escape:
	free(buf);
	return jfail(j, "invalid escape in a string");
}

/* A JSON number's text, copied into buf. */
static int jnumber(struct jp *j, char *buf, size_t cap)
{
	ws(j);
	const char *s = j->p, *p = j->p;
	if (p < j->end && *p == '-')
		p++;
	if (p >= j->end || !(*p >= '0' && *p <= '9'))
		return jfail(j, "expected a number");
	if (*p == '0')
		p++;
	else
		while (p < j->end && *p >= '0' && *p <= '9')
			p++;
	if (p < j->end && *p == '.') {
		p++;
		if (p >= j->end || !(*p >= '0' && *p <= '9'))
			return jfail(j, "malformed number");
		while (p < j->end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < j->end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < j->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= j->end || !(*p >= '0' && *p <= '9'))
			return jfail(j, "malformed number");
		while (p < j->end && *p >= '0' && *p <= '9')
			p++;
	}
	if ((size_t)(p - s) >= cap)
		return jfail(j, "number too long");
	memcpy(buf, s, (size_t)(p - s));
	buf[p - s] = '\0';
	j->p = p;
	return 0;
}

/* Skips `null` if it comes next. */
static int jnull(struct jp *j)
{
	ws(j);
	return literal(j, "null");
}

/* ---- Scalars ------------------------------------------------------------------------------------ */

/* A number, or a number in a string: its text in buf. */
static int number_text(struct jp *j, char *buf, size_t cap, int *quoted)
{
	*quoted = 0;
	if (peek(j) == '"') {
		char *s;
		if (jstring(j, &s) != 0)
			return -1;
		*quoted = 1;
		size_t n = strlen(s);
		if (n >= cap) {
			free(s);
			return jfail(j, "number too long");
		}
		memcpy(buf, s, n + 1);
		free(s);
		return 0;
	}
	return jnumber(j, buf, cap);
}

static int is_plain_integer(const char *t)
{
	const char *p = t;
	if (*p == '-')
		p++;
	if (!*p)
		return 0;
	for (; *p; p++)
		if (*p < '0' || *p > '9')
			return 0;
	return 1;
}

/* An integer within [lo, hi] (signed) or [0, uhi] (unsigned). */
static int jinteger(struct jp *j, int is_signed, int64_t lo, int64_t hi, uint64_t uhi, int64_t *sv, uint64_t *uv)
{
	char t[64];
	int quoted;
	if (number_text(j, t, sizeof t, &quoted) != 0)
		return -1;
	char *endp;
	errno = 0;
	if (is_plain_integer(t)) {
		if (is_signed) {
			long long v = strtoll(t, &endp, 10);
			if (errno || *endp || v < lo || v > hi)
				return jfail(j, "integer out of range: %s", t);
			*sv = v;
		} else {
			if (t[0] == '-')
				return jfail(j, "expected an unsigned integer, got %s", t);
			unsigned long long v = strtoull(t, &endp, 10);
			if (errno || *endp || v > uhi)
				return jfail(j, "integer out of range: %s", t);
			*uv = v;
		}
		return 0;
	}
	/* 1e3 or 100.0: accepted when the value is whole. */
	if (quoted && !(t[0] == '-' || (t[0] >= '0' && t[0] <= '9')))
		return jfail(j, "expected an integer, got \"%s\"", t);
	double d = jstrtod(j, t, &endp);
	if (*endp || !isfinite(d) || d != floor(d))
		return jfail(j, "expected an integer, got %s", t);
	if (is_signed) {
		if (d < (double)lo || d > (double)hi || d >= 9223372036854775808.0)
			return jfail(j, "integer out of range: %s", t);
		*sv = (int64_t)d;
	} else {
		if (d < 0 || d > (double)uhi || d >= 18446744073709551616.0)
			return jfail(j, "integer out of range: %s", t);
		*uv = (uint64_t)d;
	}
	return 0;
}

static int jdouble(struct jp *j, double *out)
{
	char t[400];
	int quoted;
	if (peek(j) == '"') {
		const char *save = j->p;
		char *s;
		if (jstring(j, &s) != 0)
			return -1;
		int special = 1;
		if (strcmp(s, "NaN") == 0)
			*out = NAN;
		else if (strcmp(s, "Infinity") == 0)
			*out = INFINITY;
		else if (strcmp(s, "-Infinity") == 0)
			*out = -INFINITY;
		else
			special = 0;
		free(s);
		if (special)
			return 0;
		j->p = save;
	}
	if (number_text(j, t, sizeof t, &quoted) != 0)
		return -1;
	char *endp;
	errno = 0;
	double d = jstrtod(j, t, &endp);
	if (*endp || (quoted && !(t[0] == '-' || (t[0] >= '0' && t[0] <= '9'))))
		return jfail(j, "expected a number, got %s", t);
	if (!isfinite(d))
		return jfail(j, "number out of range: %s", t);
	*out = d;
	return 0;
}

static int jbool(struct jp *j, protobuf_c_boolean *out)
{
	ws(j);
	if (literal(j, "true"))
		*out = 1;
	else if (literal(j, "false"))
		*out = 0;
	else
		return jfail(j, "expected true or false");
	return 0;
}

static int parse_message_into(struct jp *j, const ProtobufCMessageDescriptor *d, ProtobufCMessage *m);

static ProtobufCMessage *new_message(struct jp *j, const ProtobufCMessageDescriptor *d)
{
	ProtobufCMessage *m = malloc(d->sizeof_message);
	if (m == NULL) {
		joom(j);
		return NULL;
	}
	/* Through the library: calling d->message_init here calls the generated init (which takes its
	 * own message type) through a pointer of another type, undefined behaviour that UBSan reports
	 * (found by the c-json fuzz target). */
	protobuf_c_message_init(d, m);
	return m;
}

/* One value of field f (a singular field, or one element of a repeated one) stored at dst. For a
 * message, *dst is the pointer, set before the message is parsed so the tree stays complete. */
static int parse_value(struct jp *j, const ProtobufCFieldDescriptor *f, void *dst)
{
	int64_t sv = 0;
	uint64_t uv = 0;
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		if (jinteger(j, 1, INT32_MIN, INT32_MAX, 0, &sv, &uv) != 0)
			return -1;
		*(int32_t *)dst = (int32_t)sv;
		return 0;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		if (jinteger(j, 1, INT64_MIN, INT64_MAX, 0, &sv, &uv) != 0)
			return -1;
		*(int64_t *)dst = sv;
		return 0;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		if (jinteger(j, 0, 0, 0, UINT32_MAX, &sv, &uv) != 0)
			return -1;
		*(uint32_t *)dst = (uint32_t)uv;
		return 0;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		if (jinteger(j, 0, 0, 0, UINT64_MAX, &sv, &uv) != 0)
			return -1;
		*(uint64_t *)dst = uv;
		return 0;
	case PROTOBUF_C_TYPE_FLOAT: {
		double d;
		if (jdouble(j, &d) != 0)
			return -1;
		*(float *)dst = (float)d;
		return 0;
	}
	case PROTOBUF_C_TYPE_DOUBLE:
		return jdouble(j, (double *)dst);
	case PROTOBUF_C_TYPE_BOOL:
		return jbool(j, (protobuf_c_boolean *)dst);
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumDescriptor *ed = f->descriptor;
		if (peek(j) == '"') {
			char *s;
			if (jstring(j, &s) != 0)
				return -1;
			const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(ed, s);
			if (ev == NULL) {
				jfail(j, "unknown %s value \"%.100s\"", ed->name, s);
				free(s);
				return -1;
			}
			free(s);
			*(int *)dst = ev->value;
			return 0;
		}
		if (jinteger(j, 1, INT32_MIN, INT32_MAX, 0, &sv, &uv) != 0)
			return -1;
		*(int *)dst = (int)sv;
		return 0;
	}
	case PROTOBUF_C_TYPE_STRING: {
		char *s;
		if (jstring(j, &s) != 0)
			return -1;
		char **slot = dst;
		if (*slot && *slot != protobuf_c_empty_string && *slot != (const char *)f->default_value)
			free(*slot);
		*slot = s;
		return 0;
	}
	case PROTOBUF_C_TYPE_BYTES:
		return jfail(j, "bytes fields are not supported in JSON requests");
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessageDescriptor *md = f->descriptor;
		ProtobufCMessage *m = new_message(j, md);
		if (m == NULL)
			return -1;
		*(ProtobufCMessage **)dst = m;
		return parse_message_into(j, md, m);
	}
	}
	return jfail(j, "unsupported field type");
}

/* ---- Messages ----------------------------------------------------------------------------------- */

static int name_matches(const char *key, const char *name)
{
	if (strcmp(key, name) == 0)
		return 1;
	/* lowerCamelCase, as proto3 JSON's json_name. */
	int up = 0;
	for (; *name; name++) {
		char c = *name;
		if (c == '_') {
			up = 1;
			continue;
		}
		if (up && c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		up = 0;
		if (*key++ != c)
			return 0;
	}
	return *key == '\0';
}

static int is_map_field(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f)
{
	if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
		return 0;
	const ProtobufCMessageDescriptor *e = f->descriptor;
	size_t n = strlen(parent->name);
	return e->n_fields == 2 && e->fields[0].id == 1 && strcmp(e->fields[0].name, "key") == 0 &&
	       e->fields[1].id == 2 && strcmp(e->fields[1].name, "value") == 0 &&
	       strncmp(e->name, parent->name, n) == 0 && e->name[n] == '.' &&
	       strlen(e->short_name) > 5 && strcmp(e->short_name + strlen(e->short_name) - 5, "Entry") == 0;
}

static size_t elem_size(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return 4;
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
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

/* Appends a zeroed element to a repeated field and returns it; the count covers it at once, so a
 * failure while it is filled in still frees it. Strings start as NULL, which free_unpacked skips. */
static void *append(struct jp *j, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	size_t *n = (size_t *)((char *)m + f->quantifier_offset);
	void **arr = (void **)((char *)m + f->offset);
	size_t es = elem_size(f);
	void *grown = realloc(*arr, (*n + 1) * es);
	if (grown == NULL) {
		joom(j);
		return NULL;
	}
	*arr = grown;
	void *slot = (char *)grown + *n * es;
	memset(slot, 0, es);
	(*n)++;
	return slot;
}

static int parse_wkt_value(struct jp *j, Google__Protobuf__Value *v);

static int parse_struct(struct jp *j, Google__Protobuf__Struct *s)
{
	if (expect(j, '{') != 0)
		return -1;
	if (peek(j) == '}') {
		j->p++;
		return 0;
	}
	for (;;) {
		char *key;
		if (jstring(j, &key) != 0)
			return -1;
		Google__Protobuf__Struct__FieldsEntry *e = malloc(sizeof *e);
		Google__Protobuf__Struct__FieldsEntry **arr = e ? realloc(s->fields, (s->n_fields + 1) * sizeof *arr) : NULL;
		if (arr == NULL) {
			free(e);
			free(key);
			return joom(j);
		}
		google__protobuf__struct__fields_entry__init(e);
		e->key = key;
		s->fields = arr;
		s->fields[s->n_fields++] = e;
		if (expect(j, ':') != 0)
			return -1;
		size_t old = path_push(j, key, strlen(key));
		Google__Protobuf__Value *v = malloc(sizeof *v);
		if (v == NULL)
			return joom(j);
		google__protobuf__value__init(v);
		e->value = v;
		if (parse_wkt_value(j, v) != 0)
			return -1;
		path_pop(j, old);
		int c = peek(j);
		j->p++;
		if (c == '}')
			return 0;
		if (c != ',')
			return jfail(j, "expected ',' or '}' in an object");
	}
}

static int parse_list(struct jp *j, Google__Protobuf__ListValue *l)
{
	if (expect(j, '[') != 0)
		return -1;
	if (peek(j) == ']') {
		j->p++;
		return 0;
	}
	for (;;) {
		Google__Protobuf__Value *v = malloc(sizeof *v);
		Google__Protobuf__Value **arr = v ? realloc(l->values, (l->n_values + 1) * sizeof *arr) : NULL;
		if (arr == NULL) {
			free(v);
			return joom(j);
		}
		google__protobuf__value__init(v);
		l->values = arr;
		l->values[l->n_values++] = v;
		if (parse_wkt_value(j, v) != 0)
			return -1;
		int c = peek(j);
		j->p++;
		if (c == ']')
			return 0;
		if (c != ',')
			return jfail(j, "expected ',' or ']' in an array");
	}
}

/* google.protobuf.Value: any JSON value. */
static int parse_wkt_value(struct jp *j, Google__Protobuf__Value *v)
{
	if (++j->depth > MAX_DEPTH)
		return jfail(j, "nested too deeply");
	int c = peek(j), rc = 0;
	if (c == '{') {
		Google__Protobuf__Struct *s = malloc(sizeof *s);
		if (s == NULL)
			return joom(j);
		google__protobuf__struct__init(s);
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
		v->struct_value = s;
		rc = parse_struct(j, s);
	} else if (c == '[') {
		Google__Protobuf__ListValue *l = malloc(sizeof *l);
		if (l == NULL)
			return joom(j);
		google__protobuf__list_value__init(l);
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
		v->list_value = l;
		rc = parse_list(j, l);
	} else if (c == '"') {
		char *s;
		if (jstring(j, &s) != 0)
			return -1;
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
		v->string_value = s;
	} else if (c == 't' || c == 'f') {
		protobuf_c_boolean b;
		if (jbool(j, &b) != 0)
			return -1;
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
		v->bool_value = b;
	} else if (c == 'n') {
		if (!jnull(j))
			return jfail(j, "expected a JSON value");
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
		v->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
	} else {
		char t[400];
		if (jnumber(j, t, sizeof t) != 0)
			return -1;
		double d = jstrtod(j, t, NULL);
		if (!isfinite(d))
			return jfail(j, "number out of range: %s", t);
		v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
		v->number_value = d;
	}
	j->depth--;
	return rc;
}

static int is_wrapper(const ProtobufCMessageDescriptor *d)
{
	return strncmp(d->name, "google.protobuf.", 16) == 0 && d->n_fields == 1 &&
	       strcmp(d->fields[0].name, "value") == 0 && strlen(d->name) > 21 &&
	       strcmp(d->name + strlen(d->name) - 5, "Value") == 0 && strcmp(d->name, "google.protobuf.Value") != 0;
}

/* A map field: a JSON object whose values go into <F>Entry messages. */
static int parse_map(struct jp *j, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *ed = f->descriptor;
	const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
	if (expect(j, '{') != 0)
		return -1;
	if (peek(j) == '}') {
		j->p++;
		return 0;
	}
	for (;;) {
		char *key;
		if (jstring(j, &key) != 0)
			return -1;
		ProtobufCMessage **slot = append(j, m, f);
		if (slot == NULL) {
			free(key);
			return -1;
		}
		ProtobufCMessage *e = new_message(j, ed);
		if (e == NULL) {
			free(key);
			return -1;
		}
		*slot = e;
		size_t old = path_push(j, key, strlen(key));
		if (kf->type == PROTOBUF_C_TYPE_STRING) {
			*(char **)((char *)e + kf->offset) = key;
		} else {
			/* Integer and bool keys are written as strings: read the key's text as a value. */
			struct jp k = *j;
			size_t kl = strlen(key);
			char *quoted = malloc(kl + 3);
			if (quoted == NULL) {
				free(key);
				return joom(j);
			}
			quoted[0] = '"';
			memcpy(quoted + 1, key, kl);
			quoted[kl + 1] = '"';
			quoted[kl + 2] = '\0';
			k.p = kf->type == PROTOBUF_C_TYPE_BOOL ? quoted + 1 : quoted;
			k.end = kf->type == PROTOBUF_C_TYPE_BOOL ? quoted + kl + 1 : quoted + kl + 2;
			int rc = parse_value(&k, kf, (char *)e + kf->offset);
			if (rc == 0 && k.p != k.end)
				rc = jfail(&k, "bad map key");
			free(quoted);
			free(key);
			if (rc != 0) {
				memcpy(j->err, k.err, sizeof j->err);
				j->failed = 1;
				return -1;
			}
		}
		if (expect(j, ':') != 0)
			return -1;
		if (jnull(j))
			return jfail(j, "a map value must not be null");
		if (parse_value(j, vf, (char *)e + vf->offset) != 0)
			return -1;
		path_pop(j, old);
		int c = peek(j);
		j->p++;
		if (c == '}')
			return 0;
		if (c != ',')
			return jfail(j, "expected ',' or '}' in an object");
	}
}

static int parse_field(struct jp *j, const ProtobufCMessageDescriptor *d, ProtobufCMessage *m,
		       const ProtobufCFieldDescriptor *f)
{
	char *base = (char *)m;
	int is_value = f->type == PROTOBUF_C_TYPE_MESSAGE &&
		       strcmp(((const ProtobufCMessageDescriptor *)f->descriptor)->name, "google.protobuf.Value") == 0;
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		if (jnull(j))
			return 0;
		if (is_map_field(d, f))
			return parse_map(j, m, f);
		if (expect(j, '[') != 0)
			return -1;
		if (peek(j) == ']') {
			j->p++;
			return 0;
		}
		for (;;) {
			if (!is_value && jnull(j))
				return jfail(j, "a list element must not be null");
			void *slot = append(j, m, f);
			if (slot == NULL || parse_value(j, f, slot) != 0)
				return -1;
			int c = peek(j);
			j->p++;
			if (c == ']')
				return 0;
			if (c != ',')
				return jfail(j, "expected ',' or ']' in an array");
		}
	}
	/* null means "not given", except for a Value, where it is the null value. */
	if (!is_value && jnull(j))
		return 0;
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		uint32_t *which = (uint32_t *)(base + f->quantifier_offset);
		if (*which != 0 && *which != f->id)
			return jfail(j, "more than one member of a oneof is set");
		if (*which == f->id)
			return jfail(j, "duplicate field");
		/* The case is set only once the member holds something that free_unpacked can free. */
		if (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_STRING) {
			*(void **)(base + f->offset) = NULL;
			*which = f->id;
		}
		if (parse_value(j, f, base + f->offset) != 0)
			return -1;
		*which = f->id;
		return 0;
	}
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset && f->type != PROTOBUF_C_TYPE_MESSAGE &&
	    f->type != PROTOBUF_C_TYPE_STRING)
		*(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
	return parse_value(j, f, base + f->offset);
}

static int parse_message_into(struct jp *j, const ProtobufCMessageDescriptor *d, ProtobufCMessage *m)
{
	if (++j->depth > MAX_DEPTH)
		return jfail(j, "nested too deeply");
	if (is_wrapper(d)) {
		if (parse_value(j, &d->fields[0], (char *)m + d->fields[0].offset) != 0)
			return -1;
		j->depth--;
		return 0;
	}
	if (strcmp(d->name, "google.protobuf.Value") == 0) {
		if (parse_wkt_value(j, (Google__Protobuf__Value *)m) != 0)
			return -1;
		j->depth--;
		return 0;
	}
	if (strcmp(d->name, "google.protobuf.Struct") == 0) {
		if (parse_struct(j, (Google__Protobuf__Struct *)m) != 0)
			return -1;
		j->depth--;
		return 0;
	}
	if (strcmp(d->name, "google.protobuf.ListValue") == 0) {
		if (parse_list(j, (Google__Protobuf__ListValue *)m) != 0)
			return -1;
		j->depth--;
		return 0;
	}
	if (expect(j, '{') != 0)
		return -1;
	uint64_t seen = 0;
	if (peek(j) == '}') {
		j->p++;
		j->depth--;
		return 0;
	}
	for (;;) {
		char *key;
		if (jstring(j, &key) != 0)
			return -1;
		const ProtobufCFieldDescriptor *f = NULL;
		for (unsigned i = 0; i < d->n_fields; i++)
			if (name_matches(key, d->fields[i].name)) {
				f = &d->fields[i];
				break;
			}
		if (f == NULL) {
			jfail(j, "unknown field \"%.100s\" in %s", key, d->short_name);
			free(key);
			return -1;
		}
		free(key);
		size_t idx = (size_t)(f - d->fields);
		size_t old = path_push(j, f->name, strlen(f->name));
		if (idx < 64 && (seen >> idx & 1))
			return jfail(j, "duplicate field");
		if (idx < 64)
			seen |= (uint64_t)1 << idx;
		if (expect(j, ':') != 0 || parse_field(j, d, m, f) != 0)
			return -1;
		path_pop(j, old);
		int c = peek(j);
		j->p++;
		if (c == '}')
			break;
		if (c != ',')
			return jfail(j, "expected ',' or '}' in an object");
	}
	j->depth--;
	return 0;
}

/* ---- API ---------------------------------------------------------------------------------------- */

/* Parses JSON text into a new message of type d. NULL with a reason in err. */
ProtobufCMessage *synthc_message_from_json(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
					   char *err, size_t errlen, int *oom)
{
	struct jp j;
	memset(&j, 0, sizeof j);
	j.start = j.p = json;
	j.end = json + len;
	*oom = 0;
	j.c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
	ProtobufCMessage *m = new_message(&j, d);
	if (m != NULL && parse_message_into(&j, d, m) == 0) {
		ws(&j);
		if (j.p == j.end) {
			if (j.c_locale)
				freelocale(j.c_locale);
			return m;
		}
		jfail(&j, "unexpected text after the JSON value");
	}
	if (j.c_locale)
		freelocale(j.c_locale);
	if (m)
		protobuf_c_message_free_unpacked(m, NULL);
	snprintf(err, errlen, "%s", j.err);
	*oom = j.oom;
	return NULL;
}

Synthd__V1__JobRequest *synthc_job_request_from_json(synthc_client *c, const char *json, size_t len)
{
	char err[700];
	int oom;
	if (c == NULL)
		return NULL;
	synthc_clear_error(c);
	if (json == NULL) {
		synthc_set_error(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "BAD_ARGUMENT",
				 "the JSON request must not be NULL");
		return NULL;
	}
	ProtobufCMessage *m = synthc_message_from_json(&synthd__v1__job_request__descriptor, json, len, err, sizeof err, &oom);
	if (m == NULL) {
		if (oom)
			synthc_set_error(c, SYNTHC_ERR_OOM, SYNTHD__V1__STATUS_CODE__RESOURCE_EXHAUSTED, "OUT_OF_MEMORY",
					 "out of memory");
		else
			synthc_set_error(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "MALFORMED_REQUEST",
					 "the request is not a valid JobRequest: %s", err);
		return NULL;
	}
	return (Synthd__V1__JobRequest *)m;
}

/* The body as a NUL-terminated copy for the request_json field; NULL (with the reason) when it
 * holds a NUL byte, which JSON text never does. */
static char *json_text(synthc_client *c, const char *json, size_t len)
{
	if (json == NULL || memchr(json, 0, len) != NULL) {
		synthc_set_error(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "MALFORMED_REQUEST",
				 "the request body must be JSON text (it holds a NUL byte)");
		return NULL;
	}
	char *text = malloc(len + 1);
	if (text == NULL) {
		synthc_set_error(c, SYNTHC_ERR_OOM, SYNTHD__V1__STATUS_CODE__RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "out of memory");
		return NULL;
	}
	memcpy(text, json, len);
	text[len] = 0;
	return text;
}

/* The body goes as request_json: the server reads it and answers with every problem at once (JSON
 * syntax with line and column, unknown fields and wrong types with their paths, and the rules). */
Synthd__V1__GenerateResponse *synthc_generate_json(synthc_client *c, const char *json, size_t len,
						   const char *idempotency_key, int domain_confirmed)
{
	char *text = json_text(c, json, len);
	if (text == NULL)
		return NULL;
	Synthd__V1__GenerateRequest req = SYNTHD__V1__GENERATE_REQUEST__INIT;
	req.request_json = text;
	req.domain_confirmed = domain_confirmed ? 1 : 0;
	req.idempotency_key = (char *)(idempotency_key ? idempotency_key : "");
	Synthd__V1__GenerateResponse *r = synthc_generate(c, &req);
	free(text);
	return r;
}

Synthd__V1__PlanResponse *synthc_plan_json(synthc_client *c, const char *json, size_t len, int domain_confirmed)
{
	char *text = json_text(c, json, len);
	if (text == NULL)
		return NULL;
	Synthd__V1__PlanRequest req = SYNTHD__V1__PLAN_REQUEST__INIT;
	req.request_json = text;
	req.domain_confirmed = domain_confirmed ? 1 : 0;
	Synthd__V1__PlanResponse *r = synthc_plan(c, &req);
	free(text);
	return r;
}
