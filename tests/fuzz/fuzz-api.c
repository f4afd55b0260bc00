/* SPDX-License-Identifier: MIT */
/* The HTTP API server (api/server.c) with the real libmicrohttpd underneath: each input is the
 * bytes a client sends on one connection (any number of requests, pipelined, then end of input),
 * handed to the server through a socketpair (api_add_connection()), the loop run until the
 * server closes it. The routes are the daemon's paths (daemon/routes.c) with handlers of our own
 * that count their calls; the input's last byte makes them answer 200 or 503. Invariants:
 *   - no crash, leak, undefined behaviour, and no hang: the server closes the connection once the
 *     input has ended, within a bounded number of loop iterations;
 *   - every answer is an HTTP/1.x status line with a status the server can give: ours (200, 503
 *     from the handler; 404, 405, 413) or libmicrohttpd's own for broken requests (see
 *     status_allowed());
 *   - a 405 carries "Allow: GET, HEAD"; our answers are JSON with Cache-Control: no-store;
 *   - the handlers ran once per answer they produced: the count of answers with the handler's
 *     status is the count of handler calls. */
#include <signal.h>
#include <stdio.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "api/server.h"
#include "daemon/routes.h"
#include "fuzz.h"

#define ROUTES_MAX 8
/* Loop iterations before a connection that is not closed counts as a hang; an input takes a few. */
#define ITERATIONS_MAX 20000

static sd_event *event;
static Api *api;
static ApiRoute routes[ROUTES_MAX + 1];
static unsigned handler_calls;
static unsigned handler_status;

static void handle(size_t i, ApiResponse *r) {
        char body[64];
        int n = snprintf(body, sizeof(body), "{\"route\":%zu}", i);

        handler_calls++;
        r->status = handler_status;
        if (buffer_append(&r->body, body, (size_t) n) < 0)
                abort();
}

#define HANDLER(i)                                                       \
        static void handler_##i(void *userdata, ApiResponse *r) {       \
                handle(i, r);                                            \
        }
HANDLER(0)
HANDLER(1)
HANDLER(2)
HANDLER(3)
HANDLER(4)
HANDLER(5)
HANDLER(6)
HANDLER(7)
static const ApiHandler handlers[ROUTES_MAX] = {
        handler_0, handler_1, handler_2, handler_3, handler_4, handler_5, handler_6, handler_7,
};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        size_t n = 0;
        int fd;

        (void) signal(SIGPIPE, SIG_IGN);
        for (const ApiRoute *r = api_routes; r->path; r++) {
                if (n >= ROUTES_MAX)
                        abort();
                routes[n] = (ApiRoute) { .path = r->path, .handler = handlers[n] };
                n++;
        }

        /* The server wants a listening socket; nothing ever connects to this one. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 1) < 0)
                abort();
        if (sd_event_new(&event) < 0 || api_new(event, fd, routes, NULL, &api) < 0)
                abort();
        return 0;
}

/* Statuses libmicrohttpd answers broken requests with by itself: 400 (malformed), 413 (too large
 * for the connection's memory), 414 (URI too long), 431 (header fields too large), 417
 * (an Expect it does not know), 500 (no memory for the answer), 501 (a transfer coding it does
 * not know), 505 (HTTP version), and 100 Continue before a body it was told to expect. */
static bool status_allowed(unsigned s) {
        switch (s) {
        case 200: case 503: /* the handlers */
        case 404: case 405: case 413: /* ours */
        case 100: case 400: case 414: case 417: case 431: case 500: case 501: case 505:
                return true;
        default:
                return false;
        }
}

static void check_answers(const uint8_t *data, size_t size, const char *out, size_t out_size) {
        unsigned from_handler = 0;

        for (const char *p = out, *end = out + out_size; p < end;) {
                const char *h = memmem(p, (size_t) (end - p), "HTTP/1.", 7), *headers_end;
                unsigned status;
                char c;

                if (!h)
                        break;
                FUZZ_CHECK(h == out || h[-1] == '\n' || h[-1] == '}' || h[-1] == '>', data, size,
                           "an answer starts inside another: %.*s", (int) MIN((size_t) 200, (size_t) (end - h)), h);
                FUZZ_CHECK(end - h >= 13 && (h[7] == '0' || h[7] == '1') && h[8] == ' ' &&
                                   sscanf(h + 9, "%3u%c", &status, &c) == 2 && c == ' ',
                           data, size, "not a status line: %.*s", (int) MIN((size_t) 40, (size_t) (end - h)), h);
                FUZZ_CHECK(status_allowed(status), data, size, "status %u", status);
                headers_end = memmem(h, (size_t) (end - h), "\r\n\r\n", 4);
                FUZZ_CHECK(headers_end, data, size, "an answer without the end of its header");
                if (status == 405)
                        FUZZ_CHECK(memmem(h, (size_t) (headers_end - h), "\r\nAllow: GET, HEAD\r\n", 20), data, size,
                                   "405 without Allow: GET, HEAD");
                if (status == 200 || status == 503 || status == 404 || status == 405)
                        FUZZ_CHECK(memmem(h, (size_t) (headers_end - h), "\r\nContent-Type: application/json\r\n",
                                          34) &&
                                           memmem(h, (size_t) (headers_end - h), "\r\nCache-Control: no-store\r\n", 27),
                                   data, size, "answer %u is not JSON with Cache-Control: no-store", status);
                if (status == handler_status)
                        from_handler++;
                p = headers_end + 4;
        }
        FUZZ_CHECK(from_handler == handler_calls, data, size, "%u handler calls, %u answers with status %u",
                   handler_calls, from_handler, handler_status);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct sockaddr_in peer = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                    .sin_port = htons(40000) };
        _cleanup_close_ int client = -EBADF;
        _cleanup_(buffer_done) Buffer out = { 0 };
        size_t written = 0;
        bool closed = false, shut = false;
        int sv[2], r;

        if (size > 64 * 1024)
                return 0;
        handler_calls = 0;
        handler_status = size > 0 && (data[size - 1] & 1) ? 503 : 200;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        client = sv[0];
        r = api_add_connection(api, sv[1], (struct sockaddr *) &peer, sizeof(peer));
        FUZZ_CHECK(r == 0, data, size, "api_add_connection() failed: %s", STRERROR(r));

        for (unsigned i = 0; !closed; i++) {
                ssize_t n;

                FUZZ_CHECK(i < ITERATIONS_MAX, data, size, "the server did not close the connection (%zu of %zu bytes sent)",
                           written, size);
                if (written < size) {
                        n = send(client, data + written, size - written, MSG_NOSIGNAL);
                        if (n > 0)
                                written += (size_t) n;
                        else if (n < 0 && errno != EAGAIN)
                                written = size; /* the server closed already: nothing more to send */
                } else if (!shut) {
                        int queued = 0;

                        /* The end of input once the server has read all the data, as it mostly
                         * comes over TCP: libmicrohttpd 0.9.75 misses an end of input that arrives
                         * together with an incomplete request, and holds the connection until its
                         * idle timeout (10 s; the same over TCP, see README.md). */
                        if (ioctl(client, SIOCOUTQ, &queued) < 0 || queued == 0) {
                                (void) shutdown(client, SHUT_WR);
                                shut = true;
                        }
                }

                r = sd_event_run(event, 0);
                if (r < 0)
                        abort();

                for (;;) {
                        if (buffer_reserve(&out, 16384) < 0)
                                abort();
                        n = recv(client, out.data + out.size, out.allocated - out.size, 0);
                        if (n > 0) {
                                out.size += (size_t) n;
                                continue;
                        }
                        if (n == 0 || (errno != EAGAIN && errno != EINTR))
                                closed = true;
                        break;
                }
        }
        /* FUZZ_API_SHOW=1: what the server answered, to look at an input by hand. */
        if (getenv("FUZZ_API_SHOW"))
                fuzz_print_escaped(stderr, out.data, out.size);
        check_answers(data, size, (const char *) out.data, out.size);
        return 0;
}
