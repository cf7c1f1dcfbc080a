/*
 * synthc: the connection, the framing and the calls. See include/synthc.h for the API and
 * proto/README.md for the protocol.
 *
 * Reading: bytes arrive in one growing buffer (rbuf). A frame is decoded in place: its length is
 * checked against the limit as soon as its 4 bytes are in, before the buffer grows for the body, and
 * the envelope (Frame) and the hot stream messages (WatchJobResponse, FetchSplitsResponse, Record) are
 * decoded by hand into views of the buffer, so a record costs no allocation and no copy. Everything
 * else (statuses, unary responses, progress snapshots, split announcements) goes through protobuf-c.
 * A frame's bytes stay in the buffer until the next frame is read, which is what keeps the views
 * handed to the caller valid until the next call.
 *
 * Errors: every failure sets the public fields of the client. I/O and protocol errors close the
 * connection (the byte stream can no longer be trusted); a non-OK status on a call leaves it usable.
 */
#define _GNU_SOURCE 1
#include "synthc_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <pthread.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: SO_NOSIGPIPE is set on the socket instead */
#endif

#define RBUF_INITIAL (256u * 1024u)
/* Reads of at most this much: the buffer's hot part stays in cache (measured: larger reads from a
 * Unix socket were slower). */
#define RECV_MAX (1024u * 1024u)
/* The read buffer keeps up to this much after a large frame. */
#define RBUF_KEEP (8u * 1024u * 1024u)
/* Frames from this size on are read exactly (see fill). */
#define BIG_FRAME (64u * 1024u)
#define MIN_MAX_FRAME 64u

/* Frame field numbers (frame.proto). */
enum { F_CALL_ID = 1, F_OPEN = 2, F_MESSAGE = 3, F_STATUS = 4, F_CANCEL = 5 };

enum stream_kind { S_WATCH = 1, S_SPLITS = 2 };
enum stream_state { ST_OPEN = 0, ST_DONE = 1, ST_FAILED = -1 };

/* A decoded frame: a view into the read buffer. */
struct frame {
	uint64_t call_id;
	int kind; /* F_OPEN..F_CANCEL, or 0 when the frame has none */
	const uint8_t *body;
	size_t len;
};

struct synthc_stream {
	struct impl *c; /* NULL once detached from its client */
	uint64_t id;
	int kind;
	const ProtobufCMethodDescriptor *method; /* WatchJob or FetchSplits, from method_for */
	int state;
	int progress_only;
	int batches; /* asked for RecordBatch events (batch_bytes > 0) */
	int cancelled;
	int saw_progress;
	int has_pending; /* the first message, read by the open call and not yet handed out */
	const uint8_t *pending;
	size_t pending_len;
	uint64_t last_seq;   /* WatchJob: records must come in ascending order */
	int64_t split_left;  /* FetchSplits: records still due in the current split; -1 before the first */
	char split_name[128];
	Synthd__V1__Job *job;
	Synthd__V1__SplitInfo *split;
};

struct impl {
	synthc_client pub; /* first: a synthc_client * is a struct impl * */
	int fd;
	/* TLS, for a tls:HOST:PORT address: the files, the context (made once) and the connection's
	 * session; NULL when not used. */
	char *tls_ca, *tls_cert, *tls_key;
	SSL_CTX *ssl_ctx;
	SSL *ssl;
	char *address;
	char *api_key;
	uint64_t timeout_ms;
	uint64_t stream_timeout_ms;
	int io_timeout_ms;
	uint32_t max_frame;
	uint64_t next_id;
	uint8_t *rbuf;
	size_t rcap, rpos, rlen; /* unread bytes are rbuf[rpos, rlen) */
	size_t consumed;          /* bytes of the last frame handed out, dropped at the next read */
	uint8_t *wbuf;
	size_t wcap;
	Synthd__V1__Status *status;
	uint64_t *stale; /* abandoned calls whose status has not arrived: their frames are skipped */
	size_t nstale, capstale;
	struct synthc_stream *stream;
};

#define IMPL(c) ((struct impl *)(c))

/* ---- Errors ------------------------------------------------------------------------------------- */

static void clear_err(struct impl *c)
{
	c->pub.err = SYNTHC_OK;
	c->pub.code = SYNTHD__V1__STATUS_CODE__OK;
	c->pub.error_code[0] = '\0';
	c->pub.errstr[0] = '\0';
	if (c->status) {
		synthd__v1__status__free_unpacked(c->status, NULL);
		c->status = NULL;
	}
}

static void set_err(struct impl *c, int err, int code, const char *error_code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void set_err(struct impl *c, int err, int code, const char *error_code, const char *fmt, ...)
{
	va_list ap;

	if (c->status) {
		synthd__v1__status__free_unpacked(c->status, NULL);
		c->status = NULL;
	}
	c->pub.err = err;
	c->pub.code = code;
	snprintf(c->pub.error_code, sizeof c->pub.error_code, "%s", error_code ? error_code : "");
	va_start(ap, fmt);
	vsnprintf(c->pub.errstr, sizeof c->pub.errstr, fmt, ap);
	va_end(ap);
}

static void drop_connection(struct impl *c);

/* A failure of the byte stream: record it and close the connection. */
static int fail_conn(struct impl *c, int err, int code, const char *error_code, const char *what)
{
	set_err(c, err, code, error_code, "%s", what);
	drop_connection(c);
	return -1;
}

#define PROTO_FAIL(c, ec, ...)                                                                    \
	do {                                                                                      \
		set_err((c), SYNTHC_ERR_PROTOCOL, SYNTHD__V1__STATUS_CODE__INTERNAL, (ec), __VA_ARGS__); \
		drop_connection(c);                                                               \
		return -1;                                                                        \
	} while (0)

static int oom(struct impl *c)
{
	set_err(c, SYNTHC_ERR_OOM, SYNTHD__V1__STATUS_CODE__RESOURCE_EXHAUSTED, "OUT_OF_MEMORY", "out of memory");
	return -1;
}

/* Takes ownership of a non-OK status and makes it the client's error. */
static void status_err(struct impl *c, Synthd__V1__Status *st, const char *method)
{
	const char *msg = st->message && st->message[0] ? st->message : NULL;

	if (msg)
		set_err(c, SYNTHC_ERR_STATUS, (int)st->code, st->error_code, "%s", msg);
	else
		set_err(c, SYNTHC_ERR_STATUS, (int)st->code, st->error_code, "%s: synthd answered %s",
			method, synthc_code_name((int)st->code));
	c->status = st;
}

void synthc_clear_error(synthc_client *c)
{
	clear_err(IMPL(c));
}

void synthc_set_error(synthc_client *c, int err, int code, const char *error_code, const char *fmt, ...)
{
	va_list ap;
	clear_err(IMPL(c));
	c->err = err;
	c->code = code;
	snprintf(c->error_code, sizeof c->error_code, "%s", error_code ? error_code : "");
	va_start(ap, fmt);
	vsnprintf(c->errstr, sizeof c->errstr, fmt, ap);
	va_end(ap);
}

const Synthd__V1__Status *synthc_status(const synthc_client *c)
{
	return c ? IMPL(c)->status : NULL;
}

const char *synthc_code_name(int code)
{
	static const char *const names[] = {
		"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
		"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
		"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
		"UNAUTHENTICATED",
	};
	if (code < 0 || code >= (int)(sizeof names / sizeof names[0]))
		return "UNKNOWN_CODE";
	return names[code];
}

const char *synthc_err_name(int err)
{
	switch (err) {
	case SYNTHC_OK: return "OK";
	case SYNTHC_ERR_IO: return "IO";
	case SYNTHC_ERR_PROTOCOL: return "PROTOCOL";
	case SYNTHC_ERR_STATUS: return "STATUS";
	case SYNTHC_ERR_ARG: return "ARG";
	case SYNTHC_ERR_OOM: return "OOM";
	}
	return "UNKNOWN";
}

void synthc_free(void *message)
{
	if (message)
		protobuf_c_message_free_unpacked((ProtobufCMessage *)message, NULL);
}

/* ---- Addresses ---------------------------------------------------------------------------------- */

/* Splits an address into a Unix path or a TCP host and port (the rules of the Swift client). The
 * results are malloc'd into *path or *host. 0, or -1 with the error set. */
static int parse_address(struct impl *c, const char *text, char **path, char **host, int *port, int *tls)
{
	const char *p = NULL;
	*path = *host = NULL;
	*port = 0;
	*tls = 0;

	if (strncmp(text, "tls://", 6) == 0 || strncmp(text, "tls:", 4) == 0) {
		*tls = 1;
		text += text[4] == '/' ? 6 : 4;
		if (text[0] == '/' || text[0] == '.' || strncmp(text, "unix:", 5) == 0)
			goto bad;
	}

	if (strncmp(text, "unix://", 7) == 0)
		p = text + 7;
	else if (strncmp(text, "unix:", 5) == 0)
		p = text + 5;
	else if (text[0] == '/' || text[0] == '.')
		p = text;
	if (p) {
		if (*p == '\0')
			goto bad;
		if ((*path = strdup(p)) == NULL)
			return oom(c);
		return 0;
	}
	const char *colon = strrchr(text, ':');
	if (colon == NULL || colon == text || colon[1] == '\0')
		goto bad;
	long v = 0;
	for (const char *d = colon + 1; *d; d++) {
		if (*d < '0' || *d > '9' || v > 65535)
			goto bad;
		v = v * 10 + (*d - '0');
	}
	if (v > 65535)
		goto bad;
	size_t hl = (size_t)(colon - text);
	const char *h = text;
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0)
		goto bad;
	if ((*host = strndup(h, hl)) == NULL)
		return oom(c);
	*port = (int)v;
	return 0;
bad:
	set_err(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "BAD_ADDRESS",
		"address must be unix:PATH, HOST:PORT or tls:HOST:PORT, got \"%.200s\"", text);
	return -1;
}

/* ---- Sockets ------------------------------------------------------------------------------------ */

static void set_timeouts(int fd, int ms)
{
	struct timeval tv;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static void prepare_socket(struct impl *c, int fd)
{
#ifdef SO_NOSIGPIPE
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
	int fl = fcntl(fd, F_GETFD);
	if (fl >= 0)
		fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
	/* Also bounds connect() on Linux, which honours SO_SNDTIMEO there. */
	if (c->io_timeout_ms > 0)
		set_timeouts(fd, c->io_timeout_ms);
}

static int connect_unix(struct impl *c, const char *path)
{
	struct sockaddr_un sa;

	if (strlen(path) >= sizeof sa.sun_path) {
		set_err(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "BAD_ADDRESS",
			"unix socket path is longer than %zu bytes: %.200s", sizeof sa.sun_path - 1, path);
		return -1;
	}
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		goto fail;
	prepare_socket(c, fd);
	while (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		if (errno == EINTR)
			continue;
		int e = errno;
		close(fd);
		errno = e;
		goto fail;
	}
	c->fd = fd;
	return 0;
fail:
	set_err(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__UNAVAILABLE, "CONNECT_FAILED",
		"cannot connect to synthd at unix:%.200s: %s", path, strerror(errno));
	return -1;
}

static int connect_tcp(struct impl *c, const char *host, int port)
{
	struct addrinfo hints, *res = NULL;
	char service[16];
	int fd = -1, e = 0;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(service, sizeof service, "%d", port);
	int rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0) {
		set_err(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__UNAVAILABLE, "CONNECT_FAILED",
			"cannot resolve %.200s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		prepare_socket(c, fd);
		int ok;
		while ((ok = connect(fd, ai->ai_addr, ai->ai_addrlen)) != 0 && errno == EINTR)
			;
		if (ok == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		set_err(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__UNAVAILABLE, "CONNECT_FAILED",
			"cannot connect to synthd at %.200s:%d: %s", host, port, strerror(e ? e : ECONNREFUSED));
		return -1;
	}
	/* Calls are small request frames answered at once: do not let Nagle hold them back. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->fd = fd;
	return 0;
}

/* ---- TLS ---------------------------------------------------------------------------------------- */

/* A socket BIO that writes with MSG_NOSIGNAL: a peer gone away is an error to report, never a
 * SIGPIPE that kills the program (the library does not touch the process's signal handling). */
static int bio_fd(BIO *b) { return (int)(intptr_t)BIO_get_data(b); }

static int bio_write(BIO *b, const char *buf, int len)
{
	BIO_clear_retry_flags(b);
	ssize_t w = send(bio_fd(b), buf, (size_t)len, MSG_NOSIGNAL);
	if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_write(b);
	return (int)w;
}

static int bio_read(BIO *b, char *buf, int len)
{
	BIO_clear_retry_flags(b);
	ssize_t r = recv(bio_fd(b), buf, (size_t)len, 0);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_read(b);
	return (int)r;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b, (void)num, (void)ptr;
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *nosig_method;
static pthread_once_t nosig_once = PTHREAD_ONCE_INIT;

static void make_nosig_method(void)
{
	nosig_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "synthc socket");
	if (nosig_method) {
		BIO_meth_set_write(nosig_method, bio_write);
		BIO_meth_set_read(nosig_method, bio_read);
		BIO_meth_set_ctrl(nosig_method, bio_ctrl);
	}
}

/* The error queue's first entry as text (and clears it). */
static const char *tls_reason(char *buf, size_t n)
{
	unsigned long e = ERR_get_error();
	if (e == 0)
		snprintf(buf, n, "%s", errno ? strerror(errno) : "the connection closed");
	else
		ERR_error_string_n(e, buf, n);
	ERR_clear_error();
	return buf;
}

static void drop_connection(struct impl *c);

/* The TLS context, made once per client from its files: TLS 1.2 or newer, the server's certificate
 * checked against the CA (else the system's roots), a client certificate for mutual TLS. */
static SSL_CTX *tls_context(struct impl *c)
{
	char why[256];
	if (c->ssl_ctx)
		return c->ssl_ctx;
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		oom(c);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/* The protocol's own framing finds a connection cut mid-frame; a close without close_notify
	 * is the end of the stream, as on plain TCP. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	const char *what = NULL;
	if (c->tls_ca ? SSL_CTX_load_verify_locations(ctx, c->tls_ca, NULL) != 1 : SSL_CTX_set_default_verify_paths(ctx) != 1)
		what = "the CA file";
	else if (c->tls_cert && SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert) != 1)
		what = "the client certificate";
	else if (c->tls_cert && SSL_CTX_use_PrivateKey_file(ctx, c->tls_key, SSL_FILETYPE_PEM) != 1)
		what = "the client key";
	else if (c->tls_cert && SSL_CTX_check_private_key(ctx) != 1)
		what = "the client key (it does not match the certificate)";
	if (what) {
		set_err(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "BAD_TLS_FILES", "cannot load %s: %s", what,
			tls_reason(why, sizeof why));
		SSL_CTX_free(ctx);
		return NULL;
	}
	c->ssl_ctx = ctx;
	return ctx;
}

/* The TLS handshake on the connected socket: the server's certificate must verify and name
 * `host` (a DNS name, or the IP address dialled). 0, or -1 with the error set and the connection
 * closed. */
static int tls_handshake(struct impl *c, const char *host, int port)
{
	char why[256];
	SSL_CTX *ctx = tls_context(c);
	if (ctx == NULL) {
		drop_connection(c);
		return -1;
	}
	pthread_once(&nosig_once, make_nosig_method);
	SSL *ssl = SSL_new(ctx);
	BIO *bio = nosig_method ? BIO_new(nosig_method) : NULL;
	if (ssl == NULL || bio == NULL) {
		SSL_free(ssl);
		BIO_free(bio);
		oom(c);
		drop_connection(c);
		return -1;
	}
	BIO_set_data(bio, (void *)(intptr_t)c->fd);
	BIO_set_init(bio, 1);
	SSL_set_bio(ssl, bio, bio);
	c->ssl = ssl;
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
	} else {
		SSL_set_tlsext_host_name(ssl, host);
		SSL_set1_host(ssl, host);
	}
	int rc;
	while ((rc = SSL_connect(ssl)) != 1 && SSL_get_error(ssl, rc) == SSL_ERROR_WANT_READ && errno == EINTR)
		;
	if (rc != 1) {
		long v = SSL_get_verify_result(ssl);
		tls_reason(why, sizeof why);
		if (v != X509_V_OK)
			set_err(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__UNAVAILABLE, "TLS_FAILED",
				"the TLS handshake with synthd at %.200s:%d failed: the server's certificate: %s", host, port,
				X509_verify_cert_error_string(v));
		else
			set_err(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__UNAVAILABLE, "TLS_FAILED",
				"the TLS handshake with synthd at %.200s:%d failed: %s", host, port, why);
		drop_connection(c);
		return -1;
	}
	return 0;
}

/* Ends a stream (state ST_DONE or ST_FAILED) and detaches it from its client, which can then make
 * its next call; the handle keeps only its state. */
static void end_stream(struct synthc_stream *s, int state)
{
	if (s->state == ST_OPEN)
		s->state = state;
	if (s->c && s->c->stream == s)
		s->c->stream = NULL;
	s->c = NULL;
}

static void drop_connection(struct impl *c)
{
	if (c->ssl) {
		SSL_free(c->ssl); /* and its BIO; the socket is closed below */
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->rpos = c->rlen = c->consumed = 0;
	c->nstale = 0;
	if (c->stream)
		end_stream(c->stream, ST_FAILED);
}

static int open_connection(struct impl *c)
{
	char *path, *host;
	int port, rc, tls;

	if (parse_address(c, c->address, &path, &host, &port, &tls) != 0)
		return -1;
	rc = path ? connect_unix(c, path) : connect_tcp(c, host, port);
	if (rc == 0 && tls)
		rc = tls_handshake(c, host, port);
	free(path);
	free(host);
	if (rc == 0)
		c->next_id = 0;
	return rc;
}

static struct impl *new_client(const char *address, const char *api_key, const char *ca, const char *cert, const char *key)
{
	struct impl *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	c->fd = -1;
	c->timeout_ms = SYNTHC_DEFAULT_TIMEOUT_MS;
	c->max_frame = SYNTHC_DEFAULT_MAX_FRAME;

	char *deflt = NULL;
	if (address == NULL)
		address = getenv("SYNTH_ADDRESS");
	if (address == NULL || address[0] == '\0') {
		const char *home = getenv("HOME");
		if (home == NULL || home[0] == '\0')
			home = "/tmp";
		size_t n = strlen(home) + sizeof "unix:/.synthd/synthd.sock";
		deflt = malloc(n);
		if (deflt)
			snprintf(deflt, n, "unix:%s/.synthd/synthd.sock", home);
		address = deflt;
	}
	if (api_key == NULL)
		api_key = getenv("SYNTH_API_KEY");
	c->address = address ? strdup(address) : NULL;
	c->api_key = strdup(api_key ? api_key : "");
	free(deflt);
	if (ca == NULL)
		ca = getenv("SYNTH_TLS_CA");
	if (cert == NULL)
		cert = getenv("SYNTH_TLS_CERT");
	if (key == NULL)
		key = getenv("SYNTH_TLS_KEY");
	int bad = 0;
	if (ca && ca[0] && (c->tls_ca = strdup(ca)) == NULL)
		bad = 1;
	if (cert && cert[0] && (c->tls_cert = strdup(cert)) == NULL)
		bad = 1;
	if (key && key[0] && (c->tls_key = strdup(key)) == NULL)
		bad = 1;
	if (bad) {
		synthc_close(&c->pub);
		return NULL;
	}
	c->rcap = RBUF_INITIAL;
	c->rbuf = malloc(c->rcap);
	c->wcap = 4096;
	c->wbuf = malloc(c->wcap);
	if (c->address == NULL || c->api_key == NULL || c->rbuf == NULL || c->wbuf == NULL) {
		synthc_close(&c->pub);
		return NULL;
	}
	return c;
}

synthc_client *synthc_connect(const char *address, const char *api_key)
{
	return synthc_connect_tls(address, api_key, NULL, NULL, NULL);
}

synthc_client *synthc_connect_tls(const char *address, const char *api_key, const char *ca_file, const char *cert_file,
				  const char *key_file)
{
	struct impl *c = new_client(address, api_key, ca_file, cert_file, key_file);
	if (c == NULL)
		return NULL;
	if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
		set_err(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "BAD_TLS_FILES",
			"a client certificate needs its private key, and a key its certificate");
		return &c->pub;
	}
	open_connection(c);
	return &c->pub;
}

synthc_client *synthc_connect_unix(const char *path, const char *api_key)
{
	if (path == NULL)
		path = "";
	size_t n = strlen(path) + 6;
	char *addr = malloc(n);
	if (addr == NULL)
		return NULL;
	snprintf(addr, n, "unix:%s", path);
	synthc_client *c = synthc_connect(addr, api_key);
	free(addr);
	return c;
}

synthc_client *synthc_connect_tcp(const char *host, int port, const char *api_key)
{
	if (host == NULL)
		host = "";
	size_t n = strlen(host) + 16;
	char *addr = malloc(n);
	if (addr == NULL)
		return NULL;
	if (strchr(host, ':'))
		snprintf(addr, n, "[%s]:%d", host, port);
	else
		snprintf(addr, n, "%s:%d", host, port);
	synthc_client *c = synthc_connect(addr, api_key);
	free(addr);
	return c;
}

void synthc_close(synthc_client *pub)
{
	struct impl *c = IMPL(pub);
	if (c == NULL)
		return;
	drop_connection(c);
	clear_err(c);
	free(c->address);
	free(c->api_key);
	free(c->tls_ca);
	free(c->tls_cert);
	free(c->tls_key);
	SSL_CTX_free(c->ssl_ctx);
	free(c->rbuf);
	free(c->wbuf);
	free(c->stale);
	free(c);
}

int synthc_reconnect(synthc_client *pub)
{
	struct impl *c = IMPL(pub);
	if (c == NULL)
		return -1;
	drop_connection(c);
	clear_err(c);
	return open_connection(c);
}

int synthc_is_connected(const synthc_client *pub)
{
	return pub != NULL && IMPL(pub)->fd >= 0;
}

int synthc_set_api_key(synthc_client *pub, const char *api_key)
{
	struct impl *c = IMPL(pub);
	char *k = strdup(api_key ? api_key : "");
	if (k == NULL)
		return oom(c);
	free(c->api_key);
	c->api_key = k;
	return 0;
}

void synthc_set_timeout(synthc_client *pub, uint64_t timeout_ms)
{
	IMPL(pub)->timeout_ms = timeout_ms;
}

void synthc_set_stream_timeout(synthc_client *pub, uint64_t timeout_ms)
{
	IMPL(pub)->stream_timeout_ms = timeout_ms;
}

int synthc_set_io_timeout(synthc_client *pub, int timeout_ms)
{
	struct impl *c = IMPL(pub);
	if (timeout_ms < 0) {
		set_err(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "BAD_ARGUMENT",
			"the I/O timeout must not be negative");
		return -1;
	}
	c->io_timeout_ms = timeout_ms;
	if (c->fd >= 0)
		set_timeouts(c->fd, timeout_ms);
	return 0;
}

int synthc_set_max_frame_size(synthc_client *pub, uint32_t bytes)
{
	struct impl *c = IMPL(pub);
	if (bytes < MIN_MAX_FRAME || bytes > UINT32_MAX - 8) {
		set_err(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "BAD_ARGUMENT",
			"the maximum frame size must be at least %u bytes", MIN_MAX_FRAME);
		return -1;
	}
	c->max_frame = bytes;
	return 0;
}

/* ---- Protobuf wire reading ---------------------------------------------------------------------- */

/* Reads a varint at *p (before end). 0, or -1 when it is cut short or longer than 10 bytes. Inline,
 * with the one-byte case first: it is most of the keys and lengths of a record's frame. */
static inline int wire_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;
	const uint8_t *q = *p;
	if (q < end && *q < 0x80) {
		*v = *q;
		*p = q + 1;
		return 0;
	}
	for (int shift = 0; shift < 70; shift += 7) {
		if (q >= end)
			return -1;
		uint8_t b = *q++;
		if (shift == 63 && b > 1)
			return -1;
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*p = q;
			*v = r;
			return 0;
		}
	}
	return -1;
}

/* Reads one field's key and, for a length-delimited field, its bytes; skips the value of the other
 * wire types (returning it in *v for varints). 0, or -1 when the bytes are not valid protobuf. */
static inline int wire_field(const uint8_t **p, const uint8_t *end, uint32_t *field, int *wt, uint64_t *v,
			     const uint8_t **body, size_t *len)
{
	uint64_t key;
	if (wire_varint(p, end, &key) != 0)
		return -1;
	if (key >> 3 == 0 || key >> 3 > 536870911u)
		return -1;
	*field = (uint32_t)(key >> 3);
	*wt = (int)(key & 7);
	*v = 0;
	*body = NULL;
	*len = 0;
	switch (*wt) {
	case 0:
		return wire_varint(p, end, v);
	case 1:
		if (end - *p < 8)
			return -1;
		*p += 8;
		return 0;
	case 5:
		if (end - *p < 4)
			return -1;
		*p += 4;
		return 0;
	case 2: {
		uint64_t n;
		if (wire_varint(p, end, &n) != 0 || n > (uint64_t)(end - *p))
			return -1;
		*body = *p;
		*len = (size_t)n;
		*p += n;
		return 0;
	}
	default: /* groups (3, 4) do not exist in proto3; 6 and 7 are invalid */
		return -1;
	}
}

/* Decodes a Frame's envelope. Like protobuf, the last member of the oneof wins. 0 or -1. */
static int decode_frame(const uint8_t *p, size_t n, struct frame *f)
{
	const uint8_t *end = p + n;
	memset(f, 0, sizeof *f);
	while (p < end) {
		uint32_t field;
		int wt;
		uint64_t v;
		const uint8_t *body;
		size_t len;
		if (wire_field(&p, end, &field, &wt, &v, &body, &len) != 0)
			return -1;
		if (field == F_CALL_ID) {
			if (wt != 0)
				return -1;
			f->call_id = v;
		} else if (field >= F_OPEN && field <= F_CANCEL) {
			if (wt != 2)
				return -1;
			f->kind = (int)field;
			f->body = body;
			f->len = len;
		}
	}
	return 0;
}

/* A message of varint fields 1..nints (into ints[]) and one bytes field (field nints + 1, into
 * *bytes and *len); other fields are skipped. Record {seq, json} and RecordBatch {first_seq,
 * last_seq, count, jsonl} are both of this shape. 0 or -1. */
static int decode_flat(const uint8_t *p, size_t n, uint64_t *ints, uint32_t nints, const uint8_t **bytes, size_t *len)
{
	const uint8_t *end = p + n;
	memset(ints, 0, nints * sizeof *ints);
	*bytes = (const uint8_t *)"";
	*len = 0;
	while (p < end) {
		uint32_t field;
		int wt;
		uint64_t v;
		const uint8_t *body;
		size_t l;
		if (wire_field(&p, end, &field, &wt, &v, &body, &l) != 0)
			return -1;
		if (field >= 1 && field <= nints) {
			if (wt != 0)
				return -1;
			ints[field - 1] = v;
		} else if (field == nints + 1) {
			if (wt != 2)
				return -1;
			*bytes = body;
			*len = l;
		}
	}
	return 0;
}

/* WatchJobResponse and FetchSplitsResponse share their shape: a oneof of field 1 (a message: Job or
 * SplitInfo), field 2 (Record) and field 3 (RecordBatch). Returns the member present (0 for none)
 * with its bytes. */
static int decode_event(const uint8_t *p, size_t n, int *which, const uint8_t **body, size_t *len)
{
	const uint8_t *end = p + n;
	*which = 0;
	while (p < end) {
		uint32_t field;
		int wt;
		uint64_t v;
		const uint8_t *b;
		size_t l;
		if (wire_field(&p, end, &field, &wt, &v, &b, &l) != 0)
			return -1;
		if (field >= 1 && field <= 3) {
			if (wt != 2)
				return -1;
			*which = (int)field;
			*body = b;
			*len = l;
		}
	}
	return 0;
}

/* ---- Reading frames ----------------------------------------------------------------------------- */

/* Reads until at least `need` unread bytes are buffered. `need` is at most max_frame + 4, and the
 * buffer grows only to what a frame whose length was already checked needs. 0, or -1. */
static int fill(struct impl *c, size_t need)
{
	size_t have = c->rlen - c->rpos;
	if (have >= need)
		return 0;
	/* Move the partial frame to the front when the frame would not fit behind it, or when the space
	 * left behind it is too small for reads of a useful size. It is less than one frame. */
	if (c->rpos > 0 && (c->rcap - c->rpos < need || c->rcap - c->rlen < c->rcap / 2)) {
		memmove(c->rbuf, c->rbuf + c->rpos, have);
		c->rpos = 0;
		c->rlen = have;
	}
	{
		if (c->rcap - c->rpos < need) {
			size_t cap = c->rcap * 2;
			if (cap < need)
				cap = need;
			if (cap > (size_t)c->max_frame + 4)
				cap = (size_t)c->max_frame + 4;
			if (cap < need)
				cap = need;
			uint8_t *b = realloc(c->rbuf, cap);
			if (b == NULL) {
				oom(c);
				drop_connection(c);
				return -1;
			}
			c->rbuf = b;
			c->rcap = cap;
		}
	}
	while (c->rlen - c->rpos < need) {
		size_t room = c->rcap - c->rlen;
		size_t want = room < RECV_MAX ? room : RECV_MAX;
		/* A large frame is read up to its last byte and no further: the next frame then starts
		 * at the front of the buffer, and record batches are never moved (memmove) once read. */
		if (need >= BIG_FRAME && want > need - (c->rlen - c->rpos))
			want = need - (c->rlen - c->rpos);
		ssize_t r;
		if (c->ssl) {
			int n = SSL_read(c->ssl, c->rbuf + c->rlen, want > INT32_MAX ? INT32_MAX : (int)want);
			if (n > 0) {
				c->rlen += (size_t)n;
				continue;
			}
			int e = SSL_get_error(c->ssl, n);
			if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)) {
				r = 0;
			} else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				if (errno == EINTR)
					continue;
				return fail_conn(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__DEADLINE_EXCEEDED, "TIMEOUT",
						 "timed out waiting for synthd");
			} else {
				char why[256];
				set_err(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__UNAVAILABLE, "IO_ERROR", "reading from synthd failed: TLS: %s",
					tls_reason(why, sizeof why));
				drop_connection(c);
				return -1;
			}
		} else {
			r = recv(c->fd, c->rbuf + c->rlen, want, 0);
		}
		if (r > 0) {
			c->rlen += (size_t)r;
			continue;
		}
		if (r == 0) {
			if (c->rlen == c->rpos)
				return fail_conn(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__UNAVAILABLE, "CONNECTION_CLOSED",
						 "synthd closed the connection");
			set_err(c, SYNTHC_ERR_PROTOCOL, SYNTHD__V1__STATUS_CODE__INTERNAL, "TRUNCATED_FRAME",
				"synthd closed the connection partway through a frame (%zu of %zu bytes)",
				c->rlen - c->rpos, need);
			drop_connection(c);
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return fail_conn(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__DEADLINE_EXCEEDED, "TIMEOUT",
					 "timed out waiting for synthd");
		set_err(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__UNAVAILABLE, "IO_ERROR",
			"reading from synthd failed: %s", strerror(errno));
		drop_connection(c);
		return -1;
	}
	return 0;
}

/* Reads the next frame. The view stays valid until the next read_frame. 0, or -1. */
static int read_frame(struct impl *c, struct frame *f)
{
	if (c->fd < 0) {
		set_err(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__UNAVAILABLE, "CONNECTION_CLOSED",
			"not connected to synthd");
		return -1;
	}
	c->rpos += c->consumed;
	c->consumed = 0;
	if (c->rpos == c->rlen) {
		c->rpos = c->rlen = 0;
		/* Give back what one huge frame needed, once it is gone (record batches of up to a few
		 * MiB keep their buffer: giving it back each time would cost a realloc per batch). */
		if (c->rcap > RBUF_KEEP) {
			uint8_t *b = realloc(c->rbuf, RBUF_INITIAL);
			if (b) {
				c->rbuf = b;
				c->rcap = RBUF_INITIAL;
			}
		}
	}
	if (fill(c, 4) != 0)
		return -1;
	const uint8_t *h = c->rbuf + c->rpos;
	uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
	if (n == 0)
		PROTO_FAIL(c, "EMPTY_FRAME", "synthd sent a frame of length 0");
	if (n > c->max_frame)
		PROTO_FAIL(c, "FRAME_TOO_LARGE", "synthd sent a frame of %u bytes; the limit is %u", n, c->max_frame);
	if (fill(c, (size_t)n + 4) != 0)
		return -1;
	if (decode_frame(c->rbuf + c->rpos + 4, n, f) != 0)
		PROTO_FAIL(c, "MALFORMED_FRAME", "synthd sent a frame that is not a valid Frame message");
	c->consumed = (size_t)n + 4;
	return 0;
}

/* ---- Writing frames ----------------------------------------------------------------------------- */

static size_t varint_size(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static uint8_t *put_bytes(uint8_t *p, uint8_t tag, const void *data, size_t n)
{
	*p++ = tag;
	p = put_varint(p, n);
	memcpy(p, data, n);
	return p + n;
}

static size_t bytes_field_size(size_t n)
{
	return 1 + varint_size(n) + n;
}

size_t synthc_encode_open(uint8_t *out, uint64_t call_id, const char *method, const char *api_key,
			  uint64_t timeout_ms, const ProtobufCMessage *request)
{
	size_t mlen = strlen(method), klen = api_key ? strlen(api_key) : 0;
	size_t rlen = request ? protobuf_c_message_get_packed_size(request) : 0;
	size_t open = bytes_field_size(mlen) + (klen ? bytes_field_size(klen) : 0) +
		      (timeout_ms ? 1 + varint_size(timeout_ms) : 0) + (rlen ? bytes_field_size(rlen) : 0);
	size_t frame = (call_id ? 1 + varint_size(call_id) : 0) + bytes_field_size(open);
	if (out == NULL)
		return 4 + frame;
	if (frame > UINT32_MAX)
		return 0;
	uint8_t *p = out;
	*p++ = (uint8_t)(frame >> 24);
	*p++ = (uint8_t)(frame >> 16);
	*p++ = (uint8_t)(frame >> 8);
	*p++ = (uint8_t)frame;
	if (call_id) {
		*p++ = 0x08;
		p = put_varint(p, call_id);
	}
	*p++ = 0x12;
	p = put_varint(p, open);
	p = put_bytes(p, 0x0a, method, mlen);
	if (klen)
		p = put_bytes(p, 0x12, api_key, klen);
	if (timeout_ms) {
		*p++ = 0x18;
		p = put_varint(p, timeout_ms);
	}
	if (rlen) {
		*p++ = 0x22;
		p = put_varint(p, rlen);
		if (protobuf_c_message_pack(request, p) != rlen)
			return 0;
		p += rlen;
	}
	return (size_t)(p - out);
}

static int send_all(struct impl *c, const uint8_t *p, size_t n)
{
	while (n > 0) {
		if (c->ssl) {
			errno = 0;
			int w = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
			if (w > 0) {
				p += w;
				n -= (size_t)w;
				continue;
			}
			int e = SSL_get_error(c->ssl, w);
			if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && errno == EINTR)
				continue;
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return fail_conn(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__DEADLINE_EXCEEDED, "TIMEOUT",
						 "timed out writing to synthd");
			char why[256];
			set_err(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__UNAVAILABLE, "IO_ERROR", "writing to synthd failed: TLS: %s",
				tls_reason(why, sizeof why));
			drop_connection(c);
			return -1;
		}
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return fail_conn(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__DEADLINE_EXCEEDED, "TIMEOUT",
					 "timed out writing to synthd");
		set_err(c, SYNTHC_ERR_IO, SYNTHD__V1__STATUS_CODE__UNAVAILABLE, "IO_ERROR", "writing to synthd failed: %s",
			w < 0 ? strerror(errno) : "no progress");
		drop_connection(c);
		return -1;
	}
	return 0;
}

/* Checks that a call can start now: connected, no stream open. Clears the last error. */
static int ready(struct impl *c)
{
	clear_err(c);
	if (c->stream && c->stream->state == ST_OPEN) {
		set_err(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__FAILED_PRECONDITION, "BUSY",
			"a stream is open on this client: read it to its end or free it first");
		return -1;
	}
	if (c->fd < 0) {
		set_err(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__FAILED_PRECONDITION, "NOT_CONNECTED",
			"not connected to synthd (synthc_reconnect opens a new connection)");
		return -1;
	}
	return 0;
}

/* Sends the open frame of a new call. Returns its id, or 0 with the error set. */
static uint64_t open_call(struct impl *c, const char *method, const ProtobufCMessage *request, uint64_t timeout_ms)
{
	uint64_t id = c->next_id + 1;
	/* Skip ids still in use by abandoned calls (only possible after 2^64 calls, but cheap). */
	for (size_t i = 0; i < c->nstale; i++)
		if (c->stale[i] == id) {
			id++;
			i = (size_t)-1;
		}
	if (id == 0)
		id = 1;
	size_t total = synthc_encode_open(NULL, id, method, c->api_key, timeout_ms, request);
	if (total - 4 > c->max_frame) {
		set_err(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "REQUEST_TOO_LARGE",
			"the %s request is %zu bytes framed; the limit is %u", method, total - 4, c->max_frame);
		return 0;
	}
	if (total > c->wcap) {
		uint8_t *b = realloc(c->wbuf, total);
		if (b == NULL) {
			oom(c);
			return 0;
		}
		c->wbuf = b;
		c->wcap = total;
	}
	if (synthc_encode_open(c->wbuf, id, method, c->api_key, timeout_ms, request) != total) {
		set_err(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "BAD_ARGUMENT",
			"cannot encode the %s request", method);
		return 0;
	}
	if (send_all(c, c->wbuf, total) != 0)
		return 0;
	c->next_id = id;
	return id;
}

static int send_cancel(struct impl *c, uint64_t id)
{
	uint8_t b[16], *p = b + 4;
	*p++ = 0x08;
	p = put_varint(p, id);
	*p++ = 0x2a;
	*p++ = 0x00;
	size_t n = (size_t)(p - b) - 4;
	b[0] = 0;
	b[1] = 0;
	b[2] = 0;
	b[3] = (uint8_t)n;
	return send_all(c, b, n + 4);
}

static int is_stale(struct impl *c, uint64_t id, int remove)
{
	for (size_t i = 0; i < c->nstale; i++)
		if (c->stale[i] == id) {
			if (remove)
				c->stale[i] = c->stale[--c->nstale];
			return 1;
		}
	return 0;
}

static int add_stale(struct impl *c, uint64_t id)
{
	if (c->nstale == c->capstale) {
		size_t cap = c->capstale ? c->capstale * 2 : 8;
		uint64_t *s = realloc(c->stale, cap * sizeof *s);
		if (s == NULL)
			return -1;
		c->stale = s;
		c->capstale = cap;
	}
	c->stale[c->nstale++] = id;
	return 0;
}

static const char *kind_name(int kind)
{
	switch (kind) {
	case F_OPEN: return "an open";
	case F_MESSAGE: return "a message";
	case F_STATUS: return "a status";
	case F_CANCEL: return "a cancel";
	}
	return "a kindless";
}

/*
 * Reads frames until the next one of call `id`. Frames of abandoned calls are skipped. Returns 1 for
 * a message (its bytes in *body and *len, valid until the next read), 0 for the call's status (in
 * *status, to be freed by the caller), or -1 with the error set: a protocol error, an I/O error, or a
 * status on call 0 (which ends the connection).
 */
static int next_for_call(struct impl *c, uint64_t id, const char *method, const uint8_t **body, size_t *len,
			 Synthd__V1__Status **status)
{
	struct frame f;
	for (;;) {
		if (read_frame(c, &f) != 0)
			return -1;
		if (f.kind == F_OPEN || f.kind == F_CANCEL || f.kind == 0)
			PROTO_FAIL(c, f.kind ? "UNEXPECTED_FRAME" : "MALFORMED_FRAME",
				   "synthd sent %s frame on call %llu", kind_name(f.kind), (unsigned long long)f.call_id);
		Synthd__V1__Status *st = NULL;
		if (f.kind == F_STATUS) {
			st = synthd__v1__status__unpack(NULL, f.len, f.body);
			if (st == NULL)
				PROTO_FAIL(c, "MALFORMED_FRAME", "synthd sent a status on call %llu that does not decode",
					   (unsigned long long)f.call_id);
		}
		if (f.call_id == 0) {
			if (st == NULL)
				PROTO_FAIL(c, "UNEXPECTED_FRAME", "synthd sent a message on call 0");
			if (st->code == SYNTHD__V1__STATUS_CODE__OK) {
				synthd__v1__status__free_unpacked(st, NULL);
				PROTO_FAIL(c, "UNEXPECTED_FRAME", "synthd sent an OK status on call 0");
			}
			/* A connection-level status: synthd closes the connection after it. */
			drop_connection(c);
			status_err(c, st, method);
			return -1;
		}
		if (f.call_id == id) {
			if (st) {
				*status = st;
				return 0;
			}
			*body = f.body;
			*len = f.len;
			return 1;
		}
		if (is_stale(c, f.call_id, st != NULL)) {
			if (st)
				synthd__v1__status__free_unpacked(st, NULL);
			continue;
		}
		if (st)
			synthd__v1__status__free_unpacked(st, NULL);
		PROTO_FAIL(c, "UNEXPECTED_FRAME", "synthd sent %s frame for call %llu, which is not open",
			   kind_name(f.kind), (unsigned long long)f.call_id);
	}
}

/* ---- Methods ------------------------------------------------------------------------------------ */

/* The protocol's methods are the generated descriptor of service.proto's `service Synthd`: the one
 * table of their names on the wire and their request and response types. A call finds its method
 * there by the type of its request (each method has a request type of its own; tests/offline.c checks
 * that), so this file spells out no method's name. NULL for a message that is no method's request. */
static const ProtobufCMethodDescriptor *method_for(const ProtobufCMessageDescriptor *request)
{
	const ProtobufCServiceDescriptor *sd = &synthd__v1__synthd__descriptor;
	for (unsigned i = 0; i < sd->n_methods; i++)
		if (sd->methods[i].input == request)
			return &sd->methods[i];
	return NULL;
}

static int no_method(struct impl *c, const ProtobufCMessage *request)
{
	clear_err(c);
	set_err(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "BAD_ARGUMENT",
		"service %s has no method taking a %s", synthd__v1__synthd__descriptor.name, request->descriptor->name);
	return -1;
}

/* ---- Unary calls -------------------------------------------------------------------------------- */

ProtobufCMessage *synthc_call(synthc_client *pub, const char *method, const ProtobufCMessage *request,
			      const ProtobufCMessageDescriptor *response)
{
	struct impl *c = IMPL(pub);
	if (c == NULL)
		return NULL;
	if (method == NULL || method[0] == '\0' || response == NULL) {
		clear_err(c);
		set_err(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "BAD_ARGUMENT",
			"synthc_call needs a method name and a response descriptor");
		return NULL;
	}
	if (ready(c) != 0)
		return NULL;
	uint64_t id = open_call(c, method, request, c->timeout_ms);
	if (id == 0)
		return NULL;
	ProtobufCMessage *resp = NULL;
	for (;;) {
		const uint8_t *body;
		size_t len;
		Synthd__V1__Status *st;
		int r = next_for_call(c, id, method, &body, &len, &st);
		if (r < 0)
			break;
		if (r == 1) {
			if (resp) {
				set_err(c, SYNTHC_ERR_PROTOCOL, SYNTHD__V1__STATUS_CODE__INTERNAL, "UNEXPECTED_FRAME",
					"synthd sent more than one response to the unary call %s", method);
				drop_connection(c);
				break;
			}
			resp = protobuf_c_message_unpack(response, NULL, len, body);
			if (resp == NULL) {
				set_err(c, SYNTHC_ERR_PROTOCOL, SYNTHD__V1__STATUS_CODE__INTERNAL, "MALFORMED_MESSAGE",
					"the response to %s does not decode as %s", method, response->name);
				drop_connection(c);
				break;
			}
			continue;
		}
		if (st->code != SYNTHD__V1__STATUS_CODE__OK) {
			status_err(c, st, method);
			break;
		}
		synthd__v1__status__free_unpacked(st, NULL);
		if (resp == NULL) {
			set_err(c, SYNTHC_ERR_PROTOCOL, SYNTHD__V1__STATUS_CODE__INTERNAL, "UNEXPECTED_FRAME",
				"synthd ended the unary call %s without a response", method);
			drop_connection(c);
			break;
		}
		return resp;
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return NULL;
}

/* The unary call of the method whose request `request` is; the method gives the response type. */
static ProtobufCMessage *call_method(synthc_client *pub, const ProtobufCMessage *request)
{
	const ProtobufCMethodDescriptor *m = method_for(request->descriptor);
	if (m == NULL) {
		if (pub)
			no_method(IMPL(pub), request);
		return NULL;
	}
	return synthc_call(pub, m->name, request, m->output);
}

static int require(struct impl *c, const void *arg, const char *what)
{
	if (arg || c == NULL)
		return c == NULL ? -1 : 0;
	clear_err(c);
	set_err(c, SYNTHC_ERR_ARG, SYNTHD__V1__STATUS_CODE__INVALID_ARGUMENT, "BAD_ARGUMENT", "%s must not be NULL", what);
	return -1;
}

Synthd__V1__GenerateResponse *synthc_generate(synthc_client *c, const Synthd__V1__GenerateRequest *req)
{
	if (require(IMPL(c), req, "the GenerateRequest"))
		return NULL;
	return (Synthd__V1__GenerateResponse *)call_method(c, &req->base);
}

Synthd__V1__PlanResponse *synthc_plan(synthc_client *c, const Synthd__V1__PlanRequest *req)
{
	if (require(IMPL(c), req, "the PlanRequest"))
		return NULL;
	return (Synthd__V1__PlanResponse *)call_method(c, &req->base);
}

/* The API's NULL strings are proto3's empty ones. */
static char *str(const char *s)
{
	return (char *)(s ? s : "");
}

Synthd__V1__GetJobResponse *synthc_get_job(synthc_client *c, const char *job_id)
{
	Synthd__V1__GetJobRequest req = SYNTHD__V1__GET_JOB_REQUEST__INIT;
	req.job_id = str(job_id);
	return (Synthd__V1__GetJobResponse *)call_method(c, &req.base);
}

Synthd__V1__ListJobsResponse *synthc_list_jobs(synthc_client *c, const char *status, int32_t limit, const char *page_token)
{
	Synthd__V1__ListJobsRequest req = SYNTHD__V1__LIST_JOBS_REQUEST__INIT;
	req.status = str(status);
	req.limit = limit;
	req.page_token = str(page_token);
	return (Synthd__V1__ListJobsResponse *)call_method(c, &req.base);
}

Synthd__V1__CancelJobResponse *synthc_cancel_job(synthc_client *c, const char *job_id)
{
	Synthd__V1__CancelJobRequest req = SYNTHD__V1__CANCEL_JOB_REQUEST__INIT;
	req.job_id = str(job_id);
	return (Synthd__V1__CancelJobResponse *)call_method(c, &req.base);
}

Synthd__V1__DeleteJobResponse *synthc_delete_job(synthc_client *c, const char *job_id)
{
	Synthd__V1__DeleteJobRequest req = SYNTHD__V1__DELETE_JOB_REQUEST__INIT;
	req.job_id = str(job_id);
	return (Synthd__V1__DeleteJobResponse *)call_method(c, &req.base);
}

Synthd__V1__GetUsageResponse *synthc_get_usage(synthc_client *c)
{
	Synthd__V1__GetUsageRequest req = SYNTHD__V1__GET_USAGE_REQUEST__INIT;
	return (Synthd__V1__GetUsageResponse *)call_method(c, &req.base);
}

Synthd__V1__GetQualityReportResponse *synthc_get_quality_report(synthc_client *c, const char *job_id)
{
	Synthd__V1__GetQualityReportRequest req = SYNTHD__V1__GET_QUALITY_REPORT_REQUEST__INIT;
	req.job_id = str(job_id);
	return (Synthd__V1__GetQualityReportResponse *)call_method(c, &req.base);
}

Synthd__V1__GetManifestResponse *synthc_get_manifest(synthc_client *c, const char *job_id)
{
	Synthd__V1__GetManifestRequest req = SYNTHD__V1__GET_MANIFEST_REQUEST__INIT;
	req.job_id = str(job_id);
	return (Synthd__V1__GetManifestResponse *)call_method(c, &req.base);
}

Synthd__V1__GetPricingResponse *synthc_get_pricing(synthc_client *c)
{
	Synthd__V1__GetPricingRequest req = SYNTHD__V1__GET_PRICING_REQUEST__INIT;
	return (Synthd__V1__GetPricingResponse *)call_method(c, &req.base);
}

Synthd__V1__HealthResponse *synthc_health(synthc_client *c)
{
	Synthd__V1__HealthRequest req = SYNTHD__V1__HEALTH_REQUEST__INIT;
	return (Synthd__V1__HealthResponse *)call_method(c, &req.base);
}

Synthd__V1__CreateApiKeyResponse *synthc_create_api_key(synthc_client *c, const char *name)
{
	Synthd__V1__CreateApiKeyRequest req = SYNTHD__V1__CREATE_API_KEY_REQUEST__INIT;
	req.name = str(name);
	return (Synthd__V1__CreateApiKeyResponse *)call_method(c, &req.base);
}

Synthd__V1__ListApiKeysResponse *synthc_list_api_keys(synthc_client *c)
{
	Synthd__V1__ListApiKeysRequest req = SYNTHD__V1__LIST_API_KEYS_REQUEST__INIT;
	return (Synthd__V1__ListApiKeysResponse *)call_method(c, &req.base);
}

Synthd__V1__RevokeApiKeyResponse *synthc_revoke_api_key(synthc_client *c, const char *key_id)
{
	Synthd__V1__RevokeApiKeyRequest req = SYNTHD__V1__REVOKE_API_KEY_REQUEST__INIT;
	req.key_id = str(key_id);
	return (Synthd__V1__RevokeApiKeyResponse *)call_method(c, &req.base);
}

/* ---- Streams ------------------------------------------------------------------------------------ */

static int stream_fail(struct synthc_stream *s)
{
	end_stream(s, ST_FAILED);
	return -1;
}

#define STREAM_PROTO_FAIL(s, ec, ...)                                                               \
	do {                                                                                        \
		set_err((s)->c, SYNTHC_ERR_PROTOCOL, SYNTHD__V1__STATUS_CODE__INTERNAL, (ec), __VA_ARGS__); \
		drop_connection((s)->c);                                                            \
		return stream_fail(s);                                                              \
	} while (0)

static const char *stream_method(const struct synthc_stream *s)
{
	return s->method->name;
}

/* Reads the next frame of the stream's call into *body and *len: 1 for a message, 0 when the stream has
 * ended with OK, -1 on error. */
static int stream_frame(struct synthc_stream *s, const uint8_t **body, size_t *len)
{
	struct impl *c = s->c;
	Synthd__V1__Status *st;
	if (s->has_pending) {
		s->has_pending = 0;
		*body = s->pending;
		*len = s->pending_len;
		return 1;
	}
	int r = next_for_call(c, s->id, stream_method(s), body, len, &st);
	if (r < 0)
		return stream_fail(s);
	if (r == 1)
		return 1;
	if (st->code != SYNTHD__V1__STATUS_CODE__OK) {
		status_err(c, st, stream_method(s));
		return stream_fail(s);
	}
	synthd__v1__status__free_unpacked(st, NULL);
	if (s->kind == S_WATCH && !s->saw_progress)
		STREAM_PROTO_FAIL(s, "BAD_SEQUENCE", "the %s stream ended without a progress snapshot", stream_method(s));
	if (s->kind == S_SPLITS && s->split_left > 0)
		STREAM_PROTO_FAIL(s, "BAD_SEQUENCE", "the %s stream ended %lld records short of split %s",
				  stream_method(s), (long long)s->split_left, s->split_name);
	end_stream(s, ST_DONE);
	return 0;
}

int synthc_stream_next(synthc_stream *s, synthc_item *item)
{
	if (s == NULL || item == NULL)
		return -1;
	if (s->state != ST_OPEN || s->c == NULL)
		return s->state == ST_DONE ? 0 : -1;
	struct impl *c = s->c;
	if (s->job) {
		synthd__v1__job__free_unpacked(s->job, NULL);
		s->job = NULL;
	}
	if (s->split) {
		synthd__v1__split_info__free_unpacked(s->split, NULL);
		s->split = NULL;
	}
	clear_err(c);
	memset(item, 0, sizeof *item);
	for (;;) {
		const uint8_t *body, *ev = NULL;
		size_t len, evlen = 0;
		int which;
		int r = stream_frame(s, &body, &len);
		if (r <= 0)
			return r;
		if (decode_event(body, len, &which, &ev, &evlen) != 0)
			STREAM_PROTO_FAIL(s, "MALFORMED_MESSAGE", "a %s message does not decode", stream_method(s));
		if (which == 2) {
			uint64_t seq;
			const uint8_t *json;
			size_t jl;
			if (decode_flat(ev, evlen, &seq, 1, &json, &jl) != 0)
				STREAM_PROTO_FAIL(s, "MALFORMED_MESSAGE", "a record in the %s stream does not decode",
						  stream_method(s));
			if (s->kind == S_WATCH) {
				if (s->progress_only)
					STREAM_PROTO_FAIL(s, "UNEXPECTED_FRAME",
							  "synthd sent a record on a progress-only %s stream", stream_method(s));
				if (seq <= s->last_seq)
					STREAM_PROTO_FAIL(s, "BAD_SEQUENCE", "records out of order: %llu after %llu",
							  (unsigned long long)seq, (unsigned long long)s->last_seq);
				s->last_seq = seq;
			} else {
				if (s->split_left <= 0)
					STREAM_PROTO_FAIL(s, "BAD_SEQUENCE", "record %llu is not part of an announced split",
							  (unsigned long long)seq);
				s->split_left--;
			}
			item->kind = SYNTHC_ITEM_RECORD;
			item->seq = seq;
			item->json = (const char *)json;
			item->json_len = jl;
			return 1;
		}
		if (which == 3) {
			uint64_t b[3];
			const uint8_t *jsonl;
			size_t jl;
			if (decode_flat(ev, evlen, b, 3, &jsonl, &jl) != 0)
				STREAM_PROTO_FAIL(s, "MALFORMED_MESSAGE", "a record batch in the %s stream does not decode",
						  stream_method(s));
			uint64_t first = b[0], last = b[1], count = b[2];
			if (!s->batches)
				STREAM_PROTO_FAIL(s, "UNEXPECTED_FRAME", "synthd sent a record batch on a %s stream that asked for records",
						  stream_method(s));
			/* At least one record, and the lines whole: what a reader writes out must be JSONL. */
			if (count == 0 || count > UINT32_MAX || jl < 2 * count || jsonl[jl - 1] != '\n')
				STREAM_PROTO_FAIL(s, "MALFORMED_MESSAGE", "a record batch in the %s stream claims %llu records in %zu bytes",
						  stream_method(s), (unsigned long long)count, jl);
			if (s->kind == S_WATCH) {
				if (s->progress_only)
					STREAM_PROTO_FAIL(s, "UNEXPECTED_FRAME",
							  "synthd sent records on a progress-only %s stream", stream_method(s));
				if (first <= s->last_seq || last < first || last - first + 1 < count)
					STREAM_PROTO_FAIL(s, "BAD_SEQUENCE", "batch of records %llu..%llu (%llu) after record %llu",
							  (unsigned long long)first, (unsigned long long)last,
							  (unsigned long long)count, (unsigned long long)s->last_seq);
				s->last_seq = last;
			} else {
				if (s->split_left < (int64_t)count)
					STREAM_PROTO_FAIL(s, "BAD_SEQUENCE", "a batch of %llu records is not part of an announced split",
							  (unsigned long long)count);
				s->split_left -= (int64_t)count;
			}
			item->kind = SYNTHC_ITEM_BATCH;
			item->seq = first;
			item->last_seq = last;
			item->count = (uint32_t)count;
			item->json = (const char *)jsonl;
			item->json_len = jl;
			return 1;
		}
		if (which == 1 && s->kind == S_WATCH) {
			s->job = synthd__v1__job__unpack(NULL, evlen, ev);
			if (s->job == NULL)
				STREAM_PROTO_FAIL(s, "MALFORMED_MESSAGE", "a progress snapshot does not decode as a Job");
			s->saw_progress = 1;
			item->kind = SYNTHC_ITEM_PROGRESS;
			item->job = s->job;
			return 1;
		}
		if (which == 1) {
			s->split = synthd__v1__split_info__unpack(NULL, evlen, ev);
			if (s->split == NULL)
				STREAM_PROTO_FAIL(s, "MALFORMED_MESSAGE", "a split announcement does not decode as a SplitInfo");
			if (s->split_left > 0)
				STREAM_PROTO_FAIL(s, "BAD_SEQUENCE", "split %.100s was announced %lld records before split %s ended",
						  s->split->name, (long long)s->split_left, s->split_name);
			if (s->split->count < 0)
				STREAM_PROTO_FAIL(s, "BAD_SEQUENCE", "split %.100s announces %lld records",
						  s->split->name, (long long)s->split->count);
			s->split_left = s->split->count;
			snprintf(s->split_name, sizeof s->split_name, "%s", s->split->name);
			item->kind = SYNTHC_ITEM_SPLIT;
			item->split = s->split;
			return 1;
		}
		/* A message with no event this client knows: a newer server's addition. Skip it. */
	}
}

/* Opens the stream of the method that `req` is the request of. */
static synthc_stream *open_stream(struct impl *c, int kind, const ProtobufCMessage *req, uint64_t after_seq,
				  int progress_only, int batches)
{
	if (c == NULL)
		return NULL;
	const ProtobufCMethodDescriptor *m = method_for(req->descriptor);
	if (m == NULL) {
		no_method(c, req);
		return NULL;
	}
	if (ready(c) != 0)
		return NULL;
	synthc_stream *s = calloc(1, sizeof *s);
	if (s == NULL) {
		oom(c);
		return NULL;
	}
	s->c = c;
	s->kind = kind;
	s->method = m;
	s->last_seq = after_seq;
	s->progress_only = progress_only;
	s->batches = batches;
	s->split_left = -1;
	s->id = open_call(c, m->name, req, c->stream_timeout_ms);
	if (s->id == 0) {
		free(s);
		return NULL;
	}
	c->stream = s;
	/* Wait for the first frame so that a call refused at once (unknown job, bad key) fails here. */
	Synthd__V1__Status *st;
	int r = next_for_call(c, s->id, m->name, &s->pending, &s->pending_len, &st);
	if (r == 1) {
		s->has_pending = 1;
		return s;
	}
	if (r == 0) {
		if (st->code == SYNTHD__V1__STATUS_CODE__OK) {
			/* An empty stream: let synthc_stream_next apply the end-of-stream checks. */
			synthd__v1__status__free_unpacked(st, NULL);
			if (kind == S_WATCH) {
				set_err(c, SYNTHC_ERR_PROTOCOL, SYNTHD__V1__STATUS_CODE__INTERNAL, "BAD_SEQUENCE",
					"the %s stream ended without a progress snapshot", m->name);
				drop_connection(c);
				goto fail;
			}
			end_stream(s, ST_DONE);
			return s;
		}
		status_err(c, st, m->name);
	}
fail:
	end_stream(s, ST_FAILED);
	free(s);
	return NULL;
}

synthc_stream *synthc_watch_job(synthc_client *pub, const char *job_id, uint64_t after_seq, int progress_only)
{
	Synthd__V1__WatchJobRequest req = SYNTHD__V1__WATCH_JOB_REQUEST__INIT;
	req.job_id = str(job_id);
	req.after_seq = after_seq;
	req.progress_only = progress_only ? 1 : 0;
	return open_stream(IMPL(pub), S_WATCH, &req.base, after_seq, progress_only, 0);
}

synthc_stream *synthc_watch_job_batches(synthc_client *pub, const char *job_id, uint64_t after_seq, uint32_t batch_bytes)
{
	Synthd__V1__WatchJobRequest req = SYNTHD__V1__WATCH_JOB_REQUEST__INIT;
	req.job_id = str(job_id);
	req.after_seq = after_seq;
	req.batch_bytes = batch_bytes ? batch_bytes : 1;
	return open_stream(IMPL(pub), S_WATCH, &req.base, after_seq, 0, 1);
}

synthc_stream *synthc_fetch_splits(synthc_client *pub, const char *job_id, const char *split)
{
	Synthd__V1__FetchSplitsRequest req = SYNTHD__V1__FETCH_SPLITS_REQUEST__INIT;
	req.job_id = str(job_id);
	req.split = str(split);
	return open_stream(IMPL(pub), S_SPLITS, &req.base, 0, 0, 0);
}

synthc_stream *synthc_fetch_splits_batches(synthc_client *pub, const char *job_id, const char *split, uint32_t batch_bytes)
{
	Synthd__V1__FetchSplitsRequest req = SYNTHD__V1__FETCH_SPLITS_REQUEST__INIT;
	req.job_id = str(job_id);
	req.split = str(split);
	req.batch_bytes = batch_bytes ? batch_bytes : 1;
	return open_stream(IMPL(pub), S_SPLITS, &req.base, 0, 0, 1);
}

int synthc_stream_cancel(synthc_stream *s)
{
	if (s == NULL || s->c == NULL || s->state != ST_OPEN)
		return s && s->state == ST_DONE ? 0 : -1;
	if (s->cancelled)
		return 0;
	clear_err(s->c);
	if (send_cancel(s->c, s->id) != 0)
		return stream_fail(s);
	s->cancelled = 1;
	return 0;
}

void synthc_stream_free(synthc_stream *s)
{
	if (s == NULL)
		return;
	struct impl *c = s->c;
	if (c) {
		/* Still open, so still attached to a connected client. */
		if (c->fd >= 0) {
			/* Keep the error the caller may still be looking at. */
			synthc_client saved = c->pub;
			Synthd__V1__Status *st = c->status;
			c->status = NULL;
			if ((s->cancelled || send_cancel(c, s->id) == 0) && add_stale(c, s->id) != 0)
				drop_connection(c); /* out of memory: cannot track the call, so drop it */
			clear_err(c);
			c->pub = saved;
			c->status = st;
		}
		end_stream(s, ST_FAILED);
	}
	if (s->job)
		synthd__v1__job__free_unpacked(s->job, NULL);
	if (s->split)
		synthd__v1__split_info__free_unpacked(s->split, NULL);
	free(s);
}
