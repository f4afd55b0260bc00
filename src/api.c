/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <sys/socket.h>

#include "api.h"
#include "log.h"

/* Limits on what a client can make the process hold. */
#define API_CONNECTION_LIMIT 128
#define API_PER_IP_CONNECTION_LIMIT 32
#define API_CONNECTION_TIMEOUT_S 10
#define API_CONNECTION_MEMORY_LIMIT (32 * 1024)

struct Api {
        sd_event *event;
        struct MHD_Daemon *daemon;
        sd_event_source *io;
        sd_event_source *timer;
        const ApiRoute *routes;
        void *userdata;
        int listen_fd;
};

static const char json_type[] = "application/json";

static void arm_timer(Api *a) {
        MHD_UNSIGNED_LONG_LONG ms;

        if (MHD_get_timeout(a->daemon, &ms) != MHD_YES) {
                (void) sd_event_source_set_enabled(a->timer, SD_EVENT_OFF);
                return;
        }
        /* MHD_get_timeout is relative, in milliseconds. */
        (void) sd_event_source_set_time_relative(a->timer, (usec_t) ms * USEC_PER_MSEC);
        (void) sd_event_source_set_enabled(a->timer, SD_EVENT_ONESHOT);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Api *a = userdata;

        (void) MHD_run(a->daemon);
        arm_timer(a);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Api *a = userdata;

        (void) MHD_run(a->daemon);
        arm_timer(a);
        return 0;
}

static enum MHD_Result respond(struct MHD_Connection *connection, unsigned status, const char *content_type,
                               const void *body, size_t size, const char *allow) {
        struct MHD_Response *response;
        enum MHD_Result r;

        response = MHD_create_response_from_buffer(size, (void *) body, MHD_RESPMEM_MUST_COPY);
        if (!response)
                return MHD_NO;
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
        return respond(connection, status, json_type, body, (size_t) n, allow);
}

static bool request_has_body(struct MHD_Connection *connection) {
        const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *te = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        return te || (length && strcmp(length, "0") != 0);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
        Api *a = cls;
        static int seen;

        /* Answer at the first call, with the headers: a request body is never read. */
        if (!*con_cls)
                *con_cls = &seen;

        if (!streq(method, MHD_HTTP_METHOD_GET) && !streq(method, MHD_HTTP_METHOD_HEAD))
                return respond_error(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", "GET, HEAD");
        if (request_has_body(connection) || *upload_data_size > 0)
                return respond_error(connection, MHD_HTTP_CONTENT_TOO_LARGE, "request_body_not_accepted", NULL);

        for (const ApiRoute *r = a->routes; r->path; r++)
                if (streq(url, r->path)) {
                        ApiResponse response = { .status = MHD_HTTP_OK, .content_type = json_type };
                        enum MHD_Result ret;

                        r->handler(a->userdata, &response);
                        ret = respond(connection, response.status, response.content_type, response.body.data,
                                      response.body.size, NULL);
                        buffer_done(&response.body);
                        return ret;
                }

        return respond_error(connection, MHD_HTTP_NOT_FOUND, "not_found", NULL);
}

static void on_mhd_log(void *cls, const char *format, va_list ap) {
        char message[LOG_MESSAGE_MAX];

        if (log_get_max_level() < LOG_DEBUG)
                return;
        (void) vsnprintf(message, sizeof message, format, ap);
        log_debug("HTTP server: %s", message);
}

int api_new(sd_event *e, int listen_fd, const ApiRoute *routes, void *userdata, Api **ret) {
        _cleanup_(api_freep) Api *a = NULL;
        const union MHD_DaemonInfo *info;
        int r;

        a = calloc(1, sizeof *a);
        if (!a) {
                safe_close(listen_fd);
                return -ENOMEM;
        }
        a->event = sd_event_ref(e);
        a->routes = routes;
        a->userdata = userdata;
        a->listen_fd = listen_fd;

        /* MHD insists on a non-blocking listen socket with epoll. */
        r = fcntl(listen_fd, F_GETFL);
        if (r < 0 || fcntl(listen_fd, F_SETFL, r | O_NONBLOCK) < 0)
                return negative_errno();

        a->daemon = MHD_start_daemon(
                MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, a,
                MHD_OPTION_LISTEN_SOCKET, listen_fd,
                MHD_OPTION_CONNECTION_LIMIT, (unsigned) API_CONNECTION_LIMIT,
                MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned) API_PER_IP_CONNECTION_LIMIT,
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) API_CONNECTION_TIMEOUT_S,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) API_CONNECTION_MEMORY_LIMIT,
                MHD_OPTION_STRICT_FOR_CLIENT, 1,
                MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1,
                MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
                MHD_OPTION_END);
        if (!a->daemon)
                return -EINVAL;

        info = MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info)
                return -EINVAL;

        r = sd_event_add_io(e, &a->io, info->epoll_fd, EPOLLIN, on_io, a);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(a->io, "http-server-io");

        r = sd_event_add_time(e, &a->timer, CLOCK_MONOTONIC, USEC_INFINITY, 0, on_timer, a);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(a->timer, "http-server-timer");
        arm_timer(a);

        *ret = TAKE_PTR(a);
        return 0;
}

Api *api_free(Api *a) {
        if (!a)
                return NULL;
        sd_event_source_disable_unref(a->io);
        sd_event_source_disable_unref(a->timer);
        if (a->daemon)
                MHD_stop_daemon(a->daemon);
        /* MHD does not close a socket it was given. */
        safe_close(a->listen_fd);
        sd_event_unref(a->event);
        return mfree(a);
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
