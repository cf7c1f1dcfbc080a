#include <curl/curl.h>

// curl_easy_setopt and friends are variadic macros that Swift cannot call; these typed wrappers can be.
static inline CURLcode synth_curl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode synth_curl_setopt_ptr(CURL *h, CURLoption o, const void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode synth_curl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode synth_curl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode synth_curl_getinfo_ptr(CURL *h, CURLINFO i, void *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLMcode synth_curl_multi_setopt_long(CURLM *m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }

typedef size_t (*synth_curl_data_cb)(char *, size_t, size_t, void *);
static inline CURLcode curl_easy_setopt_writefunction(CURL *h, synth_curl_data_cb f) { return curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, f); }
static inline CURLcode curl_easy_setopt_headerfunction(CURL *h, synth_curl_data_cb f) { return curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, f); }

// The multi handle's socket interface (curl_multi_socket_action), driven by epoll: each wakeup
// costs what its sockets did, not a poll over every connection in flight.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <errno.h>
typedef int (*synth_curl_socket_cb)(CURL *, curl_socket_t, int, void *, void *);
typedef int (*synth_curl_timer_cb)(CURLM *, long, void *);
static inline CURLMcode synth_curl_multi_socketfunction(CURLM *m, synth_curl_socket_cb f) { return curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, f); }
static inline CURLMcode synth_curl_multi_timerfunction(CURLM *m, synth_curl_timer_cb f) { return curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, f); }
static inline CURLMcode synth_curl_multi_setopt_ptr(CURLM *m, CURLMoption o, void *v) { return curl_multi_setopt(m, o, v); }

// epoll without its packed struct in Swift: register `fd` for `events` (added or changed).
static inline int synth_epoll_set(int ep, int fd, unsigned events) {
    struct epoll_event e = { .events = events, .data = { .fd = fd } };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e) == 0) return 0;
    if (errno != ENOENT) return -1;
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
}
static inline int synth_epoll_remove(int ep, int fd) { return epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL); }
// Waits up to `timeout_ms`; fills `fds` and `events` (at most 256); returns how many.
static inline int synth_epoll_wait(int ep, int *fds, unsigned *events, int timeout_ms) {
    struct epoll_event ev[256];
    int n = epoll_wait(ep, ev, 256, timeout_ms);
    for (int i = 0; i < n; i++) { fds[i] = ev[i].data.fd; events[i] = ev[i].events; }
    return n;
}
