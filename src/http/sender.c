/* SPDX-License-Identifier: MIT */
#include <curl/curl.h>
#include <stdio.h>
#include <strings.h>

#include "http/sender.h"
#include "os/log.h"

typedef struct Transfer {
        Sender *sender;
        CURL *easy;
        struct curl_slist *headers;
        SenderCallback callback;
        void *userdata;
        usec_t started_at;
        SenderResult result;
        char error_buffer[CURL_ERROR_SIZE];
        struct Transfer *next; /* in the list of running transfers */
} Transfer;

struct Sender {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        char *url;
        char *ca_file, *cert_file, *key_file;
        char *authorization; /* "Authorization: Bearer …", or NULL */
        char *user_agent;
        bool allow_insecure_http;
        usec_t request_timeout, connect_timeout;
        Transfer *running;
        CURL *idle_easy; /* one handle kept for reuse: keeps its TLS session cache warm */
};

static int curl_code_to_errno(CURLcode code) {
        return code == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EIO;
}

static void transfer_free(Transfer *t) {
        if (!t)
                return;
        curl_slist_free_all(t->headers);
        if (t->easy) {
                if (!t->sender->idle_easy) {
                        curl_easy_reset(t->easy);
                        t->sender->idle_easy = t->easy;
                } else
                        curl_easy_cleanup(t->easy);
        }
        free(t);
}

static void unlink_transfer(Sender *s, Transfer *t) {
        for (Transfer **p = &s->running; *p; p = &(*p)->next)
                if (*p == t) {
                        *p = t->next;
                        return;
                }
}

static void check_finished(Sender *s) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(s->multi, &left))) {
                Transfer *t = NULL;
                SenderResult *res;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t) != CURLE_OK || !t)
                        continue;

                res = &t->result;
                res->curl_code = (int) msg->data.result;
                res->duration = now(CLOCK_MONOTONIC) - t->started_at;
                if (msg->data.result == CURLE_OK) {
                        curl_off_t sent = 0;
                        (void) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &res->http_status);
                        if (curl_easy_getinfo(t->easy, CURLINFO_SIZE_UPLOAD_T, &sent) == CURLE_OK)
                                res->bytes_sent = (uint64_t) sent;
                } else {
                        long os_errno = 0;
                        char why[64] = "";

                        /* curl 7.88 says "Couldn't connect to server" twice over; the operator
                         * wants to know whether it was refused, unreachable or timed out. */
                        if (curl_easy_getinfo(t->easy, CURLINFO_OS_ERRNO, &os_errno) == CURLE_OK && os_errno > 0)
                                snprintf(why, sizeof why, " (%s)", STRERROR((int) os_errno));
                        res->http_status = 0;
                        snprintf(res->error, sizeof res->error, "%s%s%s%s", curl_easy_strerror(msg->data.result),
                                 t->error_buffer[0] ? ": " : "", t->error_buffer, why);
                }

                (void) curl_multi_remove_handle(s->multi, t->easy);
                unlink_transfer(s, t);
                t->callback(s, res, t->userdata);
                transfer_free(t);
        }
}

static int on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        Sender *s = userdata;
        int action = 0, running;

        if (revents & EPOLLIN)
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                action |= CURL_CSELECT_ERR;

        (void) curl_multi_socket_action(s->multi, fd, action, &running);
        check_finished(s);
        return 0;
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        Sender *s = userdata;
        int running;

        (void) curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_finished(s);
        return 0;
}

/* libcurl asks to watch a socket; io sources are attached to curl's socket with curl_multi_assign. */
static int socket_callback(CURL *easy, curl_socket_t fd, int what, void *userdata, void *socketp) {
        Sender *s = userdata;
        sd_event_source *io = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (io) {
                        (void) curl_multi_assign(s->multi, fd, NULL);
                        sd_event_source_disable_unref(io);
                }
                return 0;
        }

        if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
                events |= EPOLLIN;
        if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
                events |= EPOLLOUT;

        if (io) {
                if (sd_event_source_set_io_events(io, events) < 0 ||
                    sd_event_source_set_enabled(io, SD_EVENT_ON) < 0)
                        return -1;
                return 0;
        }

        r = sd_event_add_io(s->event, &io, fd, events, on_io, s);
        if (r < 0)
                return -1;
        (void) sd_event_source_set_description(io, "curl-io");
        if (curl_multi_assign(s->multi, fd, io) != CURLM_OK) {
                sd_event_source_disable_unref(io);
                return -1;
        }
        return 0;
}

/* Only arms the timer: libcurl must not be called from inside its own callback. */
static int timer_callback(CURLM *multi, long timeout_ms, void *userdata) {
        Sender *s = userdata;
        usec_t usec;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(s->timer, SD_EVENT_OFF) < 0 ? -1 : 0;

        /* Rounded up, so that the timer never fires before libcurl's deadline; but 0 (after a
         * handle is added: "start it now") stays 0, or every request would wait a millisecond. */
        usec = timeout_ms == 0 ? 0 : (usec_t) timeout_ms * USEC_PER_MSEC + USEC_PER_MSEC - 1;
        if (sd_event_source_set_time_relative(s->timer, usec) < 0 ||
            sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT) < 0)
                return -1;
        return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
        SenderResult *res = userdata;
        size_t n = size * nmemb, take;

        take = MIN(n, (size_t) SENDER_BODY_EXCERPT_MAX - res->body_excerpt_size);
        memcpy(res->body_excerpt + res->body_excerpt_size, data, take);
        res->body_excerpt_size += take;
        res->body_excerpt[res->body_excerpt_size] = '\0';
        return n; /* the rest is read and dropped */
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata) {
        SenderResult *res = userdata;
        size_t n = size * nmemb;
        const size_t name_len = strlen("Retry-After:");

        if (n > name_len && strncasecmp(data, "Retry-After:", name_len) == 0) {
                size_t l = MIN(n - name_len, sizeof res->retry_after - 1);
                const char *v;

                memcpy(res->retry_after, data + name_len, l);
                res->retry_after[l] = '\0';
                v = strstrip(res->retry_after);
                memmove(res->retry_after, v, strlen(v) + 1);
        }
        return n;
}

static int append_header(struct curl_slist **list, const char *h) {
        struct curl_slist *l = curl_slist_append(*list, h);
        if (!l)
                return -ENOMEM;
        *list = l;
        return 0;
}

static int transfer_setup(Sender *s, Transfer *t, const char *batch_id, const void *payload, size_t size) {
        char idempotency[128];
        CURL *e = t->easy;
        int r;

        snprintf(idempotency, sizeof idempotency, "Idempotency-Key: %s", batch_id);
        if ((r = append_header(&t->headers, "Content-Type: application/json")) < 0 ||
            (r = append_header(&t->headers, "Content-Encoding: gzip")) < 0 ||
            (r = append_header(&t->headers, idempotency)) < 0 ||
            /* No "Expect: 100-continue" round trip: batches are small and the answer is what counts. */
            (r = append_header(&t->headers, "Expect:")) < 0)
                return r;
        if (s->authorization && (r = append_header(&t->headers, s->authorization)) < 0)
                return r;

        if (curl_easy_setopt(e, CURLOPT_URL, s->url) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_PRIVATE, t) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, s->allow_insecure_http ? "http,https" : "https") != CURLE_OK ||
            /* A bearer token must never travel to another host. */
            curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) (s->request_timeout / USEC_PER_MSEC)) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) (s->connect_timeout / USEC_PER_MSEC)) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_USERAGENT, s->user_agent) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, payload) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) size) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_WRITEDATA, &t->result) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_HEADERDATA, &t->result) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error_buffer) != CURLE_OK)
                return -EIO;

        if (s->ca_file && curl_easy_setopt(e, CURLOPT_CAINFO, s->ca_file) != CURLE_OK)
                return -EIO;
        if (s->cert_file && (curl_easy_setopt(e, CURLOPT_SSLCERT, s->cert_file) != CURLE_OK ||
                             curl_easy_setopt(e, CURLOPT_SSLKEY, s->key_file) != CURLE_OK))
                return -EIO;
        return 0;
}

int sender_post(Sender *s, const char *batch_id, const void *payload, size_t size, SenderCallback callback,
                void *userdata) {
        Transfer *t;
        CURLMcode mc;
        int r;

        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        *t = (Transfer) {
                .sender = s,
                .callback = callback,
                .userdata = userdata,
                .started_at = now(CLOCK_MONOTONIC),
        };
        t->easy = TAKE_PTR(s->idle_easy);
        if (!t->easy)
                t->easy = curl_easy_init();
        if (!t->easy) {
                free(t);
                return -ENOMEM;
        }

        r = transfer_setup(s, t, batch_id, payload, size);
        if (r < 0) {
                transfer_free(t);
                return r;
        }

        mc = curl_multi_add_handle(s->multi, t->easy);
        if (mc != CURLM_OK) {
                transfer_free(t);
                return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
        }
        t->next = s->running;
        s->running = t;
        return 0;
}

static int dup_or_null(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int sender_new(sd_event *e, const SenderSettings *settings, Sender **ret) {
        _cleanup_(sender_freep) Sender *s = NULL;
        int r;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        s->allow_insecure_http = settings->allow_insecure_http;
        s->request_timeout = settings->request_timeout;
        s->connect_timeout = settings->connect_timeout;

        if ((r = dup_or_null(settings->url, &s->url)) < 0 || (r = dup_or_null(settings->ca_file, &s->ca_file)) < 0 ||
            (r = dup_or_null(settings->cert_file, &s->cert_file)) < 0 ||
            (r = dup_or_null(settings->key_file, &s->key_file)) < 0 ||
            (r = dup_or_null(settings->user_agent, &s->user_agent)) < 0)
                return r;

        s->multi = curl_multi_init();
        if (!s->multi)
                return -ENOMEM;

        /* Accuracy 1 µs, not 0: 0 means sd-event's default of 250 ms, within which it may move the
         * wake-up to coalesce it with others, and curl asks for 0 ms timeouts to start a transfer
         * it was just given (and short ones during a connect). With the default every POST could
         * wait up to a quarter of a second before its first byte. (systemd's curl-util.c passes 0:
         * a download tool does not mind.) */
        r = sd_event_add_time(e, &s->timer, CLOCK_MONOTONIC, USEC_INFINITY, 1, on_timer, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(s->timer, "curl-timer");

        if (curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, socket_callback) != CURLM_OK ||
            curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s) != CURLM_OK ||
            curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, timer_callback) != CURLM_OK ||
            curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s) != CURLM_OK)
                return -EIO;
        r = sender_set_max_connections(s, settings->max_connections);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(s);
        return 0;
}

Sender *sender_free(Sender *s) {
        if (!s)
                return NULL;

        while (s->running) {
                Transfer *t = s->running;
                s->running = t->next;
                (void) curl_multi_remove_handle(s->multi, t->easy);
                transfer_free(t);
        }
        if (s->idle_easy)
                curl_easy_cleanup(s->idle_easy);
        /* curl closes its cached connections here and reports the sockets as removed. */
        if (s->multi)
                curl_multi_cleanup(s->multi);
        sd_event_source_disable_unref(s->timer);
        sd_event_unref(s->event);
        free(s->url);
        free(s->ca_file);
        free(s->cert_file);
        free(s->key_file);
        free(s->user_agent);
        if (s->authorization)
                explicit_bzero(s->authorization, strlen(s->authorization));
        free(s->authorization);
        return mfree(s);
}

int sender_set_token(Sender *s, const char *token) {
        char *h = NULL;

        if (!isempty(token) && asprintf(&h, "Authorization: Bearer %s", token) < 0)
                return -ENOMEM;
        if (s->authorization)
                explicit_bzero(s->authorization, strlen(s->authorization));
        free(s->authorization);
        s->authorization = h;
        return 0;
}

int sender_set_max_connections(Sender *s, unsigned n) {
        /* As many connections as requests may be in flight: a request that curl queued behind
         * the cap would spend its CURLOPT_TIMEOUT waiting for a connection. */
        if (curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) MAX(n, 1u)) != CURLM_OK ||
            curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long) MAX(n, 1u)) != CURLM_OK)
                return -EIO;
        return 0;
}

void sender_set_timeouts(Sender *s, usec_t request_timeout, usec_t connect_timeout) {
        s->request_timeout = request_timeout;
        s->connect_timeout = connect_timeout;
}

int sender_global_init(void) {
        CURLcode c = curl_global_init(CURL_GLOBAL_DEFAULT);
        return c == CURLE_OK ? 0 : curl_code_to_errno(c);
}
