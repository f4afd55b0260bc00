/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "api/server.h"
#include "os/log.h"

/* Limits on what a client can make the process hold. */
#define API_CONNECTION_LIMIT 128U
#define API_PER_IP_CONNECTION_LIMIT 32U
#define API_CONNECTION_TIMEOUT_S 10U
#define API_CONNECTION_MEMORY_LIMIT (32U * 1024U)
/* Descriptors kept out of the HTTP server's reach, for the broker, the database, the destination
 * and the journal: MHD stops accepting at its connection limit, but an accept() that fails with
 * EMFILE would starve those first. */
#define API_FD_RESERVE 64U

/* 413 got this name in 0.9.74; meson accepts 0.9.71. */
#ifndef MHD_HTTP_CONTENT_TOO_LARGE
#define MHD_HTTP_CONTENT_TOO_LARGE 413
#endif

struct Api {
        sd_event *event;
        struct MHD_Daemon *daemon;
        sd_event_source *io;
        sd_event_source *timer;
        const ApiRoute *routes;
        void *userdata;
        unsigned connections; /* after the last MHD_run() */
};

static const char json_type[] = "application/json";

static void arm_timer(Api *a, bool now) {
        MHD_UNSIGNED_LONG_LONG ms = 0;
        usec_t usec;

        if (!now && MHD_get_timeout(a->daemon, &ms) != MHD_YES) {
                (void) sd_event_source_set_enabled(a->timer, SD_EVENT_OFF);
                return;
        }
        /* Relative milliseconds. 0 means MHD holds work it has not done yet (data read but not
         * processed, a connection it wants to look at again): run it again on the next iteration,
         * as the epoll fd may not become readable for it. Anything else is the nearest connection
         * timeout, rounded up so that the timer does not fire just before it. The cap only keeps
         * the multiplication from overflowing. */
        ms = MIN(ms, (MHD_UNSIGNED_LONG_LONG) 3600 * 1000);
        usec = (usec_t) ms * USEC_PER_MSEC;
        if (usec > 0)
                usec += USEC_PER_MSEC - 1;
        (void) sd_event_source_set_time_relative(a->timer, usec);
        (void) sd_event_source_set_enabled(a->timer, SD_EVENT_ONESHOT);
}

static unsigned current_connections(Api *a) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

        return info ? info->num_connections : 0;
}

/* MHD_run() never blocks: it is MHD_run_wait(d, 0), an epoll_wait() with timeout 0 on MHD's own
 * set, and every socket is non-blocking. Whatever it did, the next deadline may have moved.
 *
 * At its connection limit (or after an accept() failed with EMFILE) MHD takes the listen socket
 * out of its epoll set, and puts it back only at the start of a later run, once connections have
 * closed. Nothing would make its epoll fd readable for that, so the clients waiting in the
 * backlog would wait for the next connection timeout: when connections went away, run again at
 * once. */
static void run(Api *a) {
        unsigned before = a->connections;

        (void) MHD_run(a->daemon);
        a->connections = current_connections(a);
        arm_timer(a, a->connections < before);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        run(userdata);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        run(userdata);
        return 0;
}

/* Hands body over to MHD (freed with free() when the response is destroyed), or copies it when
 * take is false. */
static enum MHD_Result respond(struct MHD_Connection *connection, unsigned status, const char *content_type,
                               void *body, size_t size, bool take, const char *allow) {
        struct MHD_Response *response;
        enum MHD_Result r;

        if (take)
                response = MHD_create_response_from_buffer_with_free_callback(size, body, free);
        else
                response = MHD_create_response_from_buffer(size, body, MHD_RESPMEM_MUST_COPY);
        if (!response) {
                if (take)
                        free(body);
                return MHD_NO;
        }
        if (MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES ||
            MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
            (allow && MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)) {
                MHD_destroy_response(response);
                return MHD_NO;
        }
        r = MHD_queue_response(connection, status, response);
        MHD_destroy_response(response);
        return r;
}

static enum MHD_Result respond_error(struct MHD_Connection *connection, unsigned status, const char *error,
                                     const char *allow) {
        char body[128];
        int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"status\":%u}", error, status);

        return respond(connection, status, json_type, body, (size_t) n, false, allow);
}

/* What the headers announce; MHD has already refused a malformed or oversized Content-Length
 * with a 400 or 413 of its own. Transfer-Encoding of any kind means a body of unknown length;
 * "Expect: 100-continue" asks whether one may follow (RFC 9110 §10.1.1), even without a length:
 * left to MHD, such a request got its "100 Continue", and its answer was lost when more bytes
 * followed (found by fuzz-api). */
static bool request_announces_body(struct MHD_Connection *connection) {
        const char *te = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *expect = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);

        return te || (expect && strcasecmp(expect, "100-continue") == 0) ||
               (length && strtoull(length, NULL, 10) > 0);
}

static bool method_allowed(const char *method) {
        return streq(method, MHD_HTTP_METHOD_GET) || streq(method, MHD_HTTP_METHOD_HEAD);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
        static char headers_seen;
        Api *a = cls;

        if (!*con_cls) {
                /* First call, with the headers only. A request that announces a body is answered
                 * now: MHD then never reads the body, and closes the connection once the answer
                 * is out (it cannot find the next request behind a body it skipped). */
                *con_cls = &headers_seen;
                if (request_announces_body(connection))
                        return method_allowed(method)
                                       ? respond_error(connection, MHD_HTTP_CONTENT_TOO_LARGE,
                                                       "request_body_not_accepted", NULL)
                                       : respond_error(connection, MHD_HTTP_METHOD_NOT_ALLOWED,
                                                       "method_not_allowed", "GET, HEAD");
                /* Everything else is answered at the next call, once MHD has seen the whole
                 * request: a response queued at this point would also cost the connection its
                 * keep-alive, as MHD treats it as "refused before the body". */
                return MHD_YES;
        }

        if (*upload_data_size > 0) {
                /* Cannot happen: a request with a body was answered at the first call. */
                *upload_data_size = 0;
                return MHD_YES;
        }

        if (!method_allowed(method))
                return respond_error(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", "GET, HEAD");

        for (const ApiRoute *r = a->routes; r->path; r++)
                if (streq(url, r->path)) {
                        ApiResponse response = { .status = MHD_HTTP_OK, .content_type = json_type };

                        /* MHD leaves out the body of a HEAD answer but keeps its Content-Length. */
                        r->handler(a->userdata, &response);
                        return respond(connection, response.status, response.content_type,
                                       TAKE_PTR(response.body.data), response.body.size, true, NULL);
                }

        return respond_error(connection, MHD_HTTP_NOT_FOUND, "not_found", NULL);
}

static _printf_(2, 0) void on_mhd_log(void *cls, const char *format, va_list ap) {
        char message[LOG_MESSAGE_MAX];

        /* Everything MHD reports is about one client (a malformed request, a timeout, a limit):
         * debug level, or a client could flood the journal. */
        if (log_get_max_level() < LOG_DEBUG)
                return;
        (void) vsnprintf(message, sizeof message, format, ap);
        log_debug("HTTP server: %s", strstrip(message));
}

static unsigned connection_limit(void) {
        struct rlimit rl;
        rlim_t available;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                return API_CONNECTION_LIMIT;
        available = rl.rlim_cur > 2 * API_FD_RESERVE ? rl.rlim_cur - API_FD_RESERVE : rl.rlim_cur / 2;
        if (available >= API_CONNECTION_LIMIT)
                return API_CONNECTION_LIMIT;
        log_warning("RLIMIT_NOFILE is %" PRIu64 ": the HTTP API takes at most %" PRIu64 " connections instead of %u",
                    (uint64_t) rl.rlim_cur, (uint64_t) MAX(available, 1), API_CONNECTION_LIMIT);
        return (unsigned) MAX(available, 1);
}

int api_new(sd_event *e, int listen_fd, const ApiRoute *routes, void *userdata, Api **ret) {
        _cleanup_(api_freep) Api *a = NULL;
        _cleanup_close_ int fd = listen_fd;
        const union MHD_DaemonInfo *info;
        unsigned limit;
        int mhd_fd, r;

        a = calloc(1, sizeof *a);
        if (!a)
                return -ENOMEM;
        a->event = sd_event_ref(e);
        a->routes = routes;
        a->userdata = userdata;

        /* MHD insists on a non-blocking listen socket with epoll. */
        r = fcntl(fd, F_GETFL);
        if (r < 0 || fcntl(fd, F_SETFL, r | O_NONBLOCK) < 0)
                return negative_errno();

        /* MHD_stop_daemon() closes the listen socket it was given, and MHD_start_daemon() does on
         * some of its failure paths but not on others. A copy of its own makes the ownership
         * unambiguous: ours is closed here in every case, MHD's never by us (a double close
         * could hit a descriptor another thread has just been given). */
        mhd_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (mhd_fd < 0)
                return negative_errno();

        limit = connection_limit();
        a->daemon = MHD_start_daemon(
                MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, a,
                MHD_OPTION_LISTEN_SOCKET, mhd_fd,
                MHD_OPTION_CONNECTION_LIMIT, limit,
                MHD_OPTION_PER_IP_CONNECTION_LIMIT, MIN(API_PER_IP_CONNECTION_LIMIT, limit),
                MHD_OPTION_CONNECTION_TIMEOUT, API_CONNECTION_TIMEOUT_S,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) API_CONNECTION_MEMORY_LIMIT,
                /* Not 1: in 0.9.75 that only adds "reject spaces in the URI" (a 404 here anyway)
                 * and "require Host on HTTP/1.1" (which nothing here uses), and the 400 for a
                 * missing Host goes out garbled, its header twice and its body cut (MHD resumes
                 * the request after parse_connection_headers() has queued the error). At 0 such
                 * requests reach the handler and get a proper JSON answer. */
                MHD_OPTION_STRICT_FOR_CLIENT, 0,
                MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1,
                MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                MHD_OPTION_END);
        if (!a->daemon)
                return -EINVAL;

        info = MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info)
                return -EINVAL;

        /* Level-triggered: MHD takes at most a bounded number of events per run, and the fd stays
         * readable while more are queued. */
        r = sd_event_add_io(e, &a->io, info->epoll_fd, EPOLLIN, on_io, a);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(a->io, "http-server-io");

        /* 1 ms accuracy, not sd-event's default of 250 ms: a timeout of 0 ("run me again") comes
         * after every answer on a connection with more requests behind it, and at 250 ms four
         * pipelined requests took over a second. */
        r = sd_event_add_time(e, &a->timer, CLOCK_MONOTONIC, USEC_INFINITY, USEC_PER_MSEC, on_timer, a);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(a->timer, "http-server-timer");
        arm_timer(a, false);

        *ret = TAKE_PTR(a);
        return 0;
}

Api *api_free(Api *a) {
        if (!a)
                return NULL;
        sd_event_source_disable_unref(a->io);
        sd_event_source_disable_unref(a->timer);
        if (a->daemon)
                MHD_stop_daemon(a->daemon); /* closes the connections, its epoll fd and its listen fd */
        sd_event_unref(a->event);
        return mfree(a);
}

int api_add_connection(Api *a, int fd, const struct sockaddr *addr, socklen_t addrlen) {
        if (MHD_add_connection(a->daemon, fd, addr, addrlen) != MHD_YES)
                return negative_errno();
        run(a);
        return 0;
}

int api_listen(const char *host, uint16_t port, int *ret_fd) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_ADDRCONFIG };
        struct addrinfo *res = NULL;
        char service[8];
        int fd = -EBADF, r;

        snprintf(service, sizeof service, "%u", port);
        r = getaddrinfo(isempty(host) ? NULL : host, service, &hints, &res);
        if (r != 0)
                return r == EAI_SYSTEM ? negative_errno() : -EADDRNOTAVAIL;

        r = -EADDRNOTAVAIL;
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                int one = 1;

                fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
                if (fd < 0) {
                        r = negative_errno();
                        continue;
                }
                (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
                        r = negative_errno();
                        fd = safe_close(fd);
                        continue;
                }
                r = 0;
                break;
        }
        freeaddrinfo(res);
        if (r < 0)
                return r;
        *ret_fd = fd;
        return 0;
}
